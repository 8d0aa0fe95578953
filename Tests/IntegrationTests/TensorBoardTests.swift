import Foundation
import XCTest

/// `--tensorboard` read back by TensorBoard's own reader (the tensorboard Python package's
/// `EventAccumulator`): the scalar tags, every value equal to the metrics file's, weight histograms
/// per epoch and the confusion matrix image. Skipped without the package unless DDP_REQUIRE_PYTHON=1.
final class TensorBoardTests: XCTestCase {
    static let reader = """
        import json, sys
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        ea = EventAccumulator(sys.argv[1], size_guidance={'scalars': 0, 'histograms': 0, 'images': 0})
        ea.Reload()
        tags = ea.Tags()
        print(json.dumps({
            'scalars': {t: [[e.step, e.value] for e in ea.Scalars(t)] for t in tags['scalars']},
            'histograms': {t: [[e.step, e.histogram_value.num, e.histogram_value.sum, e.histogram_value.sum_squares]
                               for e in ea.Histograms(t)] for t in tags['histograms']},
            'images': {t: [[e.step, e.width, e.height] for e in ea.Images(t)] for t in tags['images']},
        }))
        """

    struct Read: Decodable {
        var scalars: [String: [[Double]]]
        var histograms: [String: [[Double]]]
        var images: [String: [[Double]]]
    }

    func testEventAccumulatorReadsWhatTheMetricsFileSays() throws {
        let probe = Harness.runCommand(["python3", "-c", "import tensorboard"])
        if probe.status != 0 {
            if ProcessInfo.processInfo.environment["DDP_REQUIRE_PYTHON"] == "1" { XCTFail("no tensorboard package: \(probe.stderr)") }
            throw XCTSkip("python3 has no tensorboard package (Scripts/test.sh installs it)")
        }
        let dir = temporaryDirectory()
        let run = Harness.run(["--model", "mlp:32", "--epochs", "2", "--batch-size", "32", "--log-every", "0",
                               "--tensorboard", dir + "/tb", "--metrics", dir + "/m.jsonl"], np: 2)
        XCTAssertEqual(run.status, 0, run.stderr)
        let r = Harness.runCommand(["python3", "-c", Self.reader, dir + "/tb"], timeout: 300)
        XCTAssertEqual(r.status, 0, r.stderr)
        let read = try JSONDecoder().decode(Read.self, from: Data(r.stdout.utf8))
        XCTAssertEqual(Set(read.scalars.keys), ["loss", "lr", "samples_per_s", "val_loss", "val_accuracy"])
        let lines = try String(contentsOfFile: dir + "/m.jsonl", encoding: .utf8).split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
        for tag in ["loss", "lr", "samples_per_s", "val_loss", "val_accuracy"] {
            let expected = lines.compactMap { l in (l[tag] as? Double).map { [Double(l["step"] as! Int), $0] } }
            let got = read.scalars[tag] ?? []
            XCTAssertEqual(got.count, expected.count, tag)
            XCTAssertEqual(got.map { $0[0] }, expected.map { $0[0] }, "\(tag): steps")
            for (g, e) in zip(got, expected) {
                // The metrics file prints 6 significant digits (samples/s one decimal); TensorBoard keeps float32.
                XCTAssertEqual(g[1], e[1], accuracy: max(abs(e[1]) * 1e-5, tag == "samples_per_s" ? 0.06 : 1e-7), "\(tag) at step \(e[0])")
            }
        }
        XCTAssertEqual(read.scalars["loss"]?.count, 250)
        XCTAssertEqual(read.histograms["weights/0.weight"]?.map { $0[0] }, [125, 250], "one per epoch")
        XCTAssertEqual(read.histograms["weights/0.weight"]?.first?[1], 784 * 32)
        XCTAssertEqual(read.images["confusion_matrix"]?.map { $0[1] }, [120, 120], "10 classes x 12 pixels, per evaluation")
        XCTAssertEqual(read.histograms["gradients/0.weight"]?.map { $0[0] }, [125, 250], "gradient histograms per epoch")
    }

    /// The gradient histograms show the gradients the update applied, summed over ranks (and
    /// clipped): the same at 1 rank, at 2 with the node-shared reducer, at 2 over MPI and at 2 with
    /// the hierarchical reducer (each bucket's slices in their ranks' segments), with and without
    /// --clip-grad-norm (whose sums the shared reducer keeps in each rank's own slice).
    func testGradientHistogramsAreTheAppliedSum() throws {
        guard Harness.runCommand(["python3", "-c", "import tensorboard"]).status == 0 else {
            if ProcessInfo.processInfo.environment["DDP_REQUIRE_PYTHON"] == "1" { XCTFail("no tensorboard package") }
            throw XCTSkip("python3 has no tensorboard package")
        }
        for clip in [[], ["--clip-grad-norm", "0.5"]] {
            var sums: [[Double]] = []
            for (np, batch, extra) in [(1, 64, [String]()), (2, 32, []), (2, 32, ["--allreduce", "mpi"]), (2, 32, ["--allreduce", "hierarchical"])] {
                let dir = temporaryDirectory()
                let run = Harness.run(["--model", "mlp:32", "--max-steps", "30", "--batch-size", String(batch), "--log-every", "0",
                                       "--tensorboard", dir] + clip + extra, np: np)
                XCTAssertEqual(run.status, 0, run.stderr)
                let r = Harness.runCommand(["python3", "-c", Self.reader, dir], timeout: 300)
                let read = try JSONDecoder().decode(Read.self, from: Data(r.stdout.utf8))
                let h = try XCTUnwrap(read.histograms["gradients/0.weight"]?.first, r.stdout)
                sums.append([h[2], h[3]])
            }
            print("gradient histogram (sum, sum of squares) at np1 / np2 shared / np2 mpi / np2 hierarchical \(clip): \(sums)")
            for s in sums.dropFirst() {
                XCTAssertEqual(s[0], sums[0][0], accuracy: 1e-4 * max(1, abs(sums[0][0])), "\(clip)")
                XCTAssertEqual(s[1], sums[0][1], accuracy: 1e-4 * sums[0][1], "\(clip)")
            }
            XCTAssertGreaterThan(sums[0][1], 0)
        }
    }
}
