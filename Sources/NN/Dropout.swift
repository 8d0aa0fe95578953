import Engine

/// torch.nn.Dropout: in train mode zeroes each element with probability p and scales the rest by
/// 1/(1-p); in eval mode passes x through. The mask is a hash of (seed, step, layer, sample index,
/// element), so it is recomputed in backward rather than stored, is the same on any number of
/// ranks, and needs no RNG state in a checkpoint.
public final class Dropout: ShapePreserving, KeyedRandomness {
    public let p: Float
    public let shape: Shape
    /// Distinguishes the masks of several Dropout layers in one model.
    public var randomnessIndex: UInt64 = 0

    public init(p: Float, shape: Shape) {
        precondition(p >= 0 && p < 1, "Dropout p must be in [0, 1)")
        self.p = p
        self.shape = shape
    }

    public var typeName: String { "Dropout(p=\(p))" }

    @inline(__always)
    private func apply(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, batch: Int, context: StepContext) {
        let n = shape.count
        guard context.training, p > 0 else {
            if UnsafePointer(dst) != src { dst.update(from: src, count: batch * n) }
            return
        }
        let scale = 1 / (1 - p)
        for r in 0..<batch {
            let sample = UInt64(UInt32(bitPattern: context.sampleIDs?[r] ?? Int32(r)))
            let key = CounterRandom.key(context.seed, context.step, randomnessIndex, sample)
            for j in 0..<n {
                let keep = CounterRandom.unitFloat(key: key, counter: UInt64(j)) >= p
                dst[r * n + j] = keep ? src[r * n + j] * scale : 0
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

/// torch.nn.Dropout2d: in train mode zeroes each whole channel of a (C, H, W) sample with
/// probability p and scales the rest by 1/(1-p). The mask is keyed as Dropout's, one draw per
/// (sample, channel).
public final class Dropout2d: ShapePreserving, KeyedRandomness {
    public let p: Float
    public let shape: Shape
    public var randomnessIndex: UInt64 = 0

    public init(p: Float, shape: Shape) {
        precondition(p >= 0 && p < 1, "Dropout2d p must be in [0, 1)")
        self.p = p
        self.shape = shape
    }

    public var typeName: String { "Dropout2d(p=\(p))" }

    @inline(__always)
    private func apply(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, batch: Int, context: StepContext) {
        let n = shape.count
        guard context.training, p > 0 else {
            if UnsafePointer(dst) != src { dst.update(from: src, count: batch * n) }
            return
        }
        let channels = shape.dims[0], plane = n / channels
        let scale = 1 / (1 - p)
        for r in 0..<batch {
            let sample = UInt64(UInt32(bitPattern: context.sampleIDs?[r] ?? Int32(r)))
            let key = CounterRandom.key(context.seed, context.step, randomnessIndex, sample)
            for c in 0..<channels {
                let keep = CounterRandom.unitFloat(key: key, counter: UInt64(c)) >= p
                let o = r * n + c * plane
                if keep { for j in 0..<plane { dst[o + j] = src[o + j] * scale } } else { (dst + o).update(repeating: 0, count: plane) }
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
