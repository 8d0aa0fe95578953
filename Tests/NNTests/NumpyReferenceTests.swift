import Engine
import Foundation
import NN
import XCTest

/// The CNN layers against an independent implementation of PyTorch's definitions: numpy computes,
/// in float64 from the same float32 inputs and parameters, torch.nn.Conv2d, MaxPool2d, AvgPool2d,
/// AdaptiveAvgPool2d(1) and BatchNorm1d/2d (train mode with batch statistics and the running
/// statistics' update, eval mode with given running statistics): the output, the input gradient and
/// every parameter gradient of L = sum(dy * y) for a given dy. Every value must agree within 1e-5,
/// absolute (relative for values above 1 in magnitude).
///
/// The conv reference is the definition itself, a loop over output positions (forward and the
/// weight gradient) and over input positions for dx (the transposed definition), not im2col.
/// Skips when python3 or numpy is missing, unless DDP_REQUIRE_PYTHON=1 (then it fails).
final class NumpyReferenceTests: XCTestCase {
    static let tolerance = 1e-5

    static let script = #"""
    import json, os, sys
    import numpy as np

    d = sys.argv[1]
    spec = json.load(open(os.path.join(d, "spec.json")))
    def arr(name, shape):
        a = np.fromfile(os.path.join(d, name + ".f32"), dtype="<f4")
        assert a.size == int(np.prod(shape)), (name, a.size, shape)
        return a.astype(np.float64).reshape(shape)
    def out(name, a):
        np.ascontiguousarray(a, dtype="<f8").tofile(os.path.join(d, name + ".f64"))

