import Foundation
import XCTest

/// Local mode runs its ranks as threads of one process: the same per-rank code and the same
/// shared-memory reduction as mpirun with as many ranks, so the same bits.
final class LocalModeTests: XCTestCase {
    /// `ddp-train --local-ranks 2 --batch-size 2B` against `mpirun -np 2 ddp-train --batch-size B`:
    /// an MLP with SGD, a CNN with Adam, and resnet8 (synchronized BatchNorm) with gradient clipping.
    func testLocalRanksAreBitwiseMpirun() throws {
        let dir = temporaryDirectory()
        let runs: [(String, [String])] = [
            ("mlp", ["--model", "mlp:512,512", "--max-steps", "30", "--lr", "0.05", "--momentum", "0.9"]),
            ("cnn", ["--model", "cnn", "--max-steps", "8", "--optimizer", "adam"]),
            ("resnet8", ["--model", "resnet8", "--max-steps", "4", "--clip-grad-norm", "0.5"]),
        ]
        for (name, args) in runs {
            let local = Harness.run(args + ["--local-ranks", "2", "--batch-size", "64", "--save", dir + "/\(name)-local.safetensors"])
            XCTAssertEqual(local.status, 0, local.stderr)
            XCTAssertTrue(local.stdout.contains("Local mode: 2 ranks as threads of this process"), local.stdout)
            XCTAssertTrue(local.stdout.contains("2 ranks, per-rank batch 32, global batch 64"), local.stdout)
            let mpi = Harness.run(args + ["--batch-size", "32", "--save", dir + "/\(name)-mpi.safetensors"], np: 2)
            XCTAssertEqual(mpi.status, 0, mpi.stderr)
            let d = Harness.maxAbsDifference(try Harness.weights(dir + "/\(name)-local.safetensors"), try Harness.weights(dir + "/\(name)-mpi.safetensors"))
            XCTAssertEqual(d, 0, "\(name): local ranks vs mpirun -np 2")
            // The same evaluation, line for line.
            XCTAssertEqual(Harness.accuracy(local.stdout), Harness.accuracy(mpi.stdout), name)
        }
    }

    /// By default one rank per core (as many as divide the batch); `--local-ranks 1` is one thread
    /// with every core in BLAS; a count that does not divide the batch is a usage error.
    func testLocalRankChoice() {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let r = Harness.run(["--dataset", "synthetic:600", "--model", "mlp:16", "--max-steps", "2", "--batch-size", String(16 * cores)])
        XCTAssertEqual(r.status, 0, r.stderr)
        if cores > 1 {
            XCTAssertTrue(r.stdout.contains("Local mode: \(cores) ranks as threads of this process (one per core)"), r.stdout)
        }
        let one = Harness.run(["--dataset", "synthetic:600", "--model", "mlp:16", "--max-steps", "2", "--local-ranks", "1"])
        XCTAssertEqual(one.status, 0, one.stderr)
        XCTAssertTrue(one.stdout.contains("1 rank (local mode)"), one.stdout)
        assertCleanFailure(["--dataset", "synthetic:600", "--local-ranks", "3", "--batch-size", "64"], mentions: "--local-ranks 3 must divide --batch-size 64", status: 2)
        assertCleanFailure(["--dataset", "synthetic:600", "--local-ranks", "2"], mentions: "--local-ranks 2 is for local mode", status: 2, np: 2)
    }

    /// The hierarchical reducer on one machine (its cross-machine step skipped) sums and updates
    /// exactly as the shared-memory reducer: the same bits, with Adam and clipping.
    func testHierarchicalOnOneMachineEqualsShared() throws {
        let dir = temporaryDirectory()
        let args = ["--dataset", "synthetic:2000", "--model", "mlp:64,32", "--max-steps", "20", "--optimizer", "adam", "--clip-grad-norm", "0.5",
                    "--batch-size", "64", "--local-ranks", "2", "--log-every", "0"]
        let shared = Harness.run(args + ["--save", dir + "/shared.safetensors"])
        XCTAssertEqual(shared.status, 0, shared.stderr)
        let h = Harness.run(args + ["--allreduce", "hierarchical", "--save", dir + "/h.safetensors"])
        XCTAssertEqual(h.status, 0, h.stderr)
        XCTAssertTrue(h.stdout.contains("Gradients: hierarchical: shared memory (one process's memory) inside each of 1 machines of 2 ranks"), h.stdout)
        XCTAssertEqual(Harness.maxAbsDifference(try Harness.weights(dir + "/shared.safetensors"), try Harness.weights(dir + "/h.safetensors")), 0)
    }

    /// A rank thread that hangs is caught by the watchdog, as an MPI rank is.
    func testStalledLocalRankTriggersWatchdog() {
        let r = Harness.run(["--dataset", "synthetic:5000", "--model", "mlp:32", "--epochs", "5", "--log-every", "0", "--stall-timeout", "2",
                             "--local-ranks", "2"], env: ["DDP_TEST_STALL": "1:5"], timeout: 90)
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("watchdog: rank 0 waited"), r.stderr)
        XCTAssertTrue(r.stderr.contains("at step 5"), r.stderr)
        XCTAssertLessThan(r.seconds, 60)
    }

    /// SIGTERM to a local run of two rank threads: a checkpoint, status 75, and the resumed run ends
    /// bitwise where an uninterrupted one does.
    func testLocalRanksStopAndResumeBitwise() throws {
        let dir = temporaryDirectory()
        // 20 epochs (6,250 steps) outlast the signal at 2 s; the comparison then runs to 50 steps past the stop.
        let common = ["--dataset", "synthetic:20000", "--model", "mlp:256,256", "--epochs", "20", "--batch-size", "64", "--local-ranks", "2",
                      "--optimizer", "adam", "--log-every", "0"]
        let stopped = Harness.run(common + ["--checkpoint-dir", dir + "/ck"], terminateAfter: 2)
        XCTAssertEqual(stopped.status, 75, stopped.stderr + stopped.stdout)
        guard let line = stopped.stdout.split(separator: "\n").first(where: { $0.hasPrefix("Stopped by signal at step ") }),
              let stop = Int(line.dropFirst("Stopped by signal at step ".count).prefix { $0.isNumber }) else {
            return XCTFail("no stop line: \(stopped.stdout)")
        }
        let end = ["--max-steps", String(stop + 50)]
        let resumed = Harness.run(common + end + ["--checkpoint-dir", dir + "/ck", "--resume", "--save", dir + "/resumed.safetensors"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("Resumed from"), resumed.stdout)
        let full = Harness.run(common + end + ["--save", dir + "/full.safetensors"])
        XCTAssertEqual(full.status, 0, full.stderr)
        XCTAssertEqual(Harness.maxAbsDifference(try Harness.weights(dir + "/full.safetensors"), try Harness.weights(dir + "/resumed.safetensors")), 0)
    }
}
