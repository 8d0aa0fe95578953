import Data
import Foundation
import XCTest

/// The cases an adversarial test round broke (issue 9), driven through the binary as a user would:
/// nothing lost, nothing corrupted, one clear line and a documented exit status.
final class HardeningTests: XCTestCase {
    let small = ["--dataset", "synthetic:2000", "--model", "mlp:32", "--log-every", "0", "--lr", "0.05"]

    func ok(_ r: Harness.Result, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, 0, r.stderr, file: file, line: line)
    }

    func bytes(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }

    /// An IDX images file of `count` images of `rows` x `cols`.
    func writeImages(_ path: String, count: Int, rows: Int, cols: Int) throws {
        let pixels = (0..<(count * rows * cols)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        try Data(IDXFile.encode(dims: [count, rows, cols], bytes: pixels)).write(to: URL(fileURLWithPath: path))
    }

    // MARK: 1, 10. The data as a whole

    func testSplitsMustHaveOneShapeAndNoneEmpty() throws {
        for (rows, cols) in [(28, 29), (28, 56)] {
            let dir = try fixtureFolder { dir in
                try FileManager.default.removeItem(atPath: dir + "/t10k-images-idx3-ubyte.gz")
                try writeImages(dir + "/t10k-images-idx3-ubyte", count: 2000, rows: rows, cols: cols)
            }
            for np in [nil, 2] as [Int?] {
                assertCleanFailure(["--data-dir", dir, "--model", "mlp:16", "--max-steps", "2"],
                                   mentions: "test samples have shape 1x\(rows)x\(cols) but training samples 1x28x28", status: 1, np: np)
            }
        }
        // The reverse used to train and report 9.4%.
        let reverse = try fixtureFolder { dir in
            try FileManager.default.removeItem(atPath: dir + "/train-images-idx3-ubyte.gz")
            try writeImages(dir + "/train-images-idx3-ubyte", count: 8000, rows: 28, cols: 29)
        }
        assertCleanFailure(["--data-dir", reverse, "--model", "mlp:16", "--max-steps", "2"],
                           mentions: "test samples have shape 1x28x28 but training samples 1x28x29", status: 1)
        let weights = temporaryDirectory() + "/w.safetensors"
        XCTAssertEqual(Harness.run(["--model", "mlp:16", "--max-steps", "1", "--log-every", "0", "--save", weights]).status, 0)
        assertCleanFailure(["evaluate", "--data-dir", reverse, "--weights", weights],
                           mentions: "but training samples 1x28x29", status: 1)

        func emptied(_ prefix: String) throws -> String {
            try fixtureFolder { dir in
                for (suffix, dims) in [("images-idx3-ubyte", [0, 28, 28]), ("labels-idx1-ubyte", [0])] {
                    try FileManager.default.removeItem(atPath: dir + "/\(prefix)-\(suffix).gz")
                    try Data(IDXFile.encode(dims: dims, bytes: [])).write(to: URL(fileURLWithPath: dir + "/\(prefix)-\(suffix)"))
                }
            }
        }
        assertCleanFailure(["--data-dir", try emptied("t10k"), "--max-steps", "2"], mentions: "the test set is empty", status: 1)
        let emptyTrain = Harness.run(["--data-dir", try emptied("train"), "--max-steps", "2"])
        assertCleanFailure(emptyTrain, args: ["empty train"], mentions: "the training set is empty", status: 1)
        XCTAssertFalse(emptyTrain.stderr.contains("--drop-last"), "--drop-last was not given: \(emptyTrain.stderr)")
    }

    // MARK: 2. Non-finite values

    func testDivergedRunStopsAndWritesNothingNonFinite() throws {
        let dir = temporaryDirectory()
        for np in [nil, 2] as [Int?] {
            let ck = dir + "/ck\(np ?? 1)", save = dir + "/w\(np ?? 1).safetensors", metrics = dir + "/m\(np ?? 1).jsonl"
            // Finite for two steps, then the weights overflow: checkpoints every step, keeping 2.
            let r = Harness.run(["--lr", "1e6", "--batch-size", String(64 / (np ?? 1)), "--log-every", "0", "--checkpoint-dir", ck,
                                 "--checkpoint-every", "1", "--keep", "2", "--save", save, "--metrics", metrics], np: np)
            assertCleanFailure(r, args: ["--lr 1e6"], mentions: "training diverged at step", status: 3, np: np)
            XCTAssertTrue(r.stderr.contains("nothing non-finite was written") || r.stderr.contains("nothing was written"), r.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: save), "--save not written")
            let kept = Harness.checkpoints(ck)
            XCTAssertFalse(kept.isEmpty, "the good checkpoints stay")
            for name in kept {
                XCTAssertNoThrow(try CheckpointFile.decode(try XCTUnwrap(bytes(ck + "/" + name)).map { $0 }, name: name), "\(name) is finite")
            }
            for line in try String(contentsOfFile: metrics, encoding: .utf8).split(separator: "\n") {
                XCTAssertNoThrow(try JSONSerialization.jsonObject(with: Data(line.utf8)), "valid JSON: \(line)")
            }
        }
        // Non-finite inputs are refused up front.
        let nan = dir + "/nan.safetensors"
        var values = [Float](repeating: .nan, count: 32 * 784 + 32 + 10 * 32 + 10)
        values[0] = 0
        try values.withUnsafeBufferPointer { p in
            let b = p.baseAddress!
            try SafeTensors.write([.init(name: "0.weight", shape: [32, 784], pointer: b), .init(name: "0.bias", shape: [32], pointer: b + 25088),
                                   .init(name: "2.weight", shape: [10, 32], pointer: b + 25120), .init(name: "2.bias", shape: [10], pointer: b + 25440)],
                                  to: nan)
        }
        assertCleanFailure(small + ["--init-weights", nan, "--max-steps", "2"], mentions: "holds a non-finite value", status: 1)
        assertCleanFailure(small + ["--init-weights", nan, "--max-steps", "2"], mentions: "holds a non-finite value", status: 1, np: 2)
        assertCleanFailure(small + ["--normalize", "nan,1"], mentions: "invalid --normalize 'nan,1'", status: 2)
        assertCleanFailure(small + ["--normalize", "0,inf"], mentions: "invalid --normalize '0,inf'", status: 2)
    }

    // MARK: 3. Pruning

    func testPruningKeepsOtherRunsAndTheLastReadable() throws {
        let dir = temporaryDirectory()
        // A longer run's checkpoints stay when a new run writes into the same folder.
        let ck = dir + "/ck"
        ok(Harness.run(small + ["--epochs", "2", "--checkpoint-dir", ck, "--checkpoint-every", "5", "--keep", "2"]))
        let first = Harness.checkpoints(ck)
        XCTAssertEqual(first.count, 2, "\(first)")
        let firstBytes = first.map { bytes(ck + "/" + $0) }
        ok(Harness.run(small + ["--seed", "7", "--max-steps", "12", "--checkpoint-dir", ck, "--checkpoint-every", "4", "--keep", "2"]))
        let both = Harness.checkpoints(ck)
        XCTAssertEqual(both.count, 4, "two of each run: \(both)")
        XCTAssertEqual(first.map { bytes(ck + "/" + $0) }, firstBytes, "the other run's checkpoints are untouched")
        XCTAssertEqual(both.filter { !first.contains($0) }.map { String($0.prefix(13)) }, ["ckpt-00000008", "ckpt-00000012"])

        // --keep 1 and a corrupt newest: the resume falls back to an older one, and what it writes is
        // kept (it used to be deleted at once, as the corrupt file sorted newer by name).
        let ck2 = dir + "/ck2"
        ok(Harness.run(small + ["--epochs", "3", "--max-steps", "40", "--checkpoint-dir", ck2, "--checkpoint-every", "10"]))
        let newest = Harness.checkpoint(ck2, step: 40)
        var damaged = try XCTUnwrap(bytes(newest))
        damaged[damaged.count / 2] ^= 0x10
        try damaged.write(to: URL(fileURLWithPath: newest))
        let r = Harness.run(small + ["--epochs", "3", "--max-steps", "36", "--checkpoint-dir", ck2, "--keep", "1", "--resume"])
        ok(r)
        XCTAssertTrue(r.stdout.contains("at step 32"), r.stdout)
        XCTAssertEqual(Harness.checkpoints(ck2).map { String($0.prefix(13)) }, ["ckpt-00000036"], "the new checkpoint stays, the corrupt one goes")
        let again = Harness.run(small + ["--epochs", "3", "--max-steps", "40", "--checkpoint-dir", ck2, "--keep", "1", "--resume"])
        ok(again)
        XCTAssertTrue(again.stdout.contains("at step 36"), again.stdout)
    }

    /// `ddp-run ... --resume PATH`: the job prunes PATH after newer checkpoints, then dies; the
    /// restart resumes from the newest instead of failing on PATH, and ends where an uninterrupted
    /// run ends.
    func testSupervisorRestartAfterResumeFromPrunedPath() throws {
        let dir = temporaryDirectory()
        let args = small + ["--epochs", "2", "--batch-size", "32"]
        ok(Harness.run(args + ["--save", dir + "/full.safetensors"], np: 2))
        let ck = dir + "/ck"
        ok(Harness.run(args + ["--max-steps", "30", "--checkpoint-dir", ck, "--checkpoint-every", "10"], np: 2))
        let from = Harness.checkpoint(ck, step: 10)
        let supervisor = Harness.packageRoot + "/Scripts/ddp-run"
        let r = Harness.runCommand([supervisor, "--max-restarts", "2", "--", "mpirun", "-np", "2", "--oversubscribe", Harness.binary]
            + args + ["--checkpoint-dir", ck, "--checkpoint-every", "10", "--keep", "1", "--save", dir + "/sup.safetensors", "--resume", from],
            env: ["DDP_TEST_KILL": "1:45", "DDP_TEST_KILL_MARK": dir + "/killed"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/killed"), "the job was killed once")
        XCTAssertTrue(r.stderr.contains("restart 1 of 2"), r.stderr)
        XCTAssertTrue(r.stdout.contains(".ckpt at step 40 (epoch 2"), "the restart resumed from the newest: \(r.stdout)")
        XCTAssertEqual(bytes(dir + "/full.safetensors"), bytes(dir + "/sup.safetensors"), "same final weights as the uninterrupted run")
    }

    // MARK: 4. The folder's lock

    func testSecondJobOnTheFolderIsRefusedAndStaleFilesGo() throws {
        let dir = temporaryDirectory()
        let ck = dir + "/ck"
        try FileManager.default.createDirectory(atPath: ck, withIntermediateDirectories: true)
        let stale = ck + "/.ckpt-00000001-0badf00d.ckpt.tmp.999999"
        FileManager.default.createFile(atPath: stale, contents: Data("half a checkpoint".utf8))
        let long = ["--dataset", "synthetic:20000", "--model", "mlp:256", "--epochs", "1000", "--log-every", "0", "--checkpoint-dir", ck]
        final class Box: @unchecked Sendable { var result: Harness.Result? }
        let first = Box()
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            first.result = Harness.run(long, terminateAfter: 8)
            done.signal()
        }
        let lock = ck + "/.ddp-train.lock"
        let deadline = Date().addingTimeInterval(6)
        while Date() < deadline && (bytes(lock)?.isEmpty ?? true) { Thread.sleep(forTimeInterval: 0.1) }
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale), "a dead writer's temporary file is removed at start")
        let second = Harness.run(small + ["--checkpoint-dir", ck, "--max-steps", "2"])
        assertCleanFailure(second, args: ["second job"], mentions: "is in use by another job (pid ", status: 1)
        let third = Harness.run(small + ["--checkpoint-dir", ck, "--max-steps", "2", "--resume"], np: 2)
        assertCleanFailure(third, args: ["second job, mpirun"], mentions: "is in use by another job", np: 2)
        done.wait()
        XCTAssertEqual(first.result?.status, 75, first.result?.stderr ?? "")
        // A lock left by a process that died (SIGKILL) does not block.
        let killed = Harness.run(small + ["--checkpoint-dir", dir + "/ck2", "--max-steps", "20"], env: ["DDP_TEST_KILL": "0:5"])
        XCTAssertNotEqual(killed.status, 0)
        ok(Harness.run(small + ["--checkpoint-dir", dir + "/ck2", "--max-steps", "3"]))
    }

    // MARK: 5. The stop checkpoint of a large model when mpirun gets the signal

    /// 20 M parameters with Adam: a 240 MB checkpoint. Each documented way to stop an mpirun job
    /// leaves the stop checkpoint whole: SIGUSR1 to mpirun (forwarded at once), SIGTERM to
    /// `Scripts/ddp-run` (which sends SIGUSR1), and Ctrl-C (SIGINT) to an mpirun started with a
    /// raised `odls_base_sigkill_timeout`.
    func testStopCheckpointOfALargeModelSurvivesMpirunsSignal() throws {
        let dir = temporaryDirectory()
        func args(_ ck: String) -> [String] {
            ["--dataset", "synthetic:4000", "--model", "mlp:4096,4096", "--optimizer", "adam", "--epochs", "50",
             "--log-every", "0", "--checkpoint-dir", ck]
        }
        func check(_ r: Harness.Result, _ ck: String, status: Int32, _ what: String, file: StaticString = #filePath, line: UInt = #line) throws {
            XCTAssertEqual(r.status, status, "\(what): \(r.stderr)", file: file, line: line)
            let stopLine = try XCTUnwrap(r.stdout.split(separator: "\n").first { $0.hasPrefix("Stopped by signal at step") },
                                         "\(what): \(r.stdout)\n\(r.stderr)", file: file, line: line)
            let step = try XCTUnwrap(Int(stopLine.split(separator: " ")[5].dropLast()))
            XCTAssertNoThrow(try CheckpointFile.read(path: Harness.checkpoint(ck, step: step)), "\(what): the stop checkpoint", file: file, line: line)
            let names = try FileManager.default.contentsOfDirectory(atPath: ck)
            XCTAssertFalse(names.contains { $0.contains(".tmp.") }, "\(what): no temporary file: \(names)", file: file, line: line)
        }
        let usr1 = Harness.run(args(dir + "/usr1"), np: 2, terminateAfter: 12, signal: SIGUSR1)
        try check(usr1, dir + "/usr1", status: 75, "SIGUSR1 to mpirun")

        let supervised = Harness.runCommand([Harness.packageRoot + "/Scripts/ddp-run", "--", "mpirun", "-np", "2", "--oversubscribe",
                                             Harness.binary] + args(dir + "/run"), terminateAfter: 12)
        try check(supervised, dir + "/run", status: 75, "SIGTERM to ddp-run")

        let ctrlC = Harness.run(args(dir + "/int"), np: 2, mpiArgs: ["--mca", "odls_base_sigkill_timeout", "20"], terminateAfter: 12,
                                signal: SIGINT)
        try check(ctrlC, dir + "/int", status: 1, "SIGINT to mpirun with a 20 s kill timeout (mpirun exits 1 when signalled)")
    }

    // MARK: 6, 13. Usage errors exit 2, with the right words

    func testUsageErrorsExit2WithClearMessages() throws {
        let cases: [([String], String)] = [
            (["--batch-size", "0"], "invalid --batch-size 0: must be at least 1"),
            (["--epochs", "0"], "invalid --epochs 0: must be at least 1"),
            (["--epochs", "-1"], "invalid --epochs -1: must be at least 1"),
            (["--max-steps", "-5"], "invalid --max-steps -5"),
            (["--keep", "-1"], "invalid --keep -1"),
            (["--lr", "-1"], "invalid learning rate -1"),
            (["--model", "mlp:abc"], "hidden size 'abc' is not a positive integer"),
            (["--model", "mlp:99999999"], "hidden size 99999999 is larger than 1048576"),
            (["--model", "mlp:"], "missing hidden sizes"),
            (["--optimizer", "lbfgs"], "invalid --optimizer 'lbfgs'"),
            (["--loss", "hinge"], "invalid --loss 'hinge'"),
            (["--checkpoint-every", "5"], "need --checkpoint-dir"),
        ]
        for (args, text) in cases {
            assertCleanFailure(args, mentions: text, status: 2)
        }
        assertCleanFailure(["--loss", "hinge"], mentions: "invalid --loss 'hinge'", status: 2, np: 2)
        // `mlp:0` is the model without a hidden layer, and the header says so.
        let r = Harness.run(small.map { $0 == "mlp:32" ? "mlp:0" : $0 } + ["--max-steps", "1"])
        ok(r)
        XCTAssertTrue(r.stdout.contains("Model mlp:0:\n"), r.stdout)

        // The supervisor does not restart what a retry cannot fix: usage errors, divergence.
        let supervisor = Harness.packageRoot + "/Scripts/ddp-run"
        let dir = temporaryDirectory()
        for (args, status) in [(["--lr", "-1"], Int32(2)), (["--lr", "1e6", "--model", "mlp:512,512"], Int32(3))] {
            let s = Harness.runCommand([supervisor, "--delay", "0", "--", Harness.binary] + small + args + ["--checkpoint-dir", dir + "/ck"])
            XCTAssertEqual(s.status, status, s.stderr)
            XCTAssertFalse(s.stderr.contains("restart"), s.stderr)
        }
    }

    // MARK: 7. Outputs checked at start

    func testOutputPathsAreCheckedBeforeTraining() throws {
        let dir = temporaryDirectory()
        for (flag, path) in [("--save", "/nonexistent/w.safetensors"), ("--metrics", "/nonexistent/m.jsonl"), ("--save", dir)] {
            let r = Harness.run(small + ["--max-steps", "2", flag, path])
            assertCleanFailure(r, args: [flag, path], mentions: "cannot write \(flag) \(path)", status: 2)
            XCTAssertFalse(r.stdout.contains("Epoch"), "nothing trained: \(r.stdout)")
        }
        // A writer killed mid-write left its temporary file: the next run removes it.
        let stale = dir + "/.w.safetensors.tmp.999999"
        FileManager.default.createFile(atPath: stale, contents: Data("half".utf8))
        ok(Harness.run(small + ["--max-steps", "1", "--save", dir + "/w.safetensors"]))
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale), "stale temporary file of --save removed")
        // A read-only filesystem (a read-only tmpfs in a private mount namespace; root ignores modes).
        let ro = dir + "/ro"
        try FileManager.default.createDirectory(atPath: ro, withIntermediateDirectories: true)
        for args in [["--save", ro + "/w.safetensors"], ["--checkpoint-dir", ro + "/ck"], ["--checkpoint-dir", ro]] {
            let r = Harness.runCommand(["/usr/bin/unshare", "-m", "/bin/bash", "-c",
                                        "mount -t tmpfs -o ro tmpfs \"$1\" && shift && exec \"$@\"", "x", ro, Harness.binary]
                                       + small + ["--max-steps", "2"] + args)
            assertCleanFailure(r, args: args, mentions: "Read-only file system", status: 2)
            XCTAssertFalse(r.stdout.contains("Epoch"), "nothing trained: \(r.stdout)")
        }
    }

    // MARK: 8, 12. Resume: the command line against the checkpoint, and crafted checkpoints

    func testResumeRefusesAnotherTrajectoryAndCraftedState() throws {
        let dir = temporaryDirectory()
        let ck = dir + "/ck"
        let args = small + ["--momentum", "0.9", "--checkpoint-dir", ck]
        ok(Harness.run(args + ["--max-steps", "10"]))
        let cases: [([String], String)] = [
            (["--lr", "0.5"], "--lr 0.5 (the checkpoint has 0.05)"),
            (["--momentum", "0.5"], "--momentum 0.5 (the checkpoint has 0.9)"),
            (["--seed", "2"], "--seed 2 (the checkpoint has 1)"),
            (["--weight-decay", "0.1"], "--weight-decay 0.1 (the checkpoint has 0.0)"),
        ]
        for (change, text) in cases {
            var changed = args
            for i in stride(from: 0, to: change.count, by: 2) {
                if let j = changed.firstIndex(of: change[i]) { changed[j + 1] = change[i + 1] } else { changed += [change[i], change[i + 1]] }
            }
            assertCleanFailure(changed + ["--resume", "--max-steps", "20"], mentions: text, status: 2)
        }
        ok(Harness.run(args + ["--resume", "--max-steps", "12"]))

        // Crafted files with a valid CRC: the position and the learning rate are range-checked.
        let good = try XCTUnwrap(bytes(Harness.checkpoint(ck, step: 12))).map { $0 }
        let edits: [(String, String, String)] = [
            ("\"batchInEpoch\":12", "\"batchInEpoch\":-3", "position in the epoch -3 is negative"),
            ("\"batchInEpoch\":12", "\"batchInEpoch\":31337", "is past the epoch"),
            ("\"step\":12", "\"step\":-12", "step -12 is negative"),
            ("\"learningRate\":0.05", "\"learningRate\":1e30", "learning rate"),
            ("\"bestAccuracy\":", "\"bestAccuracy\":7,\"x\":", "best accuracy 7"),
        ]
        for (from, to, text) in edits {
            let path = dir + "/crafted.ckpt"
            try Data(try craft(good, replacing: from, with: to)).write(to: URL(fileURLWithPath: path))
            assertCleanFailure(args + ["--resume", path, "--max-steps", "20"], mentions: text, status: 1)
        }
    }

    /// The checkpoint with its state JSON edited, framed again with a valid CRC.
    func craft(_ file: [UInt8], replacing from: String, with to: String) throws -> [UInt8] {
        let body = Array(file[CheckpointFile.headerSize...])
        var n = 0
        for i in 0..<8 { n |= Int(body[i]) << (8 * i) }
        let header = String(decoding: body[8..<(8 + n)], as: UTF8.self)
        // The state is JSON inside a JSON string: its quotes are escaped.
        let escaped = { (s: String) in s.replacingOccurrences(of: "\"", with: "\\\"") }
        XCTAssertTrue(header.contains(escaped(from)), "\(from) in \(header.prefix(400))")
        var edited = Array(header.replacingOccurrences(of: escaped(from), with: escaped(to)).trimmingCharacters(in: .whitespaces).utf8)
        while edited.count % 8 != 0 { edited.append(0x20) }
        var out = [UInt8]()
        withUnsafeBytes(of: UInt64(edited.count).littleEndian) { out += $0 }
        return CheckpointFile.frame(out + edited + body[(8 + n)...])
    }

    // MARK: 9. Sizes that cannot fit

    func testRunsThatCannotFitAreRefused() {
        assertCleanFailure(["--dataset", "synthetic:100000000"], mentions: "needs about", status: 2)
        assertCleanFailure(["--dataset", "synthetic:100", "--model", "mlp:1048576,1048576"], mentions: "needs about", status: 2)
        assertCleanFailure(["--dataset", "synthetic:100", "--model", "mlp:1048576,1048576"], mentions: "needs about", status: 2, np: 2)
        // The estimate is compared with what the machine has (here a pretend 64 MB).
        assertCleanFailure(small + ["--model", "mlp:4096,4096", "--max-steps", "1"], mentions: "more than the 64.0 MB available", status: 2,
                           env: ["DDP_TEST_MEMORY_BYTES": "64000000"])
    }

    // MARK: 11. Metrics after a crash and resume

    func testMetricsHoldEachStepOnceAfterResume() throws {
        let dir = temporaryDirectory()
        let metrics = dir + "/m.jsonl"
        let args = small + ["--epochs", "2", "--checkpoint-dir", dir + "/ck", "--checkpoint-every", "10", "--metrics", metrics]
        XCTAssertNotEqual(Harness.run(args, env: ["DDP_TEST_KILL": "0:45"]).status, 0)
        ok(Harness.run(args + ["--resume"]))
        var steps: [Int] = [], evals: [Int] = []
        for line in try String(contentsOfFile: metrics, encoding: .utf8).split(separator: "\n") {
            let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], String(line))
            if object["val_loss"] != nil { evals.append(object["epoch"] as! Int) } else { steps.append(object["step"] as! Int) }
        }
        XCTAssertEqual(steps, Array(1...64), "each step once, in order")
        XCTAssertEqual(evals, [1, 2])
    }
}
