import Engine

/// torch.nn.BatchNorm1d over (C) or (C, L) samples, and BatchNorm2d over (C, H, W), with eps 1e-5,
/// momentum 0.1 and an affine weight (1) and bias (0). Per channel c, over the batch and positions:
///
///     train: y = (x - mean) / sqrt(var + eps) * weight + bias, mean and biased var of the batch;
///            running_mean = 0.9 running_mean + 0.1 mean, running_var likewise with the unbiased
///            var, num_batches_tracked += 1
///     eval:  the same with running_mean and running_var
///
/// **Synchronized** (torch.nn.SyncBatchNorm): in training, the batch is the *global* batch. The
/// per-channel sums and sums of squares (and in backward, the sums of dy and dy * xhat) are summed
/// over the ranks (`context.replicas`), so every rank normalizes with the same statistics and the
/// trajectory does not depend on the number of ranks. Sums are in double precision, element by element.
///
/// The running statistics are buffers (saved, not trained, not reduced: every rank computes the same).
/// Forward keeps each channel's mean and 1/sqrt(var + eps) in workspace; backward recomputes xhat.
public final class BatchNorm: Layer {
    /// Inference with the running statistics, on (N, C) or (N, C, H, W).
    public func export(_ x: String, prefix: String, into graph: inout InferenceGraph) -> String {
        graph.add("BatchNormalization", [x, prefix + "weight", prefix + "bias", prefix + "running_mean", prefix + "running_var"],
                  [("epsilon", .float(eps))])
    }

    public let channels: Int
    /// Positions per channel in a sample (1 for (C), L for (C, L), H*W for (C, H, W)).
    public let positions: Int
    public let inputShape: Shape
    public let eps: Float = 1e-5
    public let momentum: Float = 0.1
    private var weightOffset = 0, biasOffset = 0
    private var meanOffset = 0, varOffset = 0, countOffset = 0, statsOffset = 0, sumsOffset = 0
    private var weight: UnsafeMutablePointer<Float>!, bias: UnsafeMutablePointer<Float>!
    private var weightGrad: UnsafeMutablePointer<Float>!, biasGrad: UnsafeMutablePointer<Float>!
    private var runningMean: UnsafeMutablePointer<Float>!, runningVar: UnsafeMutablePointer<Float>!
    private var batchesTracked: UnsafeMutablePointer<Int64>!
    /// The last training forward's per-channel mean and 1/sqrt(var + eps).
    private var mean: UnsafeMutablePointer<Float>!, invStd: UnsafeMutablePointer<Float>!
    /// 2C + 1 doubles: the sums that travel between ranks (with shards, the first of one set per
    /// shard, which the shards' tree sums into the first).
    private var sums: UnsafeMutablePointer<Double>!
    private var reservedShards = 1

    public init?(input: Shape) {
        guard input.rank >= 1 && input.rank <= 3, input.count > 0 else { return nil }
        inputShape = input
        channels = input.dims[0]
        positions = input.count / channels
    }

    public var outputShape: Shape { inputShape }
    public var typeName: String { "BatchNorm\(inputShape.rank == 3 ? 2 : 1)d(\(channels), eps=1e-05, momentum=0.1)" }
    public var parameterCount: Int { 2 * channels }

    public func reserve(in store: ParameterStore, prefix: String, maxBatch: Int) {
        weightOffset = store.reserve(name: prefix + "weight", shape: [channels])
        biasOffset = store.reserve(name: prefix + "bias", shape: [channels])
        meanOffset = store.reserveBuffer(name: prefix + "running_mean", shape: [channels])
        varOffset = store.reserveBuffer(name: prefix + "running_var", shape: [channels])
        countOffset = store.reserveBuffer(name: prefix + "num_batches_tracked", shape: [], dtype: .i64)
        statsOffset = store.reserveWorkspace(2 * channels)
        // Doubles: one set per shard of the batch under --invariant-shards.
        reservedShards = store.gradientShards
        sumsOffset = store.reserveWorkspace(2 * (2 * channels + 1) * store.gradientShards)
    }

    public func bind(to store: ParameterStore) {
        weight = store.parameterPointer(weightOffset)
        bias = store.parameterPointer(biasOffset)
        weightGrad = store.gradientPointer(weightOffset)
        biasGrad = store.gradientPointer(biasOffset)
        runningMean = store.bufferPointer(meanOffset)
        runningVar = store.bufferPointer(varOffset)
        batchesTracked = store.int64BufferPointer(countOffset)
        mean = store.workspacePointer(statsOffset)
        invStd = mean + channels
        sums = UnsafeMutableRawPointer(store.workspacePointer(sumsOffset)).assumingMemoryBound(to: Double.self)  // 64-byte aligned
    }

    /// weight 1, bias 0; running_mean 0, running_var 1, num_batches_tracked 0 (reset_parameters).
    public func resetParameters(rng: inout RandomStream) {
        weight.update(repeating: 1, count: channels)
        bias.update(repeating: 0, count: channels)
        runningMean.update(repeating: 0, count: channels)
        runningVar.update(repeating: 1, count: channels)
        batchesTracked.pointee = 0
    }

    /// Shards of this rank's batch under --invariant-shards (1: off, or one shard).
    private func shardCount(_ context: StepContext) -> Int {
        let parts = context.splitShards?.count ?? 1
        precondition(parts <= reservedShards, "BatchNorm: \(parts) shards, sums reserved for \(reservedShards)")
        return parts
    }

