import Data
import Foundation
import XCTest

/// The training toolkit through the binary: learning-rate schedules (the rate of every step in the
/// metrics file, the same on any number of ranks, exact across a kill and resume), the new
/// optimizers, gradient clipping and gradient accumulation.
final class ScheduleTests: XCTestCase {
    /// 2,000 synthetic samples at global batch 64: 32 steps per epoch.
    let common = ["--dataset", "synthetic:2000", "--model", "mlp:32", "--log-every", "0", "--lr", "0.05"]

    func ok(_ r: Harness.Result, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, 0, r.stderr, file: file, line: line)
    }

    func stepRates(_ metrics: String) throws -> [Float] {
        try String(contentsOfFile: metrics, encoding: .utf8).split(separator: "\n").compactMap { line in
            let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            return o["val_loss"] == nil ? Float(o["lr"] as! Double) : nil
        }
    }

    func testStepScheduleRatesInMetricsOnAnyRankCount() throws {
        let dir = temporaryDirectory()
        for np in [nil, 2] as [Int?] {
            let m = dir + "/m\(np ?? 1).jsonl"
            ok(Harness.run(common + ["--epochs", "3", "--lr-schedule", "step:1:0.5", "--batch-size", String(64 / (np ?? 1)),
                                     "--metrics", m, "--save", dir + "/w\(np ?? 1).safetensors"], np: np))
            let rates = try stepRates(m)
            XCTAssertEqual(rates, Array(repeating: Float(0.05), count: 32) + Array(repeating: 0.025, count: 32)
                           + Array(repeating: 0.0125, count: 32), "np \(np ?? 1)")
        }
        let d = Harness.maxAbsDifference(try Harness.weights(dir + "/w1.safetensors"), try Harness.weights(dir + "/w2.safetensors"))
        XCTAssertLessThan(d, 1e-5, "the same trajectory on 1 and 2 ranks")
    }

    func testWarmupAndOneCycleRates() throws {
        let m = temporaryDirectory() + "/m.jsonl"
        ok(Harness.run(common + ["--epochs", "2", "--lr-schedule", "onecycle", "--metrics", m]))
        let rates = try stepRates(m)
        XCTAssertEqual(rates.count, 64)
        XCTAssertEqual(rates[0], 0.05 / 25, accuracy: 1e-9, "OneCycleLR starts at max_lr / div_factor")
        XCTAssertEqual(rates.firstIndex(of: rates.max()!), 18, "peak at pct_start * T - 1")
        XCTAssertEqual(rates[63], 0.05 / 25 / 1e4, accuracy: 1e-12, "ends at initial / final_div_factor")
        let w = temporaryDirectory() + "/w.jsonl"
        ok(Harness.run(common + ["--max-steps", "6", "--warmup-steps", "4", "--metrics", w]))
        XCTAssertEqual(try stepRates(w), [0.0125, 0.025, 0.0375, 0.05, 0.05, 0.05])
    }

    func testKilledScheduledRunResumesBitwiseAndRefusesAnotherSchedule() throws {
        let dir = temporaryDirectory()
        let args = common + ["--epochs", "3", "--optimizer", "adadelta", "--lr", "1", "--lr-schedule", "cosine:0.01", "--warmup-steps", "10",
                             "--batch-size", "32"]
        ok(Harness.run(args + ["--save", dir + "/full.safetensors"], np: 2))
        let ck = ["--checkpoint-dir", dir + "/ck", "--checkpoint-every", "10", "--save", dir + "/resumed.safetensors"]
        XCTAssertNotEqual(Harness.run(args + ck, np: 2, env: ["DDP_TEST_KILL": "1:55"]).status, 0)
        let resumed = Harness.run(args + ck + ["--resume"], np: 2)
        ok(resumed)
        XCTAssertTrue(resumed.stdout.contains("at step 50"), resumed.stdout)
        XCTAssertEqual(FileManager.default.contents(atPath: dir + "/full.safetensors"),
                       FileManager.default.contents(atPath: dir + "/resumed.safetensors"), "bitwise identical weights")
        // The schedule, and (for a schedule over the whole run) its length, belong to the trajectory.
        let other = args.map { $0 == "cosine:0.01" ? "step:1" : $0 }
        assertCleanFailure(other + ck + ["--resume"], mentions: "--lr-schedule step:1:0.1 (the checkpoint has cosine:0.01)", status: 2, np: 2)
        let longer = args.map { $0 == "3" ? "4" : $0 }
        assertCleanFailure(longer + ck + ["--resume"], mentions: "--epochs 4 (the checkpoint has 3)", status: 2, np: 2)
    }

    /// pytorch/examples' MNIST recipe, Adadelta lr 1.0 with StepLR(1, 0.7), on the MLP.
    func testAdadeltaRecipeLearns() throws {
        let r = Harness.run(["--optimizer", "adadelta", "--lr", "1", "--lr-schedule", "step:1:0.7", "--epochs", "2", "--log-every", "0"])
        ok(r)
        XCTAssertGreaterThan(try XCTUnwrap(Harness.accuracy(r.stdout)), 0.9, r.stdout)
        XCTAssertTrue(r.stdout.contains("Learning rate: step:1:0.7"), r.stdout)
    }

    /// `--clip-grad-norm` clips the global norm of the summed gradients: the same run on 1 rank, on 2
    /// ranks with the node-shared reducer (its norm is one all-reduce of slice norms) and with MPI.
    func testClipGradNormIsTheSameOnAnyRankCount() throws {
        let dir = temporaryDirectory()
        let args = common.map { $0 == "0.05" ? "0.5" : $0 } + ["--max-steps", "40", "--clip-grad-norm", "0.1"]
        ok(Harness.run(args + ["--batch-size", "64", "--save", dir + "/np1.safetensors"]))
        ok(Harness.run(args + ["--batch-size", "32", "--save", dir + "/shared.safetensors"], np: 2))
        ok(Harness.run(args + ["--batch-size", "32", "--allreduce", "mpi", "--save", dir + "/mpi.safetensors"], np: 2))
        ok(Harness.run(args.dropLast(2) + ["--batch-size", "64", "--save", dir + "/unclipped.safetensors"]))
        let one = try Harness.weights(dir + "/np1.safetensors")
        XCTAssertLessThan(Harness.maxAbsDifference(one, try Harness.weights(dir + "/shared.safetensors")), 1e-5)
        XCTAssertLessThan(Harness.maxAbsDifference(one, try Harness.weights(dir + "/mpi.safetensors")), 1e-5)
        XCTAssertGreaterThan(Harness.maxAbsDifference(one, try Harness.weights(dir + "/unclipped.safetensors")), 1e-2, "clipping changed the run")
        assertCleanFailure(common + ["--clip-grad-norm", "0"], mentions: "invalid --clip-grad-norm 0.0", status: 2)
    }

    /// `--accumulate 4 --batch-size 16` is one step at batch 64, within float rounding, after 60
    /// steps (dropout included: its masks follow the sample, not the micro-batch), on 1 rank and on 2
    /// ranks with either reducer; the epoch's last, partial batch included.
    func testAccumulationEqualsTheLargeBatch() throws {
        let dir = temporaryDirectory()
        let args = ["--dataset", "synthetic:2000", "--model", "mlp:64:dropout=0.2", "--log-every", "0", "--lr", "0.05",
                    "--momentum", "0.9", "--max-steps", "60", "--epochs", "3"]
        // One rank in one thread (local mode's rank threads are tested against mpirun elsewhere).
        ok(Harness.run(args + ["--batch-size", "64", "--local-ranks", "1", "--save", dir + "/big.safetensors"]))
        let r = Harness.run(args + ["--batch-size", "16", "--accumulate", "4", "--local-ranks", "1", "--save", dir + "/acc.safetensors"])
        ok(r)
        XCTAssertTrue(r.stdout.contains("per-rank batch 16 x 4 micro-batches per step, global batch 64"), r.stdout)
        ok(Harness.run(args + ["--batch-size", "8", "--accumulate", "4", "--save", dir + "/shared.safetensors"], np: 2))
        ok(Harness.run(args + ["--batch-size", "8", "--accumulate", "4", "--allreduce", "mpi", "--save", dir + "/mpi.safetensors"], np: 2))
        let big = try Harness.weights(dir + "/big.safetensors")
        for name in ["acc", "shared", "mpi"] {
            XCTAssertLessThan(Harness.maxAbsDifference(big, try Harness.weights(dir + "/\(name).safetensors")), 1e-5, name)
        }
        assertCleanFailure(args + ["--accumulate", "0"], mentions: "invalid --accumulate 0", status: 2)
    }
}
