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
    /// input and of every parameter. `prepare` may set parameters and buffers (BatchNorm's eval mode).
    func check(_ layer: Layer, context: StepContext = StepContext(training: true, seed: 7, step: 3),
               awayFromZero: Bool = false, tolerance: Double = 2e-2, eps: Float = 1e-2,
               prepare: (ParameterStore) -> Void = { _ in },
               file: StaticString = #filePath, line: UInt = #line) {
        let store = layer.standaloneStore(maxBatch: batch)
        var rng = RandomStream(seed: 42)
        layer.resetParameters(rng: &rng)
        prepare(store)
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
            // A layer with a fused activation turns dy into the pre-activation gradient in place: give
            // it memory of its own (an array copy would share r's storage until written from Swift).
            var dy = [Float](repeating: 0, count: nOut)
            dy.withUnsafeMutableBufferPointer { d in
                _ = d.initialize(from: r)
                layer.backward(x: x, y: y, dy: d.baseAddress!, dx: &dx, batch: batch, context: ctx)
            }
        }
        for i in 0..<nIn {
            let saved = x[i]
            x[i] = saved + eps; let plus = objective()
            x[i] = saved - eps; let minus = objective()
            x[i] = saved
            let numeric = (plus - minus) / Double(2 * eps)
            XCTAssertEqual(Double(dx[i]), numeric, accuracy: tolerance * max(1, abs(numeric)),
                           "\(layer.typeName) dx[\(i)]", file: file, line: line)
        }
        for entry in store.entries {
            for j in 0..<entry.count {
                let i = entry.offset + j
                let numeric = centralDifference(store.parameters.pointer + i, eps: eps, objective)
                XCTAssertEqual(Double(store.gradients[i]), numeric, accuracy: tolerance * max(1, abs(numeric)),
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

    // The CNN layers, each in every mode it has.
    func testConv2d() { check(Conv2d(input: Shape(2, 5, 4), outChannels: 3, kernel: 3)!) }
    func testConv2dStridePadding() { check(Conv2d(input: Shape(2, 5, 6), outChannels: 2, kernel: 3, stride: 2, padding: 1)!) }
    func testConv2dLargePaddingNoBias() { check(Conv2d(input: Shape(1, 3, 3), outChannels: 2, kernel: 2, stride: 3, padding: 2, bias: false)!) }
    func testConv2dPointwise() { check(Conv2d(input: Shape(3, 2, 2), outChannels: 2, kernel: 1)!) }
    /// 3x3, stride 1, 8+ channels: Winograd's F(2x2, 3x3), odd output sizes, with and without padding.
    func testConv2dWinograd() {
        let conv = Conv2d(input: Shape(8, 5, 4), outChannels: 8, kernel: 3, padding: 1)!
        XCTAssertTrue(conv.usesWinograd)
        check(conv)
        let fused = Conv2d(input: Shape(8, 5, 6), outChannels: 9, kernel: 3, bias: false)!
        XCTAssertTrue(fused.usesWinograd && fused.fuse(.tanh))
        check(fused)
    }
    /// ReLU's kink defeats finite differences over a whole conv: the fused layer must instead equal
    /// Conv2d then ReLU (each checked on its own) exactly, output and every gradient.
    func testConv2dFusedReLUEqualsConvThenReLU() throws {
        let shape = Shape(2, 5, 5)
        let fusedConv = Conv2d(input: shape, outChannels: 3, kernel: 3, padding: 1)!
        let fused = Sequential(layers: [fusedConv, ReLU(fusedConv.outputShape), Flatten(fusedConv.outputShape), Linear(75, 4)],
                               maxBatch: 3, seed: 11)
        XCTAssertEqual(fusedConv.activation, .relu, "Sequential fuses the ReLU into the conv")
        var rng = RandomStream(seed: 5)
        for i in 0..<(3 * shape.count) { fused.input[i] = rng.uniform(-1, 1) }
        fused.forward(batch: 3, context: .eval)
        for i in 0..<12 { fused.outputGrad[i] = Float(i % 5) - 2 }
        fused.backward(batch: 3, context: .eval)
        // The reference: the same weights, the conv alone and a ReLU layer after it.
        let conv = Conv2d(input: shape, outChannels: 3, kernel: 3, padding: 1)!
        let relu = ReLU(conv.outputShape)
        let store = conv.standaloneStore(maxBatch: 3)
        store.parameters.pointer.update(from: fused.store.parameters.pointer, count: store.count)
        var pre = [Float](repeating: 0, count: 3 * 75), post = pre, dPre = pre, dPost = pre
        conv.forward(fused.input, &pre, batch: 3, context: .eval)
        relu.forward(pre, &post, batch: 3, context: .eval)
        let lin = fused.layers[3] as! Linear
        // dPost = dy W of the Linear, as the model computed it into its own buffers.
        for r in 0..<3 { for j in 0..<75 { dPost[r * 75 + j] = (0..<4).reduce(Float(0)) { $0 + (Float(($1 + r * 4) % 5) - 2) * lin.weight[$1 * 75 + j] } } }
        relu.backward(x: pre, y: post, dy: dPost, dx: &dPre, batch: 3, context: .eval)
        dPre.withUnsafeMutableBufferPointer { conv.backward(x: fused.input, y: pre, dy: $0.baseAddress!, dx: nil, batch: 3, context: .eval) }
        for i in 0..<conv.parameterCount {
            XCTAssertEqual(store.gradients[i], fused.store.gradients[i], accuracy: 1e-5, "gradient \(i)")
        }
    }

    /// A conv, ReLU (or none) and MaxPool2d(2, stride 2) run as one step (`FusesMaxPool`): under
    /// Winograd, pooled inside the output transform and its gradient taken from the pooled one;
    /// under im2col, each sample pooled from scratch, its gradient rebuilt there. It must equal the
    /// three layers run on their own bitwise: output and every parameter gradient, written and
    /// accumulated (a 1x1 conv before it takes the fused conv's input gradient), except the fused
    /// Winograd conv's bias gradient, which sums the same values in another order (within 1e-6).
    /// The reference is the same model with Dropout(p: 0) (an exact copy in eval mode)
    /// between the activation and the pooling, which the chain does not fuse. Winograd and im2col,
    /// odd sizes (floor mode drops the last row and column), with and without bias.
    func testConv2dFusedMaxPoolEqualsUnfused() throws {
        let cases: [(input: Shape, out: Int, padding: Int, bias: Bool, relu: Bool)] = [
            (Shape(8, 7, 9), 8, 1, true, true),    // Winograd, 7x9 out
            (Shape(8, 6, 6), 9, 0, false, true),   // Winograd, 4x4 out, no bias
            (Shape(1, 8, 7), 4, 0, true, true),    // im2col (one input channel), 6x5 out
            (Shape(8, 5, 5), 8, 1, true, false),   // Winograd, no activation
            (Shape(8, 10, 12), 9, 1, true, true),  // Winograd, 10x12 out: even, 30 tiles (flat steps across channels)
            (Shape(8, 8, 8), 8, 0, false, false),  // Winograd, 6x6 out, 9 tiles: row steps; no bias, no activation
        ]
        for (n, c) in cases.enumerated() {
            let what = "case \(n): \(c.input) -> \(c.out), padding \(c.padding), bias \(c.bias), relu \(c.relu)"
            func model(fused: Bool) -> (Sequential, Conv2d) {
                let dims = c.input.dims
                let first = Conv2d(input: Shape(2, dims[1], dims[2]), outChannels: dims[0], kernel: 1)!
                let conv = Conv2d(input: c.input, outChannels: c.out, kernel: 3, padding: c.padding, bias: c.bias)!
                let shape = conv.outputShape
                let pool = MaxPool2d(input: shape, kernel: 2)!
                let head: [Layer] = [first, conv] + (c.relu ? [ReLU(shape)] : [])
                let middle: [Layer] = fused ? [] : [Dropout(p: 0, shape: shape)]
                let tail: [Layer] = [pool, Flatten(pool.outputShape), Linear(pool.outputShape.count, 3)]
                return (Sequential(layers: head + middle + tail, maxBatch: 3, seed: 7), conv)
            }
            let (fused, conv) = model(fused: true)
            let (plain, _) = model(fused: false)
            XCTAssertEqual(conv.usesWinograd, c.input.dims[0] == 8, what)
            let pools = [fused, plain].map { m in m.layers.compactMap { $0 as? MaxPool2d }[0] }
            XCTAssertEqual(pools.map(\.fusedIntoPrevious), [true, false], "\(what): fused only where the pool follows")
            var rng = RandomStream(seed: 9 + UInt64(n))
            for i in 0..<(3 * 2 * c.input.dims[1] * c.input.dims[2]) { let v = rng.uniform(-1, 1); fused.input[i] = v; plain.input[i] = v }
            for accumulate in [false, true] {
                var context = StepContext.eval
                context.accumulateGradients = accumulate
                for m in [fused, plain] {
                    m.forward(batch: 3, context: .eval)
                    for i in 0..<9 { m.outputGrad[i] = Float(i % 4) - 1.5 }
                    m.backward(batch: 3, context: context)
                }
                XCTAssertEqual(Array(UnsafeBufferPointer(start: fused.output, count: 9)),
                               Array(UnsafeBufferPointer(start: plain.output, count: 9)), what)
                let positions = pools.map { Array(UnsafeBufferPointer(start: $0.argmax(ofSample: 0), count: 3 * $0.outputShape.count)) }
                XCTAssertEqual(positions[0], positions[1], "\(what): the pools' argmax")
                XCTAssertEqual(fused.store.count, plain.store.count, what)
                let bias = fused.store.entry(named: "1.bias").map { $0.offset..<($0.offset + $0.count) }
                for i in 0..<fused.store.count {
                    let (a, b) = (fused.store.gradients[i], plain.store.gradients[i])
                    if conv.usesWinograd, let bias, bias.contains(i) {
                        XCTAssertEqual(a, b, accuracy: 1e-6 * max(1, abs(b)), "\(what), accumulate \(accumulate): bias gradient \(i)")
                    } else {
                        XCTAssertEqual(a.bitPattern, b.bitPattern, "\(what), accumulate \(accumulate): gradient \(i)")
                    }
                }
            }
        }
    }

    func testConv2dFusedTanh() {
        let conv = Conv2d(input: Shape(1, 4, 4), outChannels: 2, kernel: 2, stride: 2)!
        XCTAssertTrue(conv.fuse(.tanh))
        check(conv)
    }
    func testMaxPool2d() { check(MaxPool2d(input: Shape(2, 4, 5), kernel: 2)!) }
    func testMaxPool2dOverlapping() { check(MaxPool2d(input: Shape(1, 5, 5), kernel: 3, stride: 2)!) }
    func testAvgPool2d() { check(AvgPool2d(input: Shape(2, 4, 6), kernel: 2)!) }
    func testAvgPool2dStride() { check(AvgPool2d(input: Shape(1, 5, 5), kernel: 3, stride: 1)!) }
    func testGlobalAvgPool() { check(GlobalAvgPool2d(input: Shape(3, 2, 3))!) }
    func testBatchNorm2dTrainMode() { check(BatchNorm(input: Shape(2, 3, 2))!, tolerance: 3e-2, eps: 5e-3) }
    func testBatchNorm1dTrainMode() { check(BatchNorm(input: Shape(4))!, tolerance: 3e-2, eps: 5e-3) }
    func testBatchNorm1dWithLengthTrainMode() { check(BatchNorm(input: Shape(2, 3))!, tolerance: 3e-2, eps: 5e-3) }
    func testBatchNormEvalMode() {
        check(BatchNorm(input: Shape(2, 2, 2))!, context: .eval) { store in
            // Running statistics and affine parameters away from their initial 0/1.
            for (k, e) in (store.entries + store.bufferEntries.filter { $0.dtype == .f32 }).enumerated() {
                let p = store.entries.contains { $0.name == e.name } ? store.parameterPointer(e.offset) : store.bufferPointer(e.offset)
                for j in 0..<e.count { p[j] = 0.5 + 0.3 * Float(j + k) }
            }
        }
    }
    func testDropout2dTrainMode() { check(Dropout2d(p: 0.5, shape: Shape(4, 2, 2))) }
    func testDropout2dEvalMode() { check(Dropout2d(p: 0.5, shape: Shape(4, 2, 2)), context: .eval) }
    func testResidualIdentity() throws {
        let shape = Shape(2, 3, 3)
        let body: [Layer] = [Conv2d(input: shape, outChannels: 2, kernel: 3, padding: 1)!, Tanh(shape),
                             Conv2d(input: shape, outChannels: 2, kernel: 3, padding: 1)!]
        check(try Residual(body: body))
    }
    func testResidualConvShortcutWithBatchNorm() throws {
        let shape = Shape(2, 4, 4)
        let conv = Conv2d(input: shape, outChannels: 3, kernel: 3, stride: 2, padding: 1, bias: false)!
        let block = try Residual(body: [conv, BatchNorm(input: conv.outputShape)!, Sigmoid(conv.outputShape)])
        XCTAssertNotNil(block.shortcut, "the shape changes: a 1x1 conv shortcut")
        XCTAssertEqual(block.outputShape, Shape(3, 2, 2))
        check(block, tolerance: 3e-2, eps: 5e-3)
    }

    func testDropout2dDropsWholeChannels() {
        let d = Dropout2d(p: 0.5, shape: Shape(200, 2, 2))
        let store = d.standaloneStore(maxBatch: 1)  // the mask's workspace
        defer { withExtendedLifetime(store) {} }
        let x = [Float](repeating: 1, count: 800)
        var y = [Float](repeating: 0, count: 800)
        var ids: [Int32] = [3]
        ids.withUnsafeBufferPointer { d.forward(x, &y, batch: 1, context: StepContext(training: true, seed: 1, step: 0, sampleIDs: $0.baseAddress)) }
        for c in 0..<200 { XCTAssertEqual(Set(y[(c * 4)..<(c * 4 + 4)]).count, 1, "channel \(c) kept or dropped whole") }
        let dropped = stride(from: 0, to: 800, by: 4).filter { y[$0] == 0 }.count
        XCTAssert((70...130).contains(dropped), "about half the channels, got \(dropped)")
    }

    func testDropoutSemantics() {
        let d = Dropout(p: 0.5, shape: Shape(1000))
        let store = d.standaloneStore(maxBatch: 1)  // the mask's workspace
        defer { withExtendedLifetime(store) {} }
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

    /// Layer lists through Sequential: fused conv activations, pooling, BatchNorm (train mode, with
    /// the statistics of the batch), Dropout2d, residual blocks with and without a shortcut conv.
    func testLayerListModelGradient() throws {
        for text in ["conv(3,2),relu,maxpool(2),flatten,linear(3)",
                     "conv(2,3,padding=1),bn,tanh,residual(conv(2,3,padding=1),bn,sigmoid),avgpool(2),flatten,linear(5),bn,tanh,linear(3)",
                     "conv(2,3,padding=1,bias=0),dropout2d(0.3),residual(conv(4,3,stride=2,padding=1),tanh),gap,flatten,linear(3)"] {
            try checkModel(text, inputShape: Shape(1, 4, 4), eps: 5e-3, tolerance: 4e-3)
        }
    }

    func testLinearActivationFusion() throws {
        let model = try ModelSpec(parsing: "mlp:8").build(inputShape: Shape(4), classes: 3, maxBatch: 2, seed: 1)
        XCTAssertEqual((model.layers[0] as? Linear)?.activation, .relu)
        XCTAssertTrue(model.layers[1].isView, "the ReLU is applied inside the Linear")
        XCTAssertNil((model.layers[2] as? Linear)?.activation)
    }

    func checkModel(_ text: String, inputShape: Shape = Shape(1, 2, 3), eps: Float = 1e-3, tolerance: Double = 2e-3) throws {
        let spec = try ModelSpec(parsing: text)
        let model = try spec.build(inputShape: inputShape, classes: 3, maxBatch: 4, seed: 5, logSoftmax: true)
        var rng = RandomStream(seed: 9)
        for i in 0..<(4 * inputShape.count) { model.input[i] = rng.uniform(-1, 1) }
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
                let numeric = centralDifference(model.store.parameters.pointer + i, eps: eps) { run(false) }
                XCTAssertEqual(Double(model.store.gradients[i]), numeric, accuracy: tolerance, "\(text) \(entry.name)[\(j)]")
            }
        }
    }
}
