import Engine

/// torch.nn.Conv2d (dilation 1, groups 1): x (N, Cin, H, W), weight (Cout, Cin, K, K), bias (Cout),
/// y (N, Cout, Ho, Wo) with Ho = (H + 2P - K) / S + 1.
///
/// As a GEMM per sample, over OpenBLAS: im2col unrolls the sample's K x K patches into the columns
/// (Cin*K*K, Ho*Wo), and y_s (Cout, Ho*Wo) = W (Cout, Cin*K*K) x columns, which is already NCHW.
/// Backward recomputes the columns (cheaper than keeping N of them) for dW += dy_s x columns^T, then
/// overwrites them with dcolumns = W^T dy_s and folds them back into dx_s (col2im). The columns are
/// scratch: one sample's worth, shared with every other layer. A 1x1 convolution with stride 1 and
/// no padding reads x directly. A 3x3 convolution with stride 1 and at least 8 channels in and out
/// runs as Winograd's F(2x2, 3x3) instead (`Winograd3x3`): 2.25x fewer multiplications, the same
/// result up to rounding. With a fused activation (`FusesActivation`), y = f(conv + bias) in
/// the pass that adds the bias, and backward applies f' in the pass that sums the bias gradient.
/// With a fused MaxPool2d(2, stride 2) after it (`FusesMaxPool`; no activation or ReLU), the whole
/// output is never stored: under Winograd, the output transform pools each 2x2 tile (which is a
/// window) as it makes it, and backward's transform starts from the pooled gradient; under im2col,
/// each sample's output is made in scratch and pooled at once, and backward rebuilds each sample's
/// output gradient there.
public final class Conv2d: FusesActivation, FusesMaxPool {
    public func export(_ x: String, prefix: String, into graph: inout InferenceGraph) -> String {
        graph.add("Conv", [x, prefix + "weight"] + (parameters.hasBias ? [prefix + "bias"] : []),
                  [("kernel_shape", .ints([kernel, kernel])), ("strides", .ints([stride, stride])),
                   ("pads", .ints([padding, padding, padding, padding]))])
    }

    public let inChannels: Int, outChannels: Int
    public let kernel: Int, stride: Int, padding: Int
    public let hasBias: Bool
    public let inputShape: Shape
    public let outputShape: Shape
    public private(set) var activation: ActivationKind?
    private let height: Int, width: Int, outHeight: Int, outWidth: Int
    private var parameters: WeightAndBias
    private var weight: UnsafeMutablePointer<Float>! { parameters.weight }
    private var weightGrad: UnsafeMutablePointer<Float>! { parameters.weightGrad }
    private var bias: UnsafeMutablePointer<Float>? { parameters.bias }
    private var biasGrad: UnsafeMutablePointer<Float>? { parameters.biasGrad }
    /// The columns (im2col), or Winograd's transforms: this call's scratch.
    private var columns: UnsafeMutablePointer<Float>!
    /// The pooling this layer runs (`FusesMaxPool`), and, under im2col, one sample's output
    /// (scratch, after the columns).
    private var pool: MaxPool2d?
    private var sampleOutput: UnsafeMutablePointer<Float>!
    private let winograd: Winograd3x3?
    /// Whether this convolution runs as Winograd's F(2x2, 3x3) (else im2col and one GEMM per sample).
    public var usesWinograd: Bool { winograd != nil }

