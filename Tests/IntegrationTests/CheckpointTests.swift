import Foundation
import XCTest

/// Checkpoints, exact resume, corruption, the supervisor, and SIGTERM.
final class CheckpointTests: XCTestCase {
    /// 2,000 synthetic samples at global batch 64: 32 steps per epoch. Dropout included.
    let common = ["--dataset", "synthetic:2000", "--model", "mlp:64:dropout=0.2", "--epochs", "3", "--lr", "0.05",
                  "--momentum", "0.9", "--log-every", "0"]

    func ok(_ r: Harness.Result, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, 0, r.stderr, file: file, line: line)
    }

    func bytes(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }

    func testKilledRunResumesBitwiseIdentical() throws {
        let dir = temporaryDirectory()
        ok(Harness.run(common + ["--batch-size", "32", "--save", dir + "/full.safetensors"], np: 2))
        // Killed at step 45, in the second epoch; the last checkpoint is step 40.
        let killed = Harness.run(common + ["--batch-size", "32", "--checkpoint-dir", dir + "/ck", "--checkpoint-every", "10",
                                           "--save", dir + "/resumed.safetensors"], np: 2, env: ["DDP_TEST_KILL": "1:45"])
        XCTAssertNotEqual(killed.status, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/resumed.safetensors"))
        let resumed = Harness.run(common + ["--batch-size", "32", "--checkpoint-dir", dir + "/ck", "--checkpoint-every", "10",
                                            "--save", dir + "/resumed.safetensors", "--resume"], np: 2)
        ok(resumed)
        XCTAssertTrue(resumed.stdout.contains("ckpt-00000040-") && resumed.stdout.contains(".ckpt at step 40 (epoch 2, batch 8)"), resumed.stdout)
        XCTAssertEqual(bytes(dir + "/full.safetensors"), bytes(dir + "/resumed.safetensors"), "bitwise identical weights")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/ck/best.safetensors"))
        let kept = try FileManager.default.contentsOfDirectory(atPath: dir + "/ck").filter { $0.hasSuffix(".ckpt") }
        XCTAssertEqual(kept.count, 3, "--keep 3 by default: \(kept)")
    }

    /// Three ranks share one copy of the parameters and of Adam's moments, split in uneven slices;
    /// rank 0 alone writes the restored state into it, and the others must see all of it.
    func testKilledRunResumesBitwiseWithSharedOptimizerState() throws {
        let dir = temporaryDirectory()
        let args = ["--dataset", "synthetic:2000", "--model", "mlp:64,33", "--epochs", "2", "--optimizer", "adam", "--lr", "0.01",
                    "--log-every", "0", "--batch-size", "20", "--allreduce", "shared"]
        ok(Harness.run(args + ["--save", dir + "/full.safetensors"], np: 3))
        let ck = ["--checkpoint-dir", dir + "/ck", "--checkpoint-every", "10", "--save", dir + "/resumed.safetensors"]
        XCTAssertNotEqual(Harness.run(args + ck, np: 3, env: ["DDP_TEST_KILL": "2:25"]).status, 0)
        let resumed = Harness.run(args + ck + ["--resume"], np: 3)
        ok(resumed)
        XCTAssertTrue(resumed.stdout.contains("ckpt-00000020-") && resumed.stdout.contains(".ckpt at step 20"), resumed.stdout)
        XCTAssertEqual(bytes(dir + "/full.safetensors"), bytes(dir + "/resumed.safetensors"), "bitwise identical weights")
    }

    func testResumeOnAnotherRankCount() throws {
        let dir = temporaryDirectory()
        ok(Harness.run(common + ["--batch-size", "64", "--save", dir + "/full.safetensors"]))
        // One process stops at step 40 (mid-epoch 2) with a checkpoint; two ranks at 32 each go on.
        ok(Harness.run(common + ["--batch-size", "64", "--checkpoint-dir", dir + "/ck", "--max-steps", "40"]))
        let r = Harness.run(common + ["--batch-size", "32", "--checkpoint-dir", dir + "/ck", "--resume",
                                      "--save", dir + "/np2.safetensors"], np: 2)
        ok(r)
        let d = Harness.maxAbsDifference(try Harness.weights(dir + "/full.safetensors"), try Harness.weights(dir + "/np2.safetensors"))
        XCTAssertLessThan(d, 1e-5)
        // Another global batch cannot continue mid-epoch on the same trajectory: refused clearly.
        let bad = Harness.run(common + ["--batch-size", "16", "--checkpoint-dir", dir + "/ck", "--resume",
                                        Harness.checkpoint(dir + "/ck", step: 40)], np: 2)
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("same global batch"), bad.stderr)
    }

    func testCorruptCheckpointsAreRefusedAndLatestFallsBack() throws {
        let dir = temporaryDirectory()
        let ck = dir + "/ck"
        ok(Harness.run(common + ["--batch-size", "64", "--checkpoint-dir", ck, "--checkpoint-every", "10", "--max-steps", "20"]))
        let latest = Harness.checkpoint(ck, step: 20), previous = Harness.checkpoint(ck, step: 10)
        let good = try XCTUnwrap(bytes(latest))

        func refused(_ data: Data, _ text: String, args: [String] = [], file: StaticString = #filePath, line: UInt = #line) throws {
            let path = dir + "/bad.ckpt"
            try data.write(to: URL(fileURLWithPath: path))
            let r = Harness.run(common + ["--batch-size", "64", "--checkpoint-dir", dir + "/other", "--resume", path] + args)
            XCTAssertTrue(r.status == 1 || r.status == 2, "status \(r.status)", file: file, line: line)
            XCTAssertEqual(r.stderrLines.count, 1, r.stderr, file: file, line: line)
            XCTAssertTrue(r.stderr.contains(path) && r.stderr.contains(text), "'\(r.stderr)' should mention \(text)", file: file, line: line)
        }
        var flipped = good
        flipped[good.count / 2] ^= 0x40
        try refused(flipped, "checksum mismatch")
        try refused(good.prefix(good.count - 100), "truncated checkpoint")
        var magic = good
        magic[0] = UInt8(ascii: "X")
        try refused(magic, "wrong magic number")
        var version = good
        version[8] = 9
        try refused(version, "format version 9")
        try refused(good, "checkpoint of model mlp:64:dropout=0.2, this run trains mlp:32", args: ["--model", "mlp:32"])

        // The newest is damaged: --resume says so and takes the previous one.
        try flipped.write(to: URL(fileURLWithPath: latest))
        let r = Harness.run(common + ["--batch-size", "64", "--checkpoint-dir", ck, "--resume", "--max-steps", "25"])
        ok(r)
        XCTAssertTrue(r.stderr.contains("\(latest): corrupted checkpoint (checksum mismatch); falling back"), r.stderr)
        XCTAssertTrue(r.stdout.contains("Resumed from \(previous) at step 10"), r.stdout)
    }

    func testFailedWriteKeepsPreviousCheckpoint() throws {
        let dir = temporaryDirectory()
        let ck = dir + "/ck"
        ok(Harness.run(common + ["--batch-size", "64", "--checkpoint-dir", ck, "--max-steps", "10"]))
        let path = Harness.checkpoint(ck, step: 10)
        let before = try XCTUnwrap(bytes(path))
        // A 64 KiB file-size limit: every checkpoint write fails part-way (as on a full disk).
        let script = "ulimit -f 64; exec \"$0\" \"$@\""
        let r = Harness.runShell(script, args: common + ["--batch-size", "64", "--checkpoint-dir", ck, "--checkpoint-every", "5",
                                                         "--resume", "--max-steps", "20"])
        XCTAssertEqual(r.status, 0, "training goes on: \(r.stderr)")
        XCTAssertTrue(r.stderr.contains("checkpoint write failed, previous checkpoints kept"), r.stderr)
        XCTAssertEqual(bytes(path), before, "the previous checkpoint is untouched")
        let names = try FileManager.default.contentsOfDirectory(atPath: ck)
        XCTAssertFalse(names.contains { $0.contains(".tmp.") }, "no temporary file left: \(names)")
        XCTAssertFalse(names.contains { $0.hasPrefix("ckpt-00000015") }, "no partial checkpoint: \(names)")
        ok(Harness.run(common + ["--batch-size", "64", "--checkpoint-dir", ck, "--resume", "--max-steps", "12"]))
    }

    /// The metrics file hits a 1 KiB file-size limit: reported once, and training finishes.
    func testFailedMetricsWriteIsReportedNotFatal() {
        let path = temporaryDirectory() + "/m.jsonl"
        let r = Harness.runShell("ulimit -f 1; exec \"$0\" \"$@\"", args: ["--dataset", "synthetic:600", "--model", "mlp:16",
                                                                      "--max-steps", "100", "--epochs", "10", "--metrics", path, "--log-every", "0"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stderrLines.filter { $0.contains("metrics write failed (File too large)") }.count, 1, r.stderr)
    }

    func testSupervisorRestartsKilledJob() throws {
        let dir = temporaryDirectory()
        ok(Harness.run(common + ["--batch-size", "32", "--save", dir + "/full.safetensors"], np: 2))
        let supervisor = Harness.packageRoot + "/Scripts/ddp-run"
        let r = Harness.runCommand([supervisor, "--max-restarts", "2", "--", "mpirun", "-np", "2", "--oversubscribe", Harness.binary]
            + common + ["--batch-size", "32", "--checkpoint-dir", dir + "/ck", "--checkpoint-every", "10", "--save", dir + "/sup.safetensors"],
            env: ["DDP_TEST_KILL": "1:45"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("restart 1 of 2"), r.stderr)
        XCTAssertEqual(bytes(dir + "/full.safetensors"), bytes(dir + "/sup.safetensors"), "same final weights as the uninterrupted run")
    }

    func testSIGTERMCheckpointsAndExitsCleanly() throws {
        let dir = temporaryDirectory()
        for np in [nil, 2] as [Int?] {
            let ck = dir + "/ck\(np ?? 1)"
            let args = ["--dataset", "synthetic:20000", "--model", "mlp:256", "--epochs", "50", "--log-every", "20", "--checkpoint-dir", ck]
            let r = Harness.run(args, np: np, terminateAfter: 3)
            XCTAssertTrue(r.stdout.contains("Stopped by signal at step"), r.stdout + r.stderr)
            if np == nil { XCTAssertEqual(r.status, 75, "documented exit status") } else { XCTAssertNotEqual(r.status, 0) }
            let stopLine = try XCTUnwrap(r.stdout.split(separator: "\n").first { $0.hasPrefix("Stopped by signal at step") })
            let step = Int(stopLine.split(separator: " ")[5].dropLast())!
            XCTAssertTrue(FileManager.default.fileExists(atPath: Harness.checkpoint(ck, step: step)), stopLine + "\n" + r.stdout)
            ok(Harness.run(args.map { $0 == "50" ? "1" : $0 } + ["--resume", "--max-steps", String(step + 2)], np: np))
        }
    }
}