    op = spec["op"]
    if op == "conv2d":
        # torch.nn.Conv2d (dilation 1, groups 1):
        # y[n,o,i,j] = bias[o] + sum_{c,ki,kj} weight[o,c,ki,kj] * xpad[n,c,i*S+ki,j*S+kj]
        n, cin, h, w, cout, k, s, p = (spec[key] for key in ("n", "cin", "h", "w", "cout", "k", "s", "p"))
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        x = arr("x", (n, cin, h, w))
        wt = arr("weight", (cout, cin, k, k))
        b = arr("bias", (cout,)) if spec["bias"] else np.zeros(cout)
        dy = arr("dy", (n, cout, ho, wo))
        xp = np.zeros((n, cin, h + 2 * p, w + 2 * p))
        xp[:, :, p:p + h, p:p + w] = x
        y = np.zeros((n, cout, ho, wo))
        dw = np.zeros_like(wt)
        for i in range(ho):
            for j in range(wo):
                window = xp[:, :, i * s:i * s + k, j * s:j * s + k]            # (n, cin, k, k)
                y[:, :, i, j] = np.einsum("nckl,ockl->no", window, wt) + b
                dw += np.einsum("no,nckl->ockl", dy[:, :, i, j], window)
        # dx[n,c,ih,iw] = sum over (o, ki, kj) of weight[o,c,ki,kj] * dy[n,o,i,j]
        # where ih + P = i*S + ki and iw + P = j*S + kj.
        dx = np.zeros_like(x)
        for ih in range(h):
            for iw in range(w):
                for ki in range(k):
                    for kj in range(k):
                        th, tw = ih + p - ki, iw + p - kj
                        if th % s or tw % s:
                            continue
                        i, j = th // s, tw // s
                        if 0 <= i < ho and 0 <= j < wo:
                            dx[:, :, ih, iw] += dy[:, :, i, j] @ wt[:, :, ki, kj]
        out("y", y); out("dx", dx); out("weight_grad", dw)
        if spec["bias"]:
            out("bias_grad", dy.sum(axis=(0, 2, 3)))
    elif op in ("maxpool", "avgpool"):
        # torch.nn.MaxPool2d / AvgPool2d(kernel_size=K, stride=S), no padding, floor mode.
        # Max: the gradient goes to the first maximum of the window in row-major order (torch's CPU
        # and CUDA kernels take a new maximum only when strictly greater).
        n, c, h, w, k, s = (spec[key] for key in ("n", "c", "h", "w", "k", "s"))
        ho, wo = (h - k) // s + 1, (w - k) // s + 1
        x = arr("x", (n, c, h, w))
        dy = arr("dy", (n, c, ho, wo))
        y = np.zeros((n, c, ho, wo))
        dx = np.zeros_like(x)
        for i in range(ho):
            for j in range(wo):
                window = x[:, :, i * s:i * s + k, j * s:j * s + k]
                if op == "avgpool":
                    y[:, :, i, j] = window.mean(axis=(2, 3))
                    dx[:, :, i * s:i * s + k, j * s:j * s + k] += dy[:, :, i, j][:, :, None, None] / (k * k)
                else:
                    flat = window.reshape(n, c, k * k)
                    y[:, :, i, j] = flat.max(axis=2)
                    first = flat.argmax(axis=2)
                    for a in range(n):
                        for ch in range(c):
                            q = first[a, ch]
                            dx[a, ch, i * s + q // k, j * s + q % k] += dy[a, ch, i, j]
        out("y", y); out("dx", dx)
    elif op == "gap":
        # torch.nn.AdaptiveAvgPool2d(1)
        n, c, h, w = (spec[key] for key in ("n", "c", "h", "w"))
        x = arr("x", (n, c, h, w))
        dy = arr("dy", (n, c, 1, 1))
        out("y", x.mean(axis=(2, 3), keepdims=True))
        out("dx", np.broadcast_to(dy / (h * w), x.shape))
    elif op == "batchnorm":
        # torch.nn.BatchNorm1d/2d(C), eps 1e-5, momentum 0.1, affine; samples (C, L), L positions.
        n, c, l, training = (spec[key] for key in ("n", "c", "l", "training"))
        eps, momentum = 1e-5, 0.1
        x = arr("x", (n, c, l))
        dy = arr("dy", (n, c, l))
        weight, bias = arr("weight", (c,)), arr("bias", (c,))
        rm, rv = arr("running_mean", (c,)), arr("running_var", (c,))
        bc = lambda v: v[None, :, None]
        if training:
            m = n * l
            mean = x.mean(axis=(0, 2))
            var = ((x - bc(mean)) ** 2).sum(axis=(0, 2)) / m           # biased, for normalizing
            invstd = 1 / np.sqrt(var + eps)
            xhat = (x - bc(mean)) * bc(invstd)
            g = dy * bc(weight)                                         # dL/dxhat
            dx = bc(invstd) / m * (m * g - bc(g.sum(axis=(0, 2))) - xhat * bc((g * xhat).sum(axis=(0, 2))))
            out("running_mean", (1 - momentum) * rm + momentum * mean)
            out("running_var", (1 - momentum) * rv + momentum * var * m / (m - 1))   # unbiased
        else:
            invstd = 1 / np.sqrt(rv + eps)
            xhat = (x - bc(rm)) * bc(invstd)
            dx = dy * bc(weight * invstd)
            out("running_mean", rm); out("running_var", rv)
        out("y", xhat * bc(weight) + bc(bias))
        out("dx", dx)
        out("weight_grad", (dy * xhat).sum(axis=(0, 2)))
        out("bias_grad", dy.sum(axis=(0, 2)))
    else:
        raise SystemExit("unknown op " + op)
    """#

    // MARK: - Running numpy

    struct ReferenceFailure: Error, CustomStringConvertible { let message: String; var description: String { message } }

    /// Writes `inputs` (float32) and the spec, runs the script, and returns the float64 outputs it wrote.
    func reference(_ op: String, _ params: [String: Int], inputs: [String: [Float]], outputs: [String]) throws -> [String: [Double]] {
        let dir = NSTemporaryDirectory() + "ddp-numpy-ref-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var spec: [String: Any] = params
        spec["op"] = op
        try JSONSerialization.data(withJSONObject: spec).write(to: URL(fileURLWithPath: dir + "/spec.json"))
        for (name, values) in inputs {
            try values.withUnsafeBufferPointer { Data(buffer: $0) }.write(to: URL(fileURLWithPath: dir + "/\(name).f32"))
        }

        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        python.arguments = ["python3", "-c", Self.script, dir]
        let err = Pipe()
        python.standardError = err
        try python.run()
        let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        python.waitUntilExit()
        let missing = errText.contains("No module named") || python.terminationStatus == 127  // env: no python3
        if python.terminationStatus != 0 && missing && ProcessInfo.processInfo.environment["DDP_REQUIRE_PYTHON"] != "1" {
            throw XCTSkip("python3 or numpy is missing; Scripts/test.sh installs numpy")
        }
        guard python.terminationStatus == 0 else { throw ReferenceFailure(message: "numpy reference (\(op)) failed: \(errText)") }
        var result: [String: [Double]] = [:]
        for name in outputs {
            let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/\(name).f64"))
            var values = [Double](repeating: 0, count: data.count / 8)
            _ = values.withUnsafeMutableBytes { data.copyBytes(to: $0) }
            result[name] = values
        }
        return result
    }

    /// Every value within `tolerance`, absolute or relative for |expected| > 1. NaN (an element the
    /// layer never wrote: outputs start as NaN) fails. One failure per array, with the worst element.
    func assertClose(_ got: [Float], _ expected: [Double]?, _ what: String,
                     file: StaticString = #filePath, line: UInt = #line) {
        guard let expected else { return XCTFail("\(what): no reference values", file: file, line: line) }
        guard got.count == expected.count else {
            return XCTFail("\(what): \(got.count) values, reference has \(expected.count)", file: file, line: line)
        }
        var bad = 0, worst = -1, worstRatio = 0.0
        for i in 0..<got.count {
            let ratio = abs(Double(got[i]) - expected[i]) / (Self.tolerance * max(1, abs(expected[i])))
            if !(ratio <= 1) {
                bad += 1
                if worst < 0 || !(ratio <= worstRatio) { worst = i; worstRatio = ratio }
            }
        }
        if bad > 0 {
            XCTFail("\(what): \(bad) of \(got.count) values differ from numpy; worst [\(worst)]: got \(got[worst]), "
                    + "expected \(expected[worst]) (error \(abs(Double(got[worst]) - expected[worst])))", file: file, line: line)
        }
    }

    // MARK: - Running a layer

    struct LayerRun {
        let store: ParameterStore
        var y: [Float] = []
        var dx: [Float] = []
        /// Each parameter's gradient after one backward, and after a second one that accumulates.
        var gradients: [String: [Float]] = [:]
        var accumulated: [String: [Float]] = [:]

        func buffer(_ name: String) -> [Float] {
            let e = store.bufferEntries.first { $0.name == name }!
            return Array(UnsafeBufferPointer(start: store.bufferPointer(e.offset), count: e.count))
        }
        var batchesTracked: Int64 {
            let e = store.bufferEntries.first { $0.name == "num_batches_tracked" }!
            return store.int64BufferPointer(e.offset).pointee
        }
    }

    /// One forward and one backward of `layer` on its own store, with the parameters and float
    /// buffers in `values` (by name) set after resetParameters. Outputs, dx and the gradients start
    /// as NaN, so a value the layer does not write fails. A second backward with
    /// accumulateGradients (and no dx) then adds the same gradients again.
    func run(_ layer: Layer, batch: Int, training: Bool, x: [Float], dy: [Float], values: [String: [Float]] = [:],
             file: StaticString = #filePath, line: UInt = #line) -> LayerRun {
        let store = layer.standaloneStore(maxBatch: batch)
        var rng = RandomStream(seed: 1)
        layer.resetParameters(rng: &rng)
        for (name, v) in values {
            if let e = store.entry(named: name) {
                precondition(v.count == e.count, name)
                store.parameterPointer(e.offset).update(from: v, count: v.count)
            } else if let e = store.bufferEntries.first(where: { $0.name == name && $0.dtype == .f32 }) {
                precondition(v.count == e.count, name)
                store.bufferPointer(e.offset).update(from: v, count: v.count)
            } else {
                preconditionFailure("no tensor \(name)")
            }
        }
        XCTAssertEqual(x.count, batch * layer.inputShape.count, "x", file: file, line: line)
        XCTAssertEqual(dy.count, batch * layer.outputShape.count, "dy", file: file, line: line)
        let context = StepContext(training: training)
        var y = [Float](repeating: .nan, count: batch * layer.outputShape.count)
        layer.forward(x, &y, batch: batch, context: context)

        store.gradients.pointer.update(repeating: .nan, count: store.count)
        var dx = [Float](repeating: .nan, count: batch * layer.inputShape.count)
        // dy as memory of its own: a layer may rewrite it in place.
        var dyCopy = [Float](repeating: 0, count: dy.count)
        dyCopy.withUnsafeMutableBufferPointer { d in
            d.baseAddress!.update(from: dy, count: dy.count)
            layer.backward(x: x, y: y, dy: d.baseAddress!, dx: &dx, batch: batch, context: context)
        }
        var result = LayerRun(store: store, y: y, dx: dx)
        func gradients() -> [String: [Float]] {
            Dictionary(uniqueKeysWithValues: store.entries.map {
                ($0.name, Array(UnsafeBufferPointer(start: store.gradientPointer($0.offset), count: $0.count)))
            })
        }
        result.gradients = gradients()
        var again = context
        again.accumulateGradients = true
        var dyAgain = [Float](repeating: 0, count: dy.count)
        dyAgain.withUnsafeMutableBufferPointer { d in
            d.baseAddress!.update(from: dy, count: dy.count)
            layer.backward(x: x, y: y, dy: d.baseAddress!, dx: nil, batch: batch, context: again)
        }
        result.accumulated = gradients()
        return result
    }

    /// The gradients after the first backward against the reference, and twice them after the second.
    func assertGradients(_ r: LayerRun, _ ref: [String: [Double]], _ what: String,
                         file: StaticString = #filePath, line: UInt = #line) {
        for (name, got) in r.gradients.sorted(by: { $0.key < $1.key }) {
            assertClose(got, ref[name + "_grad"], "\(what) \(name) gradient", file: file, line: line)
            assertClose(r.accumulated[name]!, ref[name + "_grad"].map { $0.map { 2 * $0 } },
                        "\(what) \(name) gradient accumulated over two backward passes", file: file, line: line)
        }
    }

    func random(_ n: Int, _ rng: inout RandomStream, _ low: Float = -1, _ high: Float = 1) -> [Float] {
        (0..<n).map { _ in rng.uniform(low, high) }
    }

    // MARK: - Conv2d

    func checkConv(batch: Int, input: Shape, outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0,
                   bias: Bool = true, seed: UInt64, file: StaticString = #filePath, line: UInt = #line) throws {
        let conv = try XCTUnwrap(Conv2d(input: input, outChannels: outChannels, kernel: kernel, stride: stride,
                                        padding: padding, bias: bias), file: file, line: line)
        let what = conv.typeName + " on \(batch) x \(input)"
        var rng = RandomStream(seed: seed)
        let x = random(batch * input.count, &rng)
        let dy = random(batch * conv.outputShape.count, &rng)
        var values = ["weight": random(outChannels * input.dims[0] * kernel * kernel, &rng, -0.5, 0.5)]
        if bias { values["bias"] = random(outChannels, &rng, -0.5, 0.5) }
        let r = run(conv, batch: batch, training: true, x: x, dy: dy, values: values, file: file, line: line)
        var inputs = values
        inputs["x"] = x
        inputs["dy"] = dy
        let ref = try reference("conv2d", ["n": batch, "cin": input.dims[0], "h": input.dims[1], "w": input.dims[2],
                                           "cout": outChannels, "k": kernel, "s": stride, "p": padding, "bias": bias ? 1 : 0],
                                inputs: inputs, outputs: ["y", "dx", "weight_grad"] + (bias ? ["bias_grad"] : []))
        assertClose(r.y, ref["y"], "\(what) y", file: file, line: line)
        assertClose(r.dx, ref["dx"], "\(what) dx", file: file, line: line)
        XCTAssertEqual(Set(r.gradients.keys), bias ? ["weight", "bias"] : ["weight"], what, file: file, line: line)
        assertGradients(r, ref, what, file: file, line: line)
    }

    func testConv2d3x3Stride1NoPadding() throws {
        try checkConv(batch: 2, input: Shape(2, 6, 5), outChannels: 3, kernel: 3, seed: 1)
    }

    func testConv2d3x3Stride2Padding1() throws {
        // Odd and even sizes: (7 + 2 - 3) / 2 + 1 = 4 rows, (6 + 2 - 3) / 2 + 1 = 3 columns (the last
        // padded column unused).
        try checkConv(batch: 3, input: Shape(3, 7, 6), outChannels: 4, kernel: 3, stride: 2, padding: 1, seed: 2)
    }

    func testConv2dPointwise() throws {
        // 1x1, stride 1, no padding: the layer reads x directly as its columns.
        try checkConv(batch: 2, input: Shape(4, 3, 5), outChannels: 2, kernel: 1, seed: 3)
        // 1x1 that is not the direct path: stride 2, and padding (a zero border in the output).
        try checkConv(batch: 2, input: Shape(3, 5, 4), outChannels: 2, kernel: 1, stride: 2, seed: 4)
        try checkConv(batch: 1, input: Shape(2, 3, 3), outChannels: 3, kernel: 1, padding: 1, seed: 5)
    }

    func testConv2dWithoutBias() throws {
        try checkConv(batch: 3, input: Shape(2, 5, 5), outChannels: 3, kernel: 3, padding: 1, bias: false, seed: 6)
        try checkConv(batch: 2, input: Shape(3, 6, 6), outChannels: 2, kernel: 1, bias: false, seed: 7)
    }

    func testConv2dOtherGeometries() throws {
        // Padding larger than the stride's reach, stride above the kernel (inputs skipped), a 5x5
        // kernel with "same" padding, one input channel, one sample.
        try checkConv(batch: 2, input: Shape(2, 3, 3), outChannels: 2, kernel: 2, stride: 3, padding: 2, seed: 8)
        try checkConv(batch: 2, input: Shape(2, 8, 7), outChannels: 3, kernel: 2, stride: 3, seed: 9)
        try checkConv(batch: 2, input: Shape(2, 6, 6), outChannels: 2, kernel: 5, padding: 2, seed: 10)
        try checkConv(batch: 1, input: Shape(1, 5, 4), outChannels: 2, kernel: 3, stride: 1, padding: 1, seed: 11)
    }

    func testConv2dWinograd() throws {
        // 3x3, stride 1, 8+ channels in and out: Winograd's F(2x2, 3x3). Odd output sizes (a last
        // tile half outside), paddings 0-3, one-tile outputs (a 1x1 image), no bias, rows of more
        // than 16 tiles.
        let cases: [(batch: Int, input: Shape, out: Int, padding: Int, bias: Bool)] = [
            (3, Shape(8, 6, 5), 9, 0, true),
            (2, Shape(9, 7, 6), 8, 1, true),
            (2, Shape(8, 5, 7), 8, 2, false),
            (2, Shape(8, 3, 3), 10, 0, true),
            (1, Shape(8, 4, 3), 8, 1, true),
            (2, Shape(8, 1, 1), 8, 1, true),
            (1, Shape(8, 2, 5), 9, 3, true),
            (2, Shape(16, 12, 12), 16, 1, true),
            // Rows of more than 16 tiles: the transforms' vector loops take two steps per row.
            (2, Shape(8, 35, 36), 8, 1, true),
            (1, Shape(8, 9, 40), 9, 0, false),
        ]
        for (i, c) in cases.enumerated() {
            let conv = try XCTUnwrap(Conv2d(input: c.input, outChannels: c.out, kernel: 3, padding: c.padding))
            XCTAssertTrue(conv.usesWinograd, conv.typeName)
            try checkConv(batch: c.batch, input: c.input, outChannels: c.out, kernel: 3, padding: c.padding,
                          bias: c.bias, seed: 40 + UInt64(i))
        }
        // The im2col path keeps the small layers: one input channel, and stride 2.
        XCTAssertFalse(try XCTUnwrap(Conv2d(input: Shape(1, 8, 8), outChannels: 16, kernel: 3)).usesWinograd)
        XCTAssertFalse(try XCTUnwrap(Conv2d(input: Shape(16, 8, 8), outChannels: 16, kernel: 3, stride: 2)).usesWinograd)
    }

    /// The CNN preset's second convolution at full size (32 -> 64 channels, 26x26 in, 2 samples).
    /// y and dx hold to 1e-5. The weight gradient sums 1,152 products per value, and float32 cannot
    /// hold every such sum to 1e-5 absolute whatever the algorithm: the im2col GEMM, the definition's
    /// own sum, misses it too (1.7e-5 measured). So Winograd's error there must stay within 1.5x of
    /// im2col's, from the same inputs.
    func testConv2dWinogradAtFullSize() throws {
        let (batch, input, out) = (2, Shape(32, 26, 26), 64)
        var rng = RandomStream(seed: 50)
        let x = random(batch * input.count, &rng)
        let dy = random(batch * out * 24 * 24, &rng)
        let values = ["weight": random(out * 32 * 9, &rng, -0.5, 0.5), "bias": random(out, &rng, -0.5, 0.5)]
        var inputs = values
        inputs["x"] = x
        inputs["dy"] = dy
        let ref = try reference("conv2d", ["n": batch, "cin": 32, "h": 26, "w": 26, "cout": out, "k": 3, "s": 1, "p": 0, "bias": 1],
                                inputs: inputs, outputs: ["y", "dx", "weight_grad", "bias_grad"])
        var errors: [Bool: [String: Double]] = [:]
        for winograd in [true, false] {
            let conv = try XCTUnwrap(Conv2d(input: input, outChannels: out, kernel: 3, winograd: winograd))
            XCTAssertEqual(conv.usesWinograd, winograd)
            let r = run(conv, batch: batch, training: true, x: x, dy: dy, values: values)
            let what = winograd ? "Winograd" : "im2col"
            assertClose(r.y, ref["y"], "\(what) y")
            assertClose(r.dx, ref["dx"], "\(what) dx")
            errors[winograd] = ["weight": worstError(r.gradients["weight"]!, ref["weight_grad"]!),
                                "weight, accumulated": worstError(r.accumulated["weight"]!, ref["weight_grad"]!.map { 2 * $0 }),
                                "bias": worstError(r.gradients["bias"]!, ref["bias_grad"]!)]
        }
        for (name, im2col) in errors[false]!.sorted(by: { $0.key < $1.key }) {
            let winograd = errors[true]![name]!
            print("Conv2d(32, 64, 3) on 2 x 32x26x26, \(name) gradient: worst error Winograd \(winograd), im2col \(im2col)")
            XCTAssertLessThanOrEqual(winograd, 1.5 * max(im2col, 1e-6), name)
        }
    }

    /// The largest |got - expected| / max(1, |expected|).
    func worstError(_ got: [Float], _ expected: [Double]) -> Double {
        zip(got, expected).map { abs(Double($0) - $1) / max(1, abs($1)) }.max() ?? 0
    }

    // MARK: - Pooling

    func checkPool(_ layer: Layer, op: String, batch: Int, kernel: Int = 0, stride: Int = 0, seed: UInt64,
                   quantized: Bool = false, file: StaticString = #filePath, line: UInt = #line) throws {
        let what = layer.typeName + " on \(batch) x \(layer.inputShape)"
        var rng = RandomStream(seed: seed)
        var x = random(batch * layer.inputShape.count, &rng)
        // Few distinct values: windows with tied maxima.
        if quantized { x = x.map { ($0 * 2).rounded() / 2 } }
        let dy = random(batch * layer.outputShape.count, &rng)
        let r = run(layer, batch: batch, training: true, x: x, dy: dy, file: file, line: line)
        let d = layer.inputShape.dims
        let ref = try reference(op, ["n": batch, "c": d[0], "h": d[1], "w": d[2], "k": kernel, "s": stride],
                                inputs: ["x": x, "dy": dy], outputs: ["y", "dx"])
        assertClose(r.y, ref["y"], "\(what) y", file: file, line: line)
        assertClose(r.dx, ref["dx"], "\(what) dx", file: file, line: line)
        XCTAssertTrue(r.store.entries.isEmpty, "\(what): no parameters", file: file, line: line)
    }

    func testMaxPool2d() throws {
        // Stride = kernel by default; 5 columns: floor mode leaves the last one out.
        try checkPool(MaxPool2d(input: Shape(3, 6, 5), kernel: 2)!, op: "maxpool", batch: 2, kernel: 2, stride: 2, seed: 20)
    }

    func testMaxPool2dOverlapping() throws {
        // Overlapping windows: an element that is the maximum of two windows gets both gradients.
        try checkPool(MaxPool2d(input: Shape(2, 7, 7), kernel: 3, stride: 2)!, op: "maxpool", batch: 2, kernel: 3, stride: 2, seed: 21)
        try checkPool(MaxPool2d(input: Shape(1, 5, 6), kernel: 2, stride: 1)!, op: "maxpool", batch: 3, kernel: 2, stride: 1, seed: 22)
    }

    func testMaxPool2dTiesGoToTheFirstMaximum() throws {
        try checkPool(MaxPool2d(input: Shape(2, 6, 6), kernel: 2, stride: 1)!, op: "maxpool", batch: 2, kernel: 2, stride: 1,
                      seed: 23, quantized: true)
        try checkPool(MaxPool2d(input: Shape(2, 6, 6), kernel: 3)!, op: "maxpool", batch: 2, kernel: 3, stride: 3,
                      seed: 24, quantized: true)
        // 2x2 at stride 2 (its own vectorized kernel), odd rows and columns left out by floor mode.
        try checkPool(MaxPool2d(input: Shape(3, 7, 9), kernel: 2)!, op: "maxpool", batch: 2, kernel: 2, stride: 2,
                      seed: 25, quantized: true)
    }

    /// NaN wins its window, as in torch (the first NaN), and backward sends the gradient there; in
    /// the 2x2 kernel (C) and the general loop alike.
    func testMaxPool2dNaNWins() throws {
        let x: [Float] = [1, .nan, 7, 2,
                          3, 2, 7, 7,
                          .nan, 5, 0, 0,
                          .nan, 1, 0, -1]
        let pool = run(MaxPool2d(input: Shape(1, 4, 4), kernel: 2)!, batch: 1, training: true, x: x, dy: [1, 2, 3, 4])
        XCTAssertTrue(pool.y[0].isNaN && pool.y[2].isNaN, "\(pool.y)")
        XCTAssertEqual([pool.y[1], pool.y[3]], [7, 0])
        // dx: the first NaN, the first 7, the first NaN, the first 0.
        let expected: [Float] = [0, 1, 2, 0,  0, 0, 0, 0,  3, 0, 4, 0,  0, 0, 0, 0]
        XCTAssertEqual(pool.dx, expected)
        // The general loop on the same rule: a 3x3 window at stride 1 over a NaN.
        let general = MaxPool2d(input: Shape(1, 4, 4), kernel: 3, stride: 1)!
        let r = run(general, batch: 1, training: true, x: x, dy: [1, 1, 1, 1])
        XCTAssertTrue(r.y[0].isNaN && r.y[1].isNaN && r.y[2].isNaN, "\(r.y)")
    }

    func testAvgPool2d() throws {
        try checkPool(AvgPool2d(input: Shape(3, 4, 6), kernel: 2)!, op: "avgpool", batch: 2, kernel: 2, stride: 2, seed: 30)
        try checkPool(AvgPool2d(input: Shape(2, 5, 5), kernel: 3, stride: 1)!, op: "avgpool", batch: 2, kernel: 3, stride: 1, seed: 31)
        // Stride above the kernel: inputs between windows get no gradient; floor mode drops the rest.
        try checkPool(AvgPool2d(input: Shape(1, 7, 8), kernel: 2, stride: 3)!, op: "avgpool", batch: 3, kernel: 2, stride: 3, seed: 32)
    }

    func testGlobalAvgPool2d() throws {
        try checkPool(GlobalAvgPool2d(input: Shape(4, 3, 5))!, op: "gap", batch: 3, seed: 40)
        try checkPool(GlobalAvgPool2d(input: Shape(2, 1, 1))!, op: "gap", batch: 2, seed: 41)
    }

    // MARK: - BatchNorm

    /// `initialStatistics`: running mean and var to start from (nil: the reset's 0 and 1).
    func checkBatchNorm(input: Shape, batch: Int, training: Bool, seed: UInt64, initialStatistics: Bool = true,
                        file: StaticString = #filePath, line: UInt = #line) throws {
        let bn = try XCTUnwrap(BatchNorm(input: input), file: file, line: line)
        let what = bn.typeName + (training ? " train" : " eval") + " on \(batch) x \(input)"
        let c = bn.channels, l = bn.positions
        var rng = RandomStream(seed: seed)
        // Per-channel offsets and scales, so that the statistics differ by channel.
        let offsets = random(c, &rng, -2, 2), scales = random(c, &rng, 0.5, 3)
        var x = [Float](repeating: 0, count: batch * c * l)
        for s in 0..<batch { for ch in 0..<c { for j in 0..<l {
            x[(s * c + ch) * l + j] = offsets[ch] + scales[ch] * rng.uniform(-1, 1)
        } } }
        let dy = random(batch * c * l, &rng)
        var values = ["weight": random(c, &rng, 0.5, 1.5), "bias": random(c, &rng, -0.5, 0.5)]
        values["running_mean"] = initialStatistics ? random(c, &rng, -1, 1) : [Float](repeating: 0, count: c)
        values["running_var"] = initialStatistics ? random(c, &rng, 0.5, 2) : [Float](repeating: 1, count: c)
        let r = run(bn, batch: batch, training: training, x: x, dy: dy, values: values, file: file, line: line)
        var inputs = values
        inputs["x"] = x
        inputs["dy"] = dy
        let ref = try reference("batchnorm", ["n": batch, "c": c, "l": l, "training": training ? 1 : 0], inputs: inputs,
                                outputs: ["y", "dx", "weight_grad", "bias_grad", "running_mean", "running_var"])
        assertClose(r.y, ref["y"], "\(what) y", file: file, line: line)
        assertClose(r.dx, ref["dx"], "\(what) dx", file: file, line: line)
        assertGradients(r, ref, what, file: file, line: line)
        // Backward does not touch the running statistics: they are the forward's.
        assertClose(r.buffer("running_mean"), ref["running_mean"], "\(what) running_mean", file: file, line: line)
        assertClose(r.buffer("running_var"), ref["running_var"], "\(what) running_var", file: file, line: line)
        XCTAssertEqual(r.batchesTracked, training ? 1 : 0, "\(what) num_batches_tracked", file: file, line: line)
        XCTAssertEqual(r.store.bufferEntries.map(\.name), ["running_mean", "running_var", "num_batches_tracked"], what,
                       file: file, line: line)
    }

    func testBatchNorm2dTrainMode() throws {
        try checkBatchNorm(input: Shape(3, 4, 5), batch: 4, training: true, seed: 50)
        try checkBatchNorm(input: Shape(2, 3, 3), batch: 2, training: true, seed: 51, initialStatistics: false)
        // One sample: the statistics are over its positions alone.
        try checkBatchNorm(input: Shape(2, 2, 3), batch: 1, training: true, seed: 52)
    }

    func testBatchNorm1dTrainMode() throws {
        try checkBatchNorm(input: Shape(6), batch: 5, training: true, seed: 53)
        try checkBatchNorm(input: Shape(4), batch: 2, training: true, seed: 54, initialStatistics: false)
        try checkBatchNorm(input: Shape(3, 4), batch: 3, training: true, seed: 55)  // (C, L)
    }

    func testBatchNorm2dEvalMode() throws {
        try checkBatchNorm(input: Shape(3, 2, 3), batch: 3, training: false, seed: 60)
    }

    func testBatchNorm1dEvalMode() throws {
        try checkBatchNorm(input: Shape(5), batch: 4, training: false, seed: 61)
        try checkBatchNorm(input: Shape(2, 3), batch: 1, training: false, seed: 62)
    }
}