    /// `input`: (Cin, H, W). Fails (nil) when the kernel does not fit the padded input. `winograd`:
    /// whether Winograd may run where it applies (false: always im2col, for comparisons).
    public init?(input: Shape, outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0, bias: Bool = true,
                 winograd: Bool = true) {
        guard input.rank == 3, outChannels > 0, kernel > 0, stride > 0, padding >= 0 else { return nil }
        inChannels = input.dims[0]
        height = input.dims[1]
        width = input.dims[2]
        guard height + 2 * padding >= kernel, width + 2 * padding >= kernel else { return nil }
        self.outChannels = outChannels
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
        hasBias = bias
        outHeight = (height + 2 * padding - kernel) / stride + 1
        outWidth = (width + 2 * padding - kernel) / stride + 1
        inputShape = input
        outputShape = Shape(outChannels, outHeight, outWidth)
        parameters = WeightAndBias(weightShape: [outChannels, inChannels, kernel, kernel], bias: bias)
        self.winograd = winograd && Winograd3x3.applies(inChannels: inChannels, outChannels: outChannels, kernel: kernel, stride: stride)
            ? Winograd3x3(inChannels: inChannels, outChannels: outChannels, height: height, width: width, padding: padding) : nil
    }

    public var typeName: String {
        "Conv2d(\(inChannels), \(outChannels), kernel_size=\(kernel)"
            + (stride != 1 ? ", stride=\(stride)" : "") + (padding != 0 ? ", padding=\(padding)" : "")
            + (hasBias ? "" : ", bias=False") + ")"
    }

    private var patch: Int { inChannels * kernel * kernel }
    private var pixels: Int { outHeight * outWidth }
    /// x is its own columns: nothing to unroll.
    private var pointwise: Bool { kernel == 1 && stride == 1 && padding == 0 }
    public var parameterCount: Int { parameters.count }

    public func fuse(_ kind: ActivationKind) -> Bool {
        activation = kind
        return true
    }

    /// Only a 2x2 window at stride 2 over this layer's output, after no activation or ReLU (whose
    /// derivative, 0 or 1, lets backward skip the positions that were not a window's maximum).
    public func fuse(_ pool: MaxPool2d) -> Bool {
        guard pool.isTwoByTwo, pool.inputShape == outputShape, activation == nil || activation == .relu else { return false }
        self.pool = pool
        return true
    }

    /// Scratch: the columns or Winograd's, then one sample's output when a pooling is fused.
    private var columnFloats: Int { winograd?.scratchFloats ?? (pointwise ? 0 : patch * pixels) }

    public func reserve(in store: ParameterStore, prefix: String, maxBatch: Int) {
        parameters.reserve(in: store, prefix: prefix)
        store.reserveScratch(columnFloats + (pool != nil && winograd == nil ? outputShape.count : 0))
    }

    public func bind(to store: ParameterStore) {
        parameters.bind(to: store)
        columns = store.scratch.pointer
        sampleOutput = columns + columnFloats
    }

    /// torch.nn.Conv2d.reset_parameters (`WeightAndBias.reset`, fan_in = Cin*K*K).
    public func resetParameters(rng: inout RandomStream) { parameters.reset(rng: &rng) }

