import Engine

/// torch.nn.Dropout: in train mode zeroes each element with probability p and scales the rest by
/// 1/(1-p); in eval mode passes x through. The mask is a hash of (seed, step, layer, sample index,
/// element), so it is the same on any number of ranks and needs no RNG state in a checkpoint.
/// Forward keeps it (a byte per draw, in workspace) for backward, which would otherwise hash again.
public class Dropout: ShapePreserving, KeyedRandomness {
    /// The identity at inference (Dropout2d too).
    public func export(_ x: String, prefix: String, into graph: inout InferenceGraph) -> String { x }

    public let p: Float
    public let shape: Shape
    /// Distinguishes the masks of several Dropout layers in one model.
    public var randomnessIndex: UInt64 = 0
    /// Consecutive elements that share one draw: 1 here, a channel's H*W in Dropout2d.
    let elementsPerDraw: Int
    private var maskOffset = 0
    /// 1 where the last training forward kept the draw, 0 where it dropped it.
    private var mask: UnsafeMutablePointer<UInt8>!

    init(p: Float, shape: Shape, elementsPerDraw: Int) {
        precondition(p >= 0 && p < 1, "Dropout p must be in [0, 1)")
        self.p = p
        self.shape = shape
        self.elementsPerDraw = elementsPerDraw
    }

    public convenience init(p: Float, shape: Shape) { self.init(p: p, shape: shape, elementsPerDraw: 1) }

    public var typeName: String { "Dropout(p=\(p))" }

    private var draws: Int { shape.count / elementsPerDraw }

    public func reserve(in store: ParameterStore, prefix: String, maxBatch: Int) {
        maskOffset = store.reserveWorkspace((maxBatch * draws + 3) / 4)
    }

    public func bind(to store: ParameterStore) {
        mask = UnsafeMutableRawPointer(store.workspacePointer(maskOffset)).assumingMemoryBound(to: UInt8.self)
    }

    /// dst = src where the mask keeps, scaled by 1/(1-p), else 0.
    @inline(__always)
    private func applyMask(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, batch: Int) {
        let scale = 1 / (1 - p), run = elementsPerDraw
        if run == 1 {  // one draw per element: one flat vectorized pass
            return Kernels.applyMask(mask, src, dst, count: batch * draws, scale: scale)
        }
        for d in 0..<(batch * draws) {
            let keep = mask[d] != 0
            let o = d * run
            for j in o..<(o + run) { dst[j] = keep ? src[j] * scale : 0 }
        }
    }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, context: StepContext) {
        guard context.training, p > 0 else {
            if UnsafePointer(y) != x { y.update(from: x, count: batch * shape.count) }
            return
        }
        let draws = draws
        for r in 0..<batch {
            let sample = UInt64(UInt32(bitPattern: context.sampleIDs?[r] ?? Int32(r)))
            let key = CounterRandom.key(context.seed, context.step, randomnessIndex, sample)
            CounterRandom.mask(mask + r * draws, key: key, count: draws, keepAbove: p)
        }
        applyMask(x, y, batch: batch)
    }

    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, context: StepContext) {
        guard let dx else { return }
        guard context.training, p > 0 else {
            if UnsafePointer(dx) != dy { dx.update(from: dy, count: batch * shape.count) }
            return
        }
        applyMask(dy, dx, batch: batch)
    }
}

/// torch.nn.Dropout2d: zeroes whole channels of a (C, H, W) sample, one draw per (sample, channel),
/// keyed as Dropout's.
public final class Dropout2d: Dropout {
    public init(p: Float, shape: Shape) {
        super.init(p: p, shape: shape, elementsPerDraw: shape.count / shape.dims[0])
    }

    override public var typeName: String { "Dropout2d(p=\(p))" }
}
