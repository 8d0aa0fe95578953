import Engine
import NN
import XCTest

/// Every layer's and loss's backward against central finite differences of the scalar
/// L = sum(r * y) for a fixed random r.
final class GradientCheckTests: XCTestCase {
    let batch = 3

    func randomArray(_ n: Int, _ rng: inout RandomStream, scale: Float = 1, awayFromZero: Bool = false) -> [Float] {
        (0..<n).map { _ in
            var v = rng.uniform(-scale, scale)
            if awayFromZero && abs(v) < 0.05 { v += v < 0 ? -0.1 : 0.1 }  // keep ReLU off its kink
            return v
        }
    }

    /// Builds `layer` into a one-layer store, then compares analytic and numeric gradients of the
    /// input and of every parameter.
    func check(_ layer: Layer, context: StepContext = StepContext(training: true, seed: 7, step: 3),
               awayFromZero: Bool = false, file: StaticString = #filePath, line: UInt = #line) {
        let store = ParameterStore()
        layer.reserveParameters(in: store, prefix: "")
        store.seal()
        layer.bind(to: store)
        var rng = RandomStream(seed: 42)
        layer.resetParameters(rng: &rng)
        let nIn = batch * layer.inputShape.count, nOut = batch * layer.outputShape.count
        var x = randomArray(nIn, &rng, awayFromZero: awayFromZero)
        let r = randomArray(nOut, &rng)
        var ids: [Int32] = [5, 9, 1]
        var y = [Float](repeating: 0, count: nOut)
        var dx = [Float](repeating: 0, count: nIn)

        func objective() -> Double {
            ids.withUnsafeBufferPointer { idp in
                var ctx = context
                ctx.sampleIDs = idp.baseAddress
                layer.forward(x, &y, batch: batch, context: ctx)
            }
            return zip(y, r).reduce(0.0) { $0 + Double($1.0 * $1.1) }
        }
        _ = objective()
        store.gradients.zero()
        ids.withUnsafeBufferPointer { idp in
            var ctx = context
            ctx.sampleIDs = idp.baseAddress
            layer.backward(x: x, y: y, dy: r, dx: &dx, batch: batch, context: ctx)
        }
        let eps: Float = 1e-2
        for i in 0..<nIn {
            let saved = x[i]
            x[i] = saved + eps; let plus = objective()
            x[i] = saved - eps; let minus = objective()
            x[i] = saved
            let numeric = (plus - minus) / Double(2 * eps)
            XCTAssertEqual(Double(dx[i]), numeric, accuracy: 2e-2 * max(1, abs(numeric)),
                           "\(layer.typeName) dx[\(i)]", file: file, line: line)
        }
        for entry in store.entries {
            for j in 0..<entry.count {
                let i = entry.offset + j
                let numeric = centralDifference(store.parameters.pointer + i, eps: eps, objective)
                XCTAssertEqual(Double(store.gradients[i]), numeric, accuracy: 2e-2 * max(1, abs(numeric)),
                               "\(layer.typeName) \(entry.name)[\(j)]", file: file, line: line)
            }
        }
    }

    /// (f(p + eps) - f(p - eps)) / 2 eps, restoring p.
    func centralDifference(_ p: UnsafeMutablePointer<Float>, eps: Float, _ f: () -> Double) -> Double {
        let saved = p.pointee
        p.pointee = saved + eps
        let plus = f()
        p.pointee = saved - eps
        let minus = f()
        p.pointee = saved
        return (plus - minus) / Double(2 * eps)
    }

    func testLinear() { check(Linear(5, 4)) }
    func testLinearWithoutBias() { check(Linear(3, 2, bias: false)) }
    func testReLU() { check(ReLU(Shape(6)), awayFromZero: true) }
    func testSigmoid() { check(Sigmoid(Shape(6))) }
    func testTanh() { check(Tanh(Shape(6))) }
    func testFlatten() { check(Flatten(Shape(1, 2, 3))) }
    func testLogSoftmax() { check(LogSoftmax(5)) }
    func testSoftmax() { check(Softmax(5)) }
    func testDropoutTrainMode() { check(Dropout(p: 0.4, shape: Shape(8))) }
    func testDropoutEvalMode() { check(Dropout(p: 0.4, shape: Shape(8)), context: .eval) }

    func testDropoutSemantics() {
        let d = Dropout(p: 0.5, shape: Shape(1000))
        let x = [Float](repeating: 1, count: 1000)
        var y = [Float](repeating: 0, count: 1000)
        var ids: [Int32] = [3]
        ids.withUnsafeBufferPointer { d.forward(x, &y, batch: 1, context: StepContext(training: true, seed: 1, step: 0, sampleIDs: $0.baseAddress)) }
        let zeros = y.filter { $0 == 0 }.count
        XCTAssert((400...600).contains(zeros), "about half dropped, got \(zeros)")
        XCTAssert(y.allSatisfy { $0 == 0 || $0 == 2 }, "kept values scaled by 1/(1-p)")
        d.forward(x, &y, batch: 1, context: .eval)
        XCTAssertEqual(y, x, "eval mode is the identity")
    }

