import Engine
import Optim
import XCTest

/// Each optimizer over three steps of fixed gradients from p = [1, -2], against values worked out by
/// hand from torch.optim's update rules (see each class's doc comment for the rule).
final class OptimizerTests: XCTestCase {
    let grads: [[Float]] = [[0.5, -0.25], [0.1, 0.3], [-0.2, 0.05]]

    func run(_ config: OptimizerConfig) throws -> [Float] {
        let opt = try config.make(parameterCount: 2)
        var p: [Float] = [1, -2]
        for g in grads { opt.step(parameters: &p, gradients: g, count: 2) }
        XCTAssertEqual(opt.stepCount, 3)
        return p
    }

    func assertClose(_ a: [Float], _ b: [Double], file: StaticString = #filePath, line: UInt = #line) {
        for i in 0..<b.count { XCTAssertEqual(Double(a[i]), b[i], accuracy: 2e-6, file: file, line: line) }
    }

    func config(_ kind: OptimizerConfig.Kind, lr: Float, _ edit: (inout OptimizerConfig) -> Void = { _ in }) -> OptimizerConfig {
        var c = OptimizerConfig(kind: kind, learningRate: lr)
        edit(&c)
        return c
    }

    func testSGD() throws { assertClose(try run(config(.sgd, lr: 0.1)), [0.96, -2.01]) }
    func testSGDMomentum() throws { assertClose(try run(config(.sgd, lr: 0.1) { $0.momentum = 0.9 }), [0.8655, -1.99425]) }
    func testSGDDampening() throws {
        assertClose(try run(config(.sgd, lr: 0.1) { $0.momentum = 0.9; $0.dampening = 0.5 }), [0.865, -1.96325])
    }
    func testSGDNesterovWeightDecay() throws {
        assertClose(try run(config(.sgd, lr: 0.1) { $0.momentum = 0.9; $0.nesterov = true; $0.weightDecay = 0.01 }),
                    [0.831465558191, -1.988903780807])
    }
    func testAdam() throws { assertClose(try run(config(.adam, lr: 0.01)), [0.9785260531835489, -1.993337311935275]) }
    func testAdamL2() throws { assertClose(try run(config(.adam, lr: 0.01) { $0.weightDecay = 0.1 }), [0.9756723162326255, -1.9795223819672634]) }
    func testAdamW() throws { assertClose(try run(config(.adamw, lr: 0.01) { $0.weightDecay = 0.1 }), [0.9755570725927106, -1.9873618704872207]) }
    func testRMSprop() throws { assertClose(try run(config(.rmsprop, lr: 0.01)), [0.9171210980353726, -1.9897688118849415]) }
    func testRMSpropMomentumWeightDecay() throws {
        assertClose(try run(config(.rmsprop, lr: 0.01) { $0.momentum = 0.9; $0.weightDecay = 0.1 }), [0.6905901660621652, -1.7464106903006333])
    }
    func testAdagrad() throws { assertClose(try run(config(.adagrad, lr: 0.1)), [0.9169032236703722, -1.9895221406768586]) }
    func testAdagradWeightDecay() throws {
        assertClose(try run(config(.adagrad, lr: 0.1) { $0.weightDecay = 0.1 }), [0.8874857219557365, -1.8943675906761497])
    }
    func testAdadelta() throws { assertClose(try run(config(.adadelta, lr: 1)), [0.9976920881138662, -2.0011097861232487]) }
    func testAdadeltaWeightDecay() throws {
        assertClose(try run(config(.adadelta, lr: 1) { $0.weightDecay = 0.1 }), [0.9961533536067166, -1.9963441390380476])
    }

    /// With node-shared memory each rank applies its slice of a step, a chunk at a time. The update
    /// is elementwise, so any split must give the whole step's values bit for bit (SIMD body and
    /// scalar tails included), and the state must line up with the parameters at every offset.
    func testStepInPiecesEqualsWholeStepBitwise() throws {
        let n = 1000
        let configs = [config(.sgd, lr: 0.1), config(.sgd, lr: 0.1) { $0.momentum = 0.9; $0.nesterov = true; $0.weightDecay = 0.01 },
                       config(.adam, lr: 0.01) { $0.weightDecay = 0.1 }, config(.adamw, lr: 0.01),
                       config(.rmsprop, lr: 0.01) { $0.momentum = 0.9 }, config(.rmsprop, lr: 0.01),
                       config(.adagrad, lr: 0.1) { $0.weightDecay = 0.01 }, config(.adadelta, lr: 1) { $0.weightDecay = 0.01 }]
        var rng = RandomStream(seed: 7, stream: 1)
        let start = (0..<n).map { _ in rng.nextUnitFloat() - 0.5 }
        let grads = (0..<3).map { _ in (0..<n).map { _ in rng.nextUnitFloat() - 0.5 } }
        for c in configs {
            let whole = try c.make(parameterCount: n), pieces = try c.make(parameterCount: n)
            XCTAssertEqual(whole.stateBuffers.count, c.stateBufferCount, "\(c)")
            var a = start, b = start
            for g in grads {
                whole.step(parameters: &a, gradients: g, count: n)
                // Uneven pieces, most not multiples of 16: 0..<37, 37..<293, ...
                var lo = 0
                for hi in [37, 293, 300, 661, 999, n] {
                    b.withUnsafeMutableBufferPointer { p in
                        g.withUnsafeBufferPointer { q in
                            pieces.update(parameters: p.baseAddress! + lo, gradients: q.baseAddress! + lo, offset: lo, count: hi - lo)
                        }
                    }
                    lo = hi
                }
                pieces.stepCount += 1
            }
            XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern), "\(c.kind)")
            for (x, y) in zip(whole.stateBuffers, pieces.stateBuffers) {
                XCTAssertEqual(x.buffer.toArray().map(\.bitPattern), y.buffer.toArray().map(\.bitPattern), "\(c.kind) \(x.name)")
            }
        }
    }

    func testTorchDefaults() {
        XCTAssertEqual(OptimizerConfig(kind: .adam).resolvedLearningRate, 1e-3)
        XCTAssertEqual(OptimizerConfig(kind: .adamw).resolvedWeightDecay, 0.01)
        XCTAssertEqual(OptimizerConfig(kind: .rmsprop).resolvedLearningRate, 0.01)
        XCTAssertEqual(OptimizerConfig(kind: .sgd).resolvedWeightDecay, 0)
        XCTAssertEqual(OptimizerConfig(kind: .adagrad).resolvedLearningRate, 0.01)
        XCTAssertEqual(OptimizerConfig(kind: .adadelta).resolvedLearningRate, 1)
    }

    func testValidation() {
        XCTAssertThrowsError(try OptimizerConfig(kind: .sgd, learningRate: -1).validate())
        var c = OptimizerConfig(kind: .sgd, learningRate: 0.1)
        c.nesterov = true
        XCTAssertThrowsError(try c.validate(), "nesterov needs momentum")
        c = OptimizerConfig(kind: .adam)
        c.beta1 = 1
        XCTAssertThrowsError(try c.validate())
    }
}
