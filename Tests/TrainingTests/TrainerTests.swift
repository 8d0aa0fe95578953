import Comm
import Data
import Foundation
import Training
import XCTest

final class TrainerTests: XCTestCase {
    func config(_ edit: (inout TrainConfig) -> Void = { _ in }) -> TrainConfig {
        var c = TrainConfig()
        c.data.dataset = "synthetic:600"
        c.model = "mlp:32"
        c.batchSize = 32
        c.lr = 0.1
        c.momentum = 0.9
        c.logEvery = 0
        c.quiet = true
        edit(&c)
        return c
    }

    func testLearnsSyntheticTaskInLocalMode() throws {
        let trainer = try Trainer(config: config { $0.epochs = 2 }, comm: LocalCommunicator())
        let before = try trainer.evaluate()
        let result = try XCTUnwrap(trainer.run())
        XCTAssertEqual(trainer.step, 2 * 19)
        XCTAssertLessThan(result.loss, before.loss)
        XCTAssertGreaterThan(result.accuracy, 0.9)
        XCTAssertEqual(result.count, 120)
    }

    func testSameSeedSameWeights() throws {
        let a = try Trainer(config: config { $0.maxSteps = 5; $0.model = "mlp:16:dropout=0.2" }, comm: LocalCommunicator())
        let b = try Trainer(config: config { $0.maxSteps = 5; $0.model = "mlp:16:dropout=0.2" }, comm: LocalCommunicator())
        try a.run()
        try b.run()
        XCTAssertEqual(a.model.store.parameters.toArray(), b.model.store.parameters.toArray())
    }

    func testSaveAndInitWeightsRoundTrip() throws {
        let dir = NSTemporaryDirectory() + "ddp-trainer-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/w.safetensors"
        let a = try Trainer(config: config { $0.maxSteps = 3; $0.savePath = path }, comm: LocalCommunicator())
        try a.run()
        let b = try Trainer(config: config { $0.maxSteps = 1; $0.initWeights = path; $0.seed = 99 }, comm: LocalCommunicator())
        XCTAssertEqual(b.model.store.parameters.toArray(), a.model.store.parameters.toArray())
        // Another model's file is refused by name and shape.
        XCTAssertThrowsError(try Trainer(config: config { $0.model = "mlp:16"; $0.initWeights = path }, comm: LocalCommunicator())) {
            XCTAssertTrue("\($0)".contains("has shape [32, 784], the model needs [16, 784]"), "\($0)")
        }
        XCTAssertThrowsError(try Trainer(config: config { $0.model = "mlp:32,32"; $0.initWeights = path }, comm: LocalCommunicator())) {
            XCTAssertTrue("\($0)".contains("'2.weight' has shape [10, 32], the model needs [32, 32]"), "\($0)")
        }
    }

    func testMetricsFile() throws {
        let path = NSTemporaryDirectory() + "ddp-metrics-\(UUID().uuidString).jsonl"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Trainer(config: config { $0.maxSteps = 4; $0.metricsPath = path }, comm: LocalCommunicator()).run()
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 5)
        let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
        XCTAssertEqual(Set(first.keys), ["step", "epoch", "loss", "lr", "samples_per_s"])
        XCTAssertEqual(first["step"] as? Int, 1)
        let eval = try JSONSerialization.jsonObject(with: Data(lines[4].utf8)) as! [String: Any]
        XCTAssertEqual(Set(eval.keys), ["step", "epoch", "val_loss", "val_accuracy"])
        let acc = try XCTUnwrap(eval["val_accuracy"] as? Double)
        XCTAssert(acc >= 0 && acc <= 1)
    }

    func testValidationMessages() {
        let cases: [(TrainConfig, String)] = [
            (config { $0.batchSize = 0 }, "--batch-size"),
            (config { $0.lr = -1 }, "learning rate"),
            (config { $0.optimizer = "lbfgs" }, "--optimizer 'lbfgs'"),
            (config { $0.lrSchedule = "linear" }, "--lr-schedule 'linear'"),
            (config { $0.warmupSteps = -1 }, "--warmup-steps -1"),
            (config { $0.model = "mlp:abc" }, "--model 'mlp:abc'"),
            (config { $0.loss = "hinge" }, "--loss"),
            (config { $0.data.dataset = "imagenet" }, "--dataset"),
        ]
        for (c, text) in cases {
            XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains(text), "'\($0)' should mention \(text)") }
        }
    }

    /// One SGD step (lr 1, no momentum) with `--clip-grad-norm`: p1 = p0 - c g with
    /// c = max_norm / (||g|| + 1e-6) as torch's clip_grad_norm_, g read from an unclipped step.
    func testClipGradNormScalesTheStepAsTorch() throws {
        func oneStep(_ clip: Float?) throws -> [Float] {
            let t = try Trainer(config: config { $0.maxSteps = 1; $0.momentum = 0; $0.lr = 1; $0.clipGradNorm = clip }, comm: LocalCommunicator())
            try t.run()
            return t.model.store.parameters.toArray()
        }
        let p0 = try Trainer(config: config { $0.momentum = 0 }, comm: LocalCommunicator()).model.store.parameters.toArray()
        let unclipped = try oneStep(nil)
        let g = zip(p0, unclipped).map { Double($0) - Double($1) }
        let norm = g.reduce(0) { $0 + $1 * $1 }.squareRoot()
        XCTAssertGreaterThan(norm, 0.2, "the test needs a gradient larger than the clip")
        let c = 0.2 / (norm + 1e-6)
        XCTAssertEqual(Double(clipCoefficient(sumOfSquares: norm * norm, maxNorm: 0.2)), c, accuracy: 1e-7)
        let clipped = try oneStep(0.2)
        for i in 0..<p0.count { XCTAssertEqual(Double(clipped[i]), Double(p0[i]) - c * g[i], accuracy: 1e-6) }
        // Below the limit nothing changes.
        XCTAssertEqual(try oneStep(Float(norm * 2)), unclipped)
    }
}
