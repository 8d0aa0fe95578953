import Engine

/// y = x W^T + b, as torch.nn.Linear. x is (B, in), W is (out, in), b is (out), y is (B, out).
/// With `activation` set (`fuse`, by `Sequential`, for a Linear followed by an activation), y = f(x W^T + b)
/// in one pass after the GEMM, and backward applies f' in the same pass that sums the bias gradient.
public final class Linear: FusesActivation {
    /// torch.nn.Linear as Gemm(x, W, b, transB=1); a fused activation is exported by its own layer.
    public func export(_ x: String, prefix: String, into graph: inout InferenceGraph) -> String {
        graph.add("Gemm", [x, prefix + "weight"] + (hasBias ? [prefix + "bias"] : []), [("transB", .int(1))])
    }

    public private(set) var activation: ActivationKind?

    /// Every elementwise activation fuses into the epilogue.
    public func fuse(_ kind: ActivationKind) -> Bool {
        activation = kind
        return true
    }
    /// Zeros standing in for the bias of a Linear without one, so the epilogue has one form.
    private let noBias: FloatBuffer
    public let inFeatures: Int
    public let outFeatures: Int
    public let hasBias: Bool
    public var typeName: String { "Linear(in_features=\(inFeatures), out_features=\(outFeatures)\(hasBias ? "" : ", bias=False"))" }
    public var inputShape: Shape { Shape(inFeatures) }
    public var outputShape: Shape { Shape(outFeatures) }
    public var parameterCount: Int { parameters.count }

    private var parameters: WeightAndBias
    public var weight: UnsafeMutablePointer<Float>! { parameters.weight }
    public var bias: UnsafeMutablePointer<Float>? { parameters.bias }
    public var weightGrad: UnsafeMutablePointer<Float>! { parameters.weightGrad }
    public var biasGrad: UnsafeMutablePointer<Float>? { parameters.biasGrad }

    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true) {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        self.hasBias = bias
        parameters = WeightAndBias(weightShape: [outFeatures, inFeatures], bias: bias)
        noBias = FloatBuffer(count: bias ? 0 : outFeatures)
    }

    public func reserve(in store: ParameterStore, prefix: String, maxBatch: Int) { parameters.reserve(in: store, prefix: prefix) }
    public func bind(to store: ParameterStore) { parameters.bind(to: store) }
    /// torch.nn.Linear.reset_parameters (`WeightAndBias.reset`).
    public func resetParameters(rng: inout RandomStream) { parameters.reset(rng: &rng) }

    /// Forward y = x W^T, the weight gradient dy^T x, and (when an earlier layer trains) dx = dy W.
    public func gemms(batch: Int, inputGrad: Bool, direct: Bool) -> [GEMMShape] {
        [GEMMShape(m: batch, n: outFeatures, k: inFeatures, transA: false, transB: true),
         GEMMShape(m: outFeatures, n: inFeatures, k: batch, transA: true, transB: false)]
            + (inputGrad ? [GEMMShape(m: batch, n: inFeatures, k: outFeatures, transA: false, transB: false)] : [])
    }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, context: StepContext) {
        Kernels.gemm(transA: false, transB: true, m: batch, n: outFeatures, k: inFeatures,
                     a: x, lda: inFeatures, b: weight, ldb: inFeatures, beta: 0, c: y, ldc: outFeatures)
        // Epilogue, one pass over y: bias, then the fused activation.
        if let activation {
            activation.withFunction { f in epilogue(y, rows: batch, f) }
        } else if hasBias {
            epilogue(y, rows: batch) { $0 }
        }
    }

    /// y[r, c] = f(y[r, c] + bias[c])
    @inline(__always)
    private func epilogue(_ y: UnsafeMutablePointer<Float>, rows: Int, _ f: (Float) -> Float) {
        let n = outFeatures, b = UnsafePointer(bias ?? noBias.pointer)
        for r in 0..<rows {
            let row = y + r * n
            for c in 0..<n { row[c] = f(row[c] + b[c]) }
        }
    }

    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, context: StepContext) {
        let (n, k) = (outFeatures, inFeatures)
        // With a fused activation, dy becomes the gradient before it, in place (the buffer is this
        // layer's own output gradient).
        let g = UnsafeMutablePointer(mutating: dy)
        if let activation {
            activation.withDerivative { d in
                for r in 0..<batch {
                    let o = r * n
                    for c in 0..<n { g[o + c] *= d(y[o + c]) }
                }
            }
        }
        // The parameter gradients sum over the rows: over the whole batch, or with --invariant-shards
        // over each shard's rows (j, j + parts, ...: a matrix with `parts` times the row stride) into
        // its leaf, and after the step's last backward, through the fixed tree.
        let shards = context.splitShards
        let parts = shards?.count ?? 1
        let accumulate = context.accumulateGradients  // into the gradients, or the shards' leaves
        for j in 0..<parts {
            let rows = shards?.size(j, of: batch) ?? batch
            if let biasGrad {
                Kernels.columnSums(g + j * n, rows: rows, cols: n, rowStride: parts * n,
                                   into: shards?.leaf(biasGrad, shard: j) ?? biasGrad, accumulate: accumulate)
            }
            // dW (out, in) (+)= dy^T (out, B) x (B, in)
            Kernels.gemm(transA: true, transB: false, m: n, n: k, k: rows, a: g + j * n, lda: parts * n,
                         b: x + j * k, ldb: parts * k, beta: accumulate ? 1 : 0,
                         c: shards?.leaf(weightGrad, shard: j) ?? weightGrad, ldc: k)
        }
        if let shards, context.finalBackward {
            shards.combine(into: weightGrad, count: n * k)
            if let biasGrad { shards.combine(into: biasGrad, count: n) }
        }
        // dx (B, in) = dy (B, out) W (out, in)
        if let dx {
            Kernels.gemm(transA: false, transB: false, m: batch, n: k, k: n,
                         a: dy, lda: n, b: weight, ldb: k, beta: 0, c: dx, ldc: k)
        }
    }
}
