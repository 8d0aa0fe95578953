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
        let dir = (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent
        let tmp = (dir as NSString).appendingPathComponent(".\((path as NSString).lastPathComponent).tmp.\(getpid())")
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
}

func errnoString() -> String { String(cString: strerror(errno)) }
