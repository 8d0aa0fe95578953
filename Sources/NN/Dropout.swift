import Engine

/// torch.nn.Dropout: in train mode zeroes each element with probability p and scales the rest by
/// 1/(1-p); in eval mode passes x through. The mask is a hash of (seed, step, layer, sample index,
/// element), so it is recomputed in backward rather than stored, is the same on any number of
/// ranks, and needs no RNG state in a checkpoint.
public class Dropout: ShapePreserving, KeyedRandomness {
    public let p: Float
    public let shape: Shape
    /// Distinguishes the masks of several Dropout layers in one model.
    public var randomnessIndex: UInt64 = 0
    /// Consecutive elements that share one draw: 1 here, a channel's H*W in Dropout2d.
    let elementsPerDraw: Int

    init(p: Float, shape: Shape, elementsPerDraw: Int) {
        precondition(p >= 0 && p < 1, "Dropout p must be in [0, 1)")
        self.p = p
        self.shape = shape
        self.elementsPerDraw = elementsPerDraw
    }

    public convenience init(p: Float, shape: Shape) { self.init(p: p, shape: shape, elementsPerDraw: 1) }

    public var typeName: String { "Dropout(p=\(p))" }

    @inline(__always)
    private func apply(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, batch: Int, context: StepContext) {
        let n = shape.count
        guard context.training, p > 0 else {
            if UnsafePointer(dst) != src { dst.update(from: src, count: batch * n) }
            return
        }
        let scale = 1 / (1 - p), run = elementsPerDraw
        for r in 0..<batch {
            let sample = UInt64(UInt32(bitPattern: context.sampleIDs?[r] ?? Int32(r)))
            let key = CounterRandom.key(context.seed, context.step, randomnessIndex, sample)
            var o = r * n
            for draw in 0..<(n / run) {
                let keep = CounterRandom.unitFloat(key: key, counter: UInt64(draw)) >= p
                for j in o..<(o + run) { dst[j] = keep ? src[j] * scale : 0 }
                o += run
            }
        }
    }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, context: StepContext) {
        apply(x, y, batch: batch, context: context)
    }

    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, context: StepContext) {
        guard let dx else { return }
        apply(dy, dx, batch: batch, context: context)
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