    @inline(__always) private func plane(_ p: UnsafePointer<Float>, _ s: Int, _ c: Int) -> UnsafePointer<Float> {
        p + (s * channels + c) * positions
    }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, context: StepContext) {
        let C = channels, L = positions
        if context.training {
            // Per-channel sum and sum of squares of this rank's batch (shard by shard, then the
            // shards' tree, with --invariant-shards), then over all ranks.
            let parts = shardCount(context)
            for part in 0..<parts {
                let leaf = sums + part * (2 * C + 1)
                for c in 0..<C {
                    var s1 = 0.0, s2 = 0.0
                    for s in stride(from: part, to: batch, by: parts) {
                        // In double: a float's square is exact in double, so E[x^2] - mean^2 loses
                        // nothing to the cancellation that float sums of squares would.
                        let xp = plane(x, s, c)
                        for j in 0..<L { let v = Double(xp[j]); s1 += v; s2 += v * v }
                    }
                    leaf[c] = s1
                    leaf[C + c] = s2
                }
                leaf[2 * C] = Double((context.splitShards?.size(part, of: batch) ?? batch) * L)
            }
            treeSum(sums, parts: parts, count: 2 * C + 1, stride: 2 * C + 1)
            context.replicas?.sum(sums, count: 2 * C + 1)
            let n = sums[2 * C]
            guard n > 0 else { return }
            let unbias = n > 1 ? n / (n - 1) : 1
            for c in 0..<C {
                let m = sums[c] / n
                let v = max(0, sums[C + c] / n - m * m)
                mean[c] = Float(m)
                invStd[c] = 1 / (Float(v) + eps).squareRoot()
                runningMean[c] = (1 - momentum) * runningMean[c] + momentum * Float(m)
                runningVar[c] = (1 - momentum) * runningVar[c] + momentum * Float(v * unbias)
            }
            batchesTracked.pointee += 1
            normalize(x, y, batch: batch, mean: mean, invStd: invStd)
        } else {
            for c in 0..<C {
                mean[c] = runningMean[c]
                invStd[c] = 1 / (runningVar[c] + eps).squareRoot()
            }
            normalize(x, y, batch: batch, mean: mean, invStd: invStd)
        }
    }

    /// y = (x - mean) * invStd * weight + bias.
    private func normalize(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int,
                           mean: UnsafePointer<Float>, invStd: UnsafePointer<Float>) {
        for s in 0..<batch {
            for c in 0..<channels {
                let scale = invStd[c] * weight[c], shift = bias[c] - mean[c] * scale
                let xp = plane(x, s, c), yp = y + (s * channels + c) * positions
                for j in 0..<positions { yp[j] = xp[j] * scale + shift }
            }
        }
    }

    /// weight and bias gradients: sum(dy * xhat) and sum(dy) over this rank's batch (the reducer sums
    /// them over ranks). dx = weight * invStd * (dy - sum(dy) / n - xhat * sum(dy * xhat) / n) with the
    /// sums and n over the global batch in training; dx = weight * invStd * dy in eval mode, where
    /// the statistics are constants. `mean` and `invStd` are the forward's (eval: the running ones).
    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, context: StepContext) {
        let C = channels, L = positions
        let parts = shardCount(context)
        for part in 0..<parts {
            let leaf = sums + part * (2 * C + 1)
            for c in 0..<C {
                var sdy = 0.0, sdyx = 0.0
                let m = mean[c], inv = invStd[c]
                for s in stride(from: part, to: batch, by: parts) {
                    let xp = plane(x, s, c), gp = plane(dy, s, c)
                    for j in 0..<L { let g = Double(gp[j]); sdy += g; sdyx += g * Double((xp[j] - m) * inv) }
                }
                leaf[c] = sdy
                leaf[C + c] = sdyx
            }
        }
        if let shards = context.splitShards {
            // Each shard's gradient is rounded to float on its own, then the float tree, as the
            // other layers' (and the reducer's, between ranks) are.
            for part in 0..<parts {
                let leaf = sums + part * (2 * C + 1)
                let wg = shards.leaf(weightGrad, shard: part), bg = shards.leaf(biasGrad, shard: part)
                if context.accumulateGradients {
                    for c in 0..<C { wg[c] += Float(leaf[C + c]); bg[c] += Float(leaf[c]) }
                } else {
                    for c in 0..<C { wg[c] = Float(leaf[C + c]); bg[c] = Float(leaf[c]) }
                }
            }
            if context.finalBackward {
                shards.combine(into: weightGrad, count: C)
                shards.combine(into: biasGrad, count: C)
            }
            treeSum(sums, parts: parts, count: 2 * C, stride: 2 * C + 1)
        } else if context.accumulateGradients {
            for c in 0..<C { weightGrad[c] += Float(sums[C + c]); biasGrad[c] += Float(sums[c]) }
        } else {
            for c in 0..<C { weightGrad[c] = Float(sums[C + c]); biasGrad[c] = Float(sums[c]) }
        }
        guard context.training else {
            guard let dx else { return }
            for s in 0..<batch {
                for c in 0..<C {
                    let k = weight[c] * invStd[c]
                    let gp = plane(dy, s, c), dp = dx + (s * C + c) * L
                    for j in 0..<L { dp[j] = gp[j] * k }
                }
            }
            return
        }
        // Every rank joins the sum, whether or not it needs dx.
        sums[2 * C] = Double(batch * L)
        context.replicas?.sum(sums, count: 2 * C + 1)
        guard let dx else { return }
        let n = sums[2 * C]
        for c in 0..<C {
            let m = mean[c], inv = invStd[c], k = weight[c] * inv
            let meanDy = Float(sums[c] / n), meanDyx = Float(sums[C + c] / n)
            for s in 0..<batch {
                let xp = plane(x, s, c), gp = plane(dy, s, c), dp = dx + (s * C + c) * L
                for j in 0..<L { dp[j] = k * (gp[j] - meanDy - (xp[j] - m) * inv * meanDyx) }
            }
        }
    }
}