    /// Each loss's gradient of gradScale * sum against finite differences of the same.
    func checkLoss(_ loss: Loss, logProbabilities: Bool = false) {
        var rng = RandomStream(seed: 3)
        let classes = 4, scale: Float = 0.25
        var x = randomArray(batch * classes, &rng, scale: 2)
        if logProbabilities {
            for r in 0..<batch {
                let lse = x.withUnsafeBufferPointer { logSumExp($0.baseAddress! + r * classes, classes) }
                for c in 0..<classes { x[r * classes + c] -= lse }
            }
        }
        let labels: [Int32] = [2, 0, 3]
        var grad = [Float](repeating: 0, count: x.count)
        _ = loss.evaluate(x, labels: labels, batch: batch, classes: classes, gradScale: scale, grad: &grad)
        let eps: Float = 1e-2
        for i in 0..<x.count {
            let saved = x[i]
            x[i] = saved + eps
            let plus = loss.evaluate(x, labels: labels, batch: batch, classes: classes, gradScale: 0, grad: nil)
            x[i] = saved - eps
            let minus = loss.evaluate(x, labels: labels, batch: batch, classes: classes, gradScale: 0, grad: nil)
            x[i] = saved
            let numeric = Double(scale) * (plus - minus) / Double(2 * eps)
            XCTAssertEqual(Double(grad[i]), numeric, accuracy: 2e-3, "\(loss.name) grad[\(i)]")
        }
    }

    func testCrossEntropyGradient() { checkLoss(CrossEntropyLoss()) }
    func testNLLGradient() { checkLoss(NLLLoss(), logProbabilities: true) }
    func testMSEGradient() { checkLoss(MSELoss()) }

    func testCrossEntropyValueMatchesTorch() {
        // torch.nn.functional.cross_entropy(torch.tensor([[1., 2., 3.]]), torch.tensor([0])) = 2.4076
        let x: [Float] = [1, 2, 3]
        let v = CrossEntropyLoss().evaluate(x, labels: [0], batch: 1, classes: 3, gradScale: 0, grad: nil)
        XCTAssertEqual(v, 2.40760596, accuracy: 1e-5)
        // MSELoss(reduction='mean')([0.5, 0.2, 0.1] vs one-hot [0,1,0]) = (0.25 + 0.64 + 0.01) / 3
        let m = MSELoss().evaluate([0.5, 0.2, 0.1], labels: [1], batch: 1, classes: 3, gradScale: 0, grad: nil)
        XCTAssertEqual(m, 0.3, accuracy: 1e-6)
    }

    /// Whole models through Sequential's buffers, where each Linear is fused with the activation
    /// after it (Flatten, Linear+Tanh, Dropout, Linear, LogSoftmax with NLL; Linear+ReLU twice;
    /// Linear+Sigmoid), against finite differences of the loss.
    func testSequentialModelGradient() throws {
        for text in ["mlp:6:tanh:dropout=0.3", "mlp:7,5", "mlp:6:sigmoid"] {
            try checkModel(text)
        }
    }

    func testLinearActivationFusion() throws {
        let model = try ModelSpec(parsing: "mlp:8").build(inputShape: Shape(4), classes: 3, maxBatch: 2, seed: 1)
        XCTAssertEqual((model.layers[0] as? Linear)?.activation, .relu)
        XCTAssertTrue(model.layers[1].isView, "the ReLU is applied inside the Linear")
        XCTAssertNil((model.layers[2] as? Linear)?.activation)
    }

    func checkModel(_ text: String) throws {
        let spec = try ModelSpec(parsing: text)
        let model = spec.build(inputShape: Shape(1, 2, 3), classes: 3, maxBatch: 4, seed: 5, logSoftmax: true)
        var rng = RandomStream(seed: 9)
        for i in 0..<(4 * 6) { model.input[i] = rng.uniform(-1, 1) }
        let labels: [Int32] = [0, 2, 1, 1]
        let ids: [Int32] = [10, 11, 12, 13]
        let loss = NLLLoss()
        func run(_ grad: Bool) -> Double {
            ids.withUnsafeBufferPointer { idp in
                let ctx = StepContext(training: true, seed: 1, step: 2, sampleIDs: idp.baseAddress)
                model.forward(batch: 4, context: ctx)
                let v = loss.evaluate(model.output, labels: labels, batch: 4, classes: 3, gradScale: 0.25, grad: grad ? model.outputGrad : nil)
                if grad { model.backward(batch: 4, context: ctx) }
                return v * 0.25
            }
        }
        model.store.gradients.zero()
        _ = run(true)
        for entry in model.store.entries {
            for j in 0..<entry.count {
                let i = entry.offset + j
                let numeric = centralDifference(model.store.parameters.pointer + i, eps: 1e-3) { run(false) }
                XCTAssertEqual(Double(model.store.gradients[i]), numeric, accuracy: 2e-3, "\(text) \(entry.name)[\(j)]")
            }
        }
    }
}
