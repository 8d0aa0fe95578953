import Foundation
import Glibc

/// Writes a file so that a reader sees the old content or the new, never a mix: a temporary file in
/// the same directory, fsync, rename over the target, then fsync of the directory. Any failure (a
/// full disk, say) removes the temporary file and leaves the target as it was.
public enum AtomicFile {
    public static func write(_ bytes: [UInt8], to path: String) throws {
        try write(to: path) { fd in
            try bytes.withUnsafeBytes { try writeAll(fd, $0, path: path) }
        }
    }

    /// `body` writes the content to the open descriptor.
    public static func write(to path: String, _ body: (Int32) throws -> Void) throws {
        let dir = folder(of: path)
        let tmp = (dir as NSString).appendingPathComponent(temporaryName(for: (path as NSString).lastPathComponent))
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw DataError("cannot write \(path): \(errnoString())") }
        var ok = false
        defer { if !ok { unlink(tmp) } }
        do {
            try body(fd)
            guard fsync(fd) == 0 else { throw DataError("cannot write \(path): fsync: \(errnoString())") }
        } catch {
            close(fd)
            throw error
        }
        guard close(fd) == 0 else { throw DataError("cannot write \(path): close: \(errnoString())") }
        guard rename(tmp, path) == 0 else { throw DataError("cannot write \(path): rename: \(errnoString())") }
        ok = true
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }

    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw DataError("cannot write \(path): \(errnoString())")
            }
            if n == 0 { throw DataError("cannot write \(path): no progress") }
            offset += n
        }
    }

    /// The folder `path` is in ("." for a bare name).
    static func folder(of path: String) -> String {
        let dir = (path as NSString).deletingLastPathComponent
        return dir.isEmpty ? "." : dir
    }

    /// The temporary file's name for target `name`: `.NAME.tmp.PID`.
    public static func temporaryName(for name: String) -> String { ".\(name).tmp.\(getpid())" }

    /// Whether `name` is a temporary file of some writer (`.NAME.tmp.PID`).
    public static func isTemporaryName(_ name: String) -> Bool {
        guard name.hasPrefix("."), let r = name.range(of: ".tmp.", options: .backwards) else { return false }
        let pid = name[r.upperBound...]
        return !pid.isEmpty && pid.allSatisfy { $0.isASCII && $0.isNumber }
    }

    /// Removes `.NAME.tmp.PID` files of `path` whose writer (PID) is no longer alive: what a writer
    /// killed mid-write leaves.
    public static func removeStaleTemporaryFiles(of path: String) {
        let dir = folder(of: path)
        let prefix = ".\((path as NSString).lastPathComponent).tmp."
        for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] where name.hasPrefix(prefix) && isTemporaryName(name) {
            guard let pid = Int32(name.dropFirst(prefix.count)), kill(pid, 0) != 0 && errno == ESRCH else { continue }
            unlink((dir as NSString).appendingPathComponent(name))
        }
    }

    /// Checks, before hours of work, that `path` can be written as `write` would: its folder exists
    /// and takes a new file, and `path` is not a folder. Throws one line naming the problem.
    public static func checkWritable(_ path: String, flag: String) throws {
        let dir = folder(of: path)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw DataError("cannot write \(flag) \(path): folder \(dir) does not exist")
        }
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
            throw DataError("cannot write \(flag) \(path): it is a folder")
        }
        removeStaleTemporaryFiles(of: path)
        let probe = (dir as NSString).appendingPathComponent(temporaryName(for: (path as NSString).lastPathComponent))
        let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw DataError("cannot write \(flag) \(path): \(errnoString())") }
        close(fd)
        unlink(probe)
    }
}

public func errnoString() -> String { String(cString: strerror(errno)) }

/// The POSIX reason inside a Foundation error ("Permission denied"), else its description.
public func posixReason(_ error: Error) -> String {
    if let underlying = (error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
        return String(cString: strerror(Int32(underlying.code)))
    }
    return error.localizedDescription
}