    public func gemms(batch: Int, inputGrad: Bool, direct: Bool) -> [GEMMShape] {
        if let winograd, !direct { return winograd.gemms(batch: batch, inputGrad: inputGrad) }
        return [GEMMShape(m: outChannels, n: pixels, k: patch, transA: false, transB: false, repeats: batch),
         GEMMShape(m: outChannels, n: patch, k: pixels, transA: false, transB: true, repeats: batch)]
            + (inputGrad ? [GEMMShape(m: patch, n: pixels, k: outChannels, transA: true, transB: false, repeats: batch)] : [])
    }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, context: StepContext) {
        outputs(x, y, stride: outputShape.count, batch: batch) { _, _ in }
    }

    public func forward(_ x: UnsafePointer<Float>, pooled: UnsafeMutablePointer<Float>, batch: Int, context: StepContext) {
        let pool = pool!, count = pool.outputShape.count
        if let winograd {  // pooled as the output transform makes each tile
            return winograd.forward(x, pooled: pooled, argmax: pool.argmax(ofSample: 0), batch: batch, weight: weight,
                                    bias: bias, relu: activation == .relu, scratch: columns)
        }
        outputs(x, sampleOutput, stride: 0, batch: batch) { s, ys in pool.forward(sample: s, ys, pooled + s * count) }
    }

    /// Each sample's output, bias and activation applied, at y + s * stride (0: every sample in
    /// the same place), then `then(s, output)` while it is in cache.
    @inline(__always)
    private func outputs(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, stride: Int, batch: Int,
                         then: (Int, UnsafeMutablePointer<Float>) -> Void) {
        if let winograd {
            winograd.forward(x, y, outputStride: stride, batch: batch, weight: weight, scratch: columns) { s, ys in
                finish(ys)
                then(s, ys)
            }
            return
        }
        let inCount = inputShape.count
        for s in 0..<batch {
            let ys = y + s * stride
            let cols = unrolled(x + s * inCount)
            Kernels.gemm(transA: false, transB: false, m: outChannels, n: pixels, k: patch,
                         a: weight, lda: patch, b: cols, ldb: pixels, beta: 0, c: ys, ldc: pixels)
            finish(ys)
            then(s, ys)
        }
    }

    /// The bias and the fused activation over one sample's output (none or ReLU: in C, 16 lanes).
    @inline(__always)
    private func finish(_ ys: UnsafeMutablePointer<Float>) {
        if let activation, activation != .relu {
            activation.withFunction { f in epilogue(ys, f) }
        } else if activation != nil || hasBias {
            Kernels.biasReLU(ys, channels: outChannels, pixels: pixels, bias: bias, relu: activation == .relu)
        }
    }

    /// y[c, p] = f(y[c, p] + bias[c]) for one sample.
    @inline(__always)
    private func epilogue(_ y: UnsafeMutablePointer<Float>, _ f: (Float) -> Float) {
        let n = pixels
        for c in 0..<outChannels {
            let b = bias?[c] ?? 0
            let row = y + c * n
            for p in 0..<n { row[p] = f(row[p] + b) }
        }
    }

    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, context: StepContext) {
        let count = outputShape.count
        gradients(x: x, dx: dx, batch: batch, context: context) { s in
            .dense(UnsafeMutablePointer(mutating: dy + s * count), activationOutput: y + s * count)
        }
    }

    public func backward(x: UnsafePointer<Float>, pooled: UnsafePointer<Float>, dPooled: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, context: StepContext) {
        let pool = pool!, count = pool.outputShape.count
        gradients(x: x, dx: dx, batch: batch, context: context) { s in
            // The pool's backward for this sample, through the fused ReLU's derivative (`fuse`):
            // inside Winograd's output transform, or written out for im2col.
            let reluOutput = activation == .relu ? pooled + s * count : nil
            if winograd != nil { return .pooled(dPooled + s * count, argmax: pool.argmax(ofSample: s), reluOutput: reluOutput) }
            pool.backward(sample: s, dy: dPooled + s * count, sampleOutput, reluOutput: reluOutput)
            return .dense(sampleOutput, activationOutput: nil)
        }
    }

    /// Where `gradients` takes one sample's output gradient from.
    private enum SampleGradient {
        /// The gradient of the output, and the output of the fused activation to take the
        /// derivative at (nil: none to take).
        case dense(UnsafeMutablePointer<Float>, activationOutput: UnsafePointer<Float>?)
        /// The gradient of the fused pooling's output (Winograd only: `Winograd3x3.OutputGradient`).
        case pooled(UnsafePointer<Float>, argmax: UnsafePointer<Int32>, reluOutput: UnsafePointer<Float>?)
    }

    /// The parameter gradients, and dx when given, from each sample's output gradient, which
    /// `sample(s)` gives.
    @inline(__always)
    private func gradients(x: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?, batch: Int, context: StepContext,
                           sample: (Int) -> SampleGradient) {
        let inCount = inputShape.count
        // The parameter gradients sum over the samples, one shard at a time with --invariant-shards
        // (each into its leaf, then the fixed tree), else in one run over the batch.
        let shards = context.splitShards
        let parts = shards?.count ?? 1
        let accumulate = context.accumulateGradients  // into the gradients, or the shards' leaves
        if let winograd, dx != nil { winograd.prepareInputGradient(weight: weight, scratch: columns) }
        for j in 0..<parts {
            let wg = shards?.leaf(weightGrad, shard: j) ?? weightGrad!
            let bg = biasGrad.map { shards?.leaf($0, shard: j) ?? $0 }
            var first = !accumulate
            let samples = Swift.stride(from: j, to: batch, by: parts)
            if let winograd {
                winograd.backward(x: x, dx: dx, samples: samples, weightGrad: wg, accumulate: accumulate,
                                  scratch: columns) { s in
                    defer { first = false }
                    switch sample(s) {
                    case let .dense(g, ys): return .dense(outputGradient(g, ys, biasGrad: bg, first: first))
                    case let .pooled(g, argmax, reluOutput):
                        return .pooled(g, argmax: argmax, reluOutput: reluOutput, biasGrad: bg, first: first)
                    }
                }
                if first { bg?.update(repeating: 0, count: outChannels) }
                continue
            }
            for s in samples {
                guard case let .dense(gs, ys) = sample(s) else { preconditionFailure("a pooled gradient without Winograd") }
                let g = outputGradient(gs, ys, biasGrad: bg, first: first)
                let cols = unrolled(x + s * inCount)
                // dW (Cout, Cin*K*K) (+)= g (Cout, Ho*Wo) x columns^T
                Kernels.gemm(transA: false, transB: true, m: outChannels, n: patch, k: pixels,
                             a: g, lda: pixels, b: cols, ldb: pixels, beta: first ? 0 : 1, c: wg, ldc: patch)
                first = false
                guard let dx else { continue }
                let dxs = dx + s * inCount
                if pointwise {
                    Kernels.gemm(transA: true, transB: false, m: patch, n: pixels, k: outChannels,
                                 a: weight, lda: patch, b: g, ldb: pixels, beta: 0, c: dxs, ldc: pixels)
                } else {
                    // dcolumns (Cin*K*K, Ho*Wo) = W^T g, over the columns (no longer needed), then col2im.
                    Kernels.gemm(transA: true, transB: false, m: patch, n: pixels, k: outChannels,
                                 a: weight, lda: patch, b: g, ldb: pixels, beta: 0, c: columns, ldc: pixels)
                    fold(columns, into: dxs)
                }
            }
            if first {  // no samples: the gradients are zero (written, not accumulated)
                wg.update(repeating: 0, count: outChannels * patch)
                bg?.update(repeating: 0, count: outChannels)
            }
        }
        if let shards, context.finalBackward {
            shards.combine(into: weightGrad, count: outChannels * patch)
            if let biasGrad { shards.combine(into: biasGrad, count: outChannels) }
        }
    }

    /// One sample's output gradient g: with the output y of a fused activation, g becomes the
    /// gradient before it, in place, in the pass that sums the bias gradient. Returns g.
    @inline(__always)
    private func outputGradient(_ g: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>?,
                                biasGrad bg: UnsafeMutablePointer<Float>?, first: Bool) -> UnsafeMutablePointer<Float> {
        if let activation, let y, activation != .relu {
            activation.withDerivative { d in biasGradient(g, y, into: bg, first: first, d) }
        } else if (activation != nil && y != nil) || hasBias {  // none or ReLU: in C, 16 lanes
            Kernels.reluGradientBiasSums(g, reluOutput: activation != nil ? y : nil, channels: outChannels, pixels: pixels,
                                         biasGrad: bg, first: first)
        }
        return g
    }

    /// g[c, p] *= f'(y[c, p]) (when `y` is given), and the bias gradient (+)= the row sums of g.
    @inline(__always)
    private func biasGradient(_ g: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>?, into biasGrad: UnsafeMutablePointer<Float>?,
                              first: Bool, _ derivative: (Float) -> Float) {
        let n = pixels
        for c in 0..<outChannels {
            let row = g + c * n
            if let y {
                let yr = y + c * n
                for p in 0..<n { row[p] *= derivative(yr[p]) }
            }
            guard let biasGrad else { continue }
            // 16 running sums, then their total (a float sum the compiler would not reorder).
            var lanes = F16(), p = 0
            while p + 16 <= n { lanes += load16(row, p); p += 16 }
            var sum = lanes.sum()
            while p < n { sum += row[p]; p += 1 }
            biasGrad[c] = first ? sum : biasGrad[c] + sum
        }
    }

    /// The columns of sample `xs`: the scratch, filled by im2col, or `xs` itself for a pointwise conv.
    @inline(__always)
    private func unrolled(_ xs: UnsafePointer<Float>) -> UnsafePointer<Float> {
        if pointwise { return xs }
        unfold(xs, into: columns)
        return UnsafePointer(columns)
    }

    /// The output columns ow whose input column ow*S - P + kj lies inside [0, W): lo..<hi.
    @inline(__always)
    private func columnRange(_ kj: Int) -> (Int, Int) {
        let (w, wo, s, p) = (width, outWidth, stride, padding)
        let lo = min(wo, p - kj > 0 ? (p - kj + s - 1) / s : 0)
        let last = w - 1 + p - kj
        let hi = last < 0 ? lo : max(lo, min(wo, last / s + 1))
        return (lo, hi)
    }

    /// Visits the rows of one sample's columns: for patch row (c, ki, kj) and output row oh,
    /// `body(column, input, lo, hi)` gets the row's offset in the columns and the offset in the sample
    /// of the input element at output column 0, x[c, oh*S - P + ki, -P + kj] (only output columns
    /// lo..<hi fall inside the image, `columnRange`), or nil when that input row is padding.
    @inline(__always)
    private func forEachColumnRow(_ body: (_ column: Int, _ input: Int?, _ lo: Int, _ hi: Int) -> Void) {
        let (h, w, ho, wo, k, s, p) = (height, width, outHeight, outWidth, kernel, stride, padding)
        var column = 0
        for c in 0..<inChannels {
            for ki in 0..<k {
                for kj in 0..<k {
                    let (lo, hi) = columnRange(kj)
                    for oh in 0..<ho {
                        let ih = oh * s - p + ki
                        body(column + oh * wo, ih >= 0 && ih < h ? (c * h + ih) * w - p + kj : nil, lo, hi)
                    }
                    column += ho * wo
                }
            }
        }
    }

    /// im2col: cols[(c*K + ki)*K + kj, oh*Wo + ow] = x[c, oh*S - P + ki, ow*S - P + kj], 0 outside.
    private func unfold(_ x: UnsafePointer<Float>, into cols: UnsafeMutablePointer<Float>) {
        let (wo, s) = (outWidth, stride)
        forEachColumnRow { column, input, lo, hi in
            let out = cols + column
            guard let input else { out.update(repeating: 0, count: wo); return }
            let src = x + input
            for ow in 0..<lo { out[ow] = 0 }
            if s == 1 {
                (out + lo).update(from: src + lo, count: hi - lo)
            } else {
                for ow in lo..<hi { out[ow] = src[ow * s] }
            }
            for ow in hi..<wo { out[ow] = 0 }
        }
    }

    /// col2im: dx[c, ih, iw] = the sum of the column entries that im2col copied from it.
    private func fold(_ cols: UnsafePointer<Float>, into dx: UnsafeMutablePointer<Float>) {
        let s = stride
        dx.update(repeating: 0, count: inputShape.count)
        forEachColumnRow { column, input, lo, hi in
            guard let input else { return }
            let dst = dx + input, src = cols + column
            if s == 1 {
                for ow in lo..<hi { dst[ow] += src[ow] }
            } else {
                for ow in lo..<hi { dst[ow * s] += src[ow] }
            }
        }
    }
}
