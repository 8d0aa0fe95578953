import Data
import Foundation
import XCTest

/// Runs the ddp-train binary, alone or under mpirun, as a user would.
enum Harness {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// $DDP_TRAIN_BIN (set by Scripts/test.sh to the release build), else a build in .build.
    static var binary: String {
        if let b = ProcessInfo.processInfo.environment["DDP_TRAIN_BIN"], !b.isEmpty { return b }
        for config in ["release", "debug"] {
            let p = packageRoot + "/.build/\(config)/ddp-train"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return packageRoot + "/.build/debug/ddp-train"
    }

    static var mnist: String {
        if let d = ProcessInfo.processInfo.environment["DDP_DATA_DIR"], !d.isEmpty { return d }
        return (packageRoot as NSString).deletingLastPathComponent + "/shared/data/mnist-10k"
    }

    struct Result {
        let status: Int32
        let stdout: String
        let stderr: String
        let seconds: Double
        var stderrLines: [Substring] { stderr.split(separator: "\n") }
    }

    /// `np` nil runs the binary alone (local mode); otherwise under `mpirun -np N --oversubscribe`.
    /// A run that outlives `timeout` is killed and reported with status 137.
    /// With `terminateAfter`, the launched process (ddp-train or mpirun) gets SIGTERM after that many seconds.
    /// `cwd`: the working directory (default: this process's).
    static func run(_ args: [String], np: Int? = nil, mpiArgs: [String] = [], env: [String: String] = [:], timeout: Int = 300,
                    terminateAfter: Double? = nil, signal: Int32 = SIGTERM, cwd: String? = nil) -> Result {
        var argv: [String] = []
        if let np { argv += ["mpirun", "-np", String(np), "--oversubscribe"] + mpiArgs }
        return runCommand(argv + [binary] + args, env: env, timeout: timeout, terminateAfter: terminateAfter, signal: signal, cwd: cwd)
    }

    /// The binary under `bash -c script` (for ulimit and the like): the script runs "$0" "$@".
    static func runShell(_ script: String, args: [String], env: [String: String] = [:]) -> Result {
        runCommand(["/bin/bash", "-c", script, binary] + args, env: env)
    }

    /// With `terminateAfter`, the process gets `signal` after that many seconds.
    static func runCommand(_ command: [String], env: [String: String] = [:], timeout: Int = 300, terminateAfter: Double? = nil,
                           signal: Int32 = SIGTERM, cwd: String? = nil) -> Result {
        let process = Process()
        if let cwd { process.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        if terminateAfter != nil {
            process.executableURL = URL(fileURLWithPath: command[0].contains("/") ? command[0] : "/usr/bin/" + command[0])
            process.arguments = Array(command.dropFirst())
        } else {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
            process.arguments = ["-s", "KILL", String(timeout)] + command
        }
        var environment = ProcessInfo.processInfo.environment
        environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        environment["DDP_DATA_DIR"] = mnist
        for (k, v) in env { environment[k] = v }
        process.environment = environment
        let outFile = NSTemporaryDirectory() + "ddp-it-out-\(UUID().uuidString)", errFile = outFile + ".err"
        defer { for file in [outFile, errFile] { try? FileManager.default.removeItem(atPath: file) } }
        FileManager.default.createFile(atPath: outFile, contents: nil)
        FileManager.default.createFile(atPath: errFile, contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: outFile)
        process.standardError = FileHandle(forWritingAtPath: errFile)
        process.standardInput = FileHandle.nullDevice
        let start = Date()
        do { try process.run() } catch { return Result(status: -1, stdout: "", stderr: "\(error)", seconds: 0) }
        if let t = terminateAfter {
            Thread.sleep(forTimeInterval: t)
            kill(process.processIdentifier, signal)
        }
        process.waitUntilExit()
        let out = (try? String(contentsOfFile: outFile, encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: errFile, encoding: .utf8)) ?? ""
        return Result(status: process.terminationStatus, stdout: out, stderr: err, seconds: Date().timeIntervalSince(start))
    }

    static func weights(_ path: String) throws -> [String: [Float]] {
        try SafeTensors.read(path: path).tensors.mapValues(\.values)
    }

    static func maxAbsDifference(_ a: [String: [Float]], _ b: [String: [Float]]) -> Float {
        guard a.keys.sorted() == b.keys.sorted() else { return .infinity }
        var m: Float = 0
        for (k, va) in a {
            let vb = b[k]!
            guard va.count == vb.count else { return .infinity }
            for i in 0..<va.count { m = max(m, abs(va[i] - vb[i])) }
        }
        return m
    }

    /// The checkpoint of `step` in `dir` (`ckpt-STEP-RUN.ckpt`, whatever the run, or the older
    /// `ckpt-STEP.ckpt`), or a path that does not exist.
    static func checkpoint(_ dir: String, step: Int) -> String {
        let prefix = String(format: "ckpt-%08d", step)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        let name = names.sorted().first { $0.hasPrefix(prefix + "-") && $0.hasSuffix(".ckpt") }
            ?? names.first { $0 == prefix + ".ckpt" }
        return dir + "/" + (name ?? prefix + "-missing.ckpt")
    }

    /// Checkpoint file names in `dir`, sorted.
    static func checkpoints(_ dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".ckpt") }.sorted()
    }

