import Foundation
import XCTest

/// Early stopping, evaluation every N steps and the dry run, end to end.
final class RunControlTests: XCTestCase {
    func ok(_ r: Harness.Result, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, 0, r.stderr + r.stdout.suffix(1500), file: file, line: line)
    }

    func jsonLines(_ path: String) throws -> [[String: Any]] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
    }

    /// A wide MLP on 300 rows of diabetes overfits: validation loss bottoms out and rises. The run
    /// stops `patience` evaluations after its best, best.safetensors holds that best (evaluate
    /// reproduces its loss), and a run stopped part-way and resumed stops at the same step with the
    /// same weights (the early-stopping count is in the checkpoint).
    func testEarlyStoppingOnAnOverfittingRun() throws {
        let source = (Harness.packageRoot as NSString).deletingLastPathComponent + "/shared/data/diabetes/diabetes.csv"
        try XCTSkipUnless(FileManager.default.fileExists(atPath: source), "no \(source)")
        let dir = temporaryDirectory()
        let args = ["--dataset", "csv:" + source, "--holdout", "142", "--model", "mlp:256,256", "--optimizer", "adam", "--lr", "0.01",
                    "--epochs", "300", "--batch-size", "20", "--log-every", "0", "--early-stop", "5"]
        let full = Harness.run(args + ["--checkpoint-dir", dir + "/a", "--metrics", dir + "/a.jsonl", "--save", dir + "/a.safetensors"])
        ok(full)
        let stopLine = try XCTUnwrap(full.stdout.split(separator: "\n").first { $0.hasPrefix("Early stopping after step") }, full.stdout)
        print(stopLine)
        let evals = try jsonLines(dir + "/a.jsonl").filter { $0["val_loss"] != nil }
        let losses = evals.map { $0["val_loss"] as! Double }
        XCTAssertLessThan(evals.count, 300, "stopped before the last epoch")
        let bestIndex = losses.indices.min { losses[$0] < losses[$1] }!
        XCTAssertEqual(losses.count - 1 - bestIndex, 5, "stopped 5 evaluations after the best: \(losses)")
        let evaluated = Harness.run(["evaluate", "--weights", dir + "/a/best.safetensors"])
        ok(evaluated)
        let reported = try XCTUnwrap(evaluated.stdout.split(separator: "\n").first { $0.hasPrefix("Validation set:") })
        XCTAssertTrue(reported.contains(String(format: "Average loss: %.6g,", losses[bestIndex])), "\(reported) vs best \(losses[bestIndex])")

        // Stopped by --max-steps at an epoch end (15 steps per epoch), then resumed.
        let part = Harness.run(args + ["--checkpoint-dir", dir + "/b", "--max-steps", String(15 * (bestIndex + 2))])
        ok(part)
        let resumed = Harness.run(args + ["--checkpoint-dir", dir + "/b", "--resume", "--save", dir + "/b.safetensors"])
        ok(resumed)
        XCTAssertTrue(resumed.stdout.contains(String(stopLine.prefix(while: { $0 != "(" }))), resumed.stdout)
        XCTAssertEqual(Harness.maxAbsDifference(try Harness.weights(dir + "/a.safetensors"), try Harness.weights(dir + "/b.safetensors")), 0)
    }

    func testEvalEveryAndDryRun() throws {
        let dir = temporaryDirectory()
        // 8,000 samples at global batch 64: 125 steps an epoch; evaluations every 40 steps of the run
        // (as Lightning's val_check_interval counted in global steps) and at each epoch's end.
        ok(Harness.run(["--model", "mlp:32", "--epochs", "2", "--batch-size", "32", "--eval-every", "40", "--log-every", "0", "--metrics", dir + "/m.jsonl"], np: 2))
        let steps = try jsonLines(dir + "/m.jsonl").filter { $0["val_accuracy"] != nil }.map { $0["step"] as! Int }
        XCTAssertEqual(steps, [40, 80, 120, 125, 160, 200, 240, 250])

        let dry = Harness.run(["--model", "cnn", "--epochs", "5", "--dry-run", "--metrics", dir + "/d.jsonl", "--save", dir + "/d.safetensors",
                               "--checkpoint-dir", dir + "/ck", "--log-every", "0"], np: 2)
        ok(dry)
        XCTAssertTrue(dry.stdout.contains("Dry run: 1 training step and 1 evaluation batch"), dry.stdout)
        let lines = try jsonLines(dir + "/d.jsonl")
        XCTAssertEqual(lines.filter { $0["loss"] != nil }.count, 1)
        XCTAssertEqual(lines.filter { $0["val_loss"] != nil }.count, 1)
        XCTAssertTrue(dry.stdout.contains("/1000 ("), "one evaluation batch of 1000: \(dry.stdout)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/d.safetensors"))
        XCTAssertEqual(Harness.checkpoints(dir + "/ck").count, 1)
        assertCleanFailure(["--eval-every", "0"], mentions: "--eval-every", status: 2)
        assertCleanFailure(["--min-delta", "0.1"], mentions: "--early-stop", status: 2)
    }

    /// `--config` of the configuration a run writes beside its weights repeats the run bitwise; the
    /// command line overrides the file; `--print-config` shows every flag resolved.
    func testConfigFileRoundTrip() throws {
        let dir = temporaryDirectory()
        ok(Harness.run(["--model", "mlp:64", "--optimizer", "adam", "--max-steps", "30", "--batch-size", "32", "--log-every", "0",
                        "--normalize", "0.1307,0.3081", "--save", dir + "/a.safetensors", "--checkpoint-dir", dir + "/ck"], np: 2))
        let written = try String(contentsOfFile: dir + "/a.yaml", encoding: .utf8)
        XCTAssertEqual(try String(contentsOfFile: dir + "/ck/config.yaml", encoding: .utf8), written)
        for line in ["model: mlp:64", "optimizer: adam", "max-steps: 30", "normalize: 0.1307,0.3081", "data-dir: " + Harness.mnist, "seed: 1"] {
            XCTAssertTrue(written.contains(line + "\n"), "\(line) in:\n\(written)")
        }
        ok(Harness.run(["--config", dir + "/a.yaml", "--save", dir + "/b.safetensors", "--checkpoint-dir", dir + "/ck2"], np: 2, env: ["DDP_DATA_DIR": "/nonexistent"]))
        XCTAssertEqual(Harness.maxAbsDifference(try Harness.weights(dir + "/a.safetensors"), try Harness.weights(dir + "/b.safetensors")), 0)
        let printed = Harness.run(["--config", dir + "/a.yaml", "--lr", "0.5", "--print-config"])
        ok(printed)
        XCTAssertTrue(printed.stdout.contains("lr: 0.5\n") && printed.stdout.contains("model: mlp:64\n"), printed.stdout)
        try "lr: [1, 2\n".write(toFile: dir + "/bad.yaml", atomically: true, encoding: .utf8)
        assertCleanFailure(["--config", dir + "/bad.yaml"], mentions: "bad.yaml: not valid YAML", status: 2)
        try "no-such-flag: 3\n".write(toFile: dir + "/unknown.yaml", atomically: true, encoding: .utf8)
        assertCleanFailure(["--config", dir + "/unknown.yaml"], mentions: "--no-such-flag", status: 2)
    }

    /// Under mpirun in a terminal (util-linux's `script` provides one), rank 0 draws tqdm's bar and
    /// the log lines scroll above it; with mpirun's output sent to a file, the file gets no bar
    /// (mpirun gives the ranks a pseudo-terminal either way).
    func testProgressBarOnlyWhenATerminalWatches() throws {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: "/usr/bin/script"), "no /usr/bin/script")
        let dir = temporaryDirectory()
        let command = "mpirun -np 2 --oversubscribe \(Harness.binary) --model mlp:32 --epochs 1 --batch-size 32 --log-every 50"
        let terminal = Harness.runCommand(["/usr/bin/script", "-qec", command, dir + "/typescript"])
        XCTAssertEqual(terminal.status, 0, terminal.stdout)
        let seen = try String(contentsOfFile: dir + "/typescript", encoding: .utf8)
        XCTAssertTrue(seen.contains("Epoch 1/1: ") && seen.contains("| 125/125 [") && seen.contains("samples/s, loss="), seen)
        XCTAssertTrue(seen.contains("Epoch 1 [Batch 50/125"), "the log lines are there too")
        let redirected = Harness.runCommand(["/usr/bin/script", "-qec", command + " > " + dir + "/log.txt", dir + "/typescript2"])
        XCTAssertEqual(redirected.status, 0, redirected.stdout)
        let log = try String(contentsOfFile: dir + "/log.txt", encoding: .utf8)
        XCTAssertTrue(log.contains("Epoch 1 [Batch 50/125"), log)
        XCTAssertFalse(log.contains("samples/s, loss="), "no bar in a file: \(log)")
    }
}