    /// "Test set: Average loss: 0.1294, Accuracy: 1922/2000 (96.1%)" -> 0.961 (the last such line)
    static func accuracy(_ stdout: String) -> Double? {
        guard let line = stdout.split(separator: "\n").last(where: { $0.contains("Accuracy: ") }),
              let frac = line.split(separator: " ").first(where: { $0.contains("/") && $0.first!.isNumber }) else { return nil }
        let parts = frac.split(separator: "/").compactMap { Double($0) }
        return parts.count == 2 ? parts[0] / parts[1] : nil
    }
}

extension XCTestCase {
    /// A fresh folder for this test's files, removed when the test ends (repeated runs would
    /// otherwise fill the disk).
    func temporaryDirectory() -> String {
        let dir = NSTemporaryDirectory() + "ddp-it-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }
}

extension XCTestCase {
    /// One line on stderr, the given exit status (else 1 or 2), no crash.
    func assertCleanFailure(_ args: [String], mentions text: String, status expected: Int32? = nil, np: Int? = nil, env: [String: String] = [:],
                            file: StaticString = #filePath, line: UInt = #line) {
        let r = Harness.run(args, np: np, env: env, timeout: 120)
        assertCleanFailure(r, args: args, mentions: text, status: expected, np: np, file: file, line: line)
    }

    func assertCleanFailure(_ r: Harness.Result, args: [String], mentions text: String, status expected: Int32? = nil, np: Int? = nil,
                            file: StaticString = #filePath, line: UInt = #line) {
        if let expected {
            XCTAssertEqual(r.status, expected, "status for \(args): \(r.stderr)", file: file, line: line)
        } else {
            XCTAssertTrue(r.status == 1 || r.status == 2 || (np != nil && r.status != 0), "status \(r.status) for \(args)", file: file, line: line)
        }
        let ours = r.stderrLines.filter { $0.hasPrefix("ddp-train") }
        XCTAssertEqual(ours.count, 1, "one line for \(args): \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stderr.contains(text), "'\(r.stderr)' should mention '\(text)'", file: file, line: line)
        if np == nil { XCTAssertEqual(r.stderrLines.count, 1, "nothing else on stderr: \(r.stderr)", file: file, line: line) }
        for bad in ["Fatal error", "Stack dump", "Segmentation", "Illegal instruction", "double-linked", "on signal", "Aborted"] {
            XCTAssertFalse(r.stderr.contains(bad), "crash for \(args): \(r.stderr)", file: file, line: line)
        }
    }

    /// A copy of the MNIST test folder in which `edit` changes files.
    func fixtureFolder(_ edit: (String) throws -> Void) rethrows -> String {
        let dir = temporaryDirectory()
        for f in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
            try! FileManager.default.copyItem(atPath: Harness.mnist + "/" + f, toPath: dir + "/" + f)
        }
        try edit(dir)
        return dir
    }
}
