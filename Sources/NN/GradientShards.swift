import Engine

/// Sums over the batch in an order that does not depend on the number of ranks (`--invariant-shards Q`).
///
/// Float addition is not associative, so a gradient summed over 32 samples on one rank and the same
/// gradient summed as two 16-sample halves on two ranks differ in the last bits; a network with
/// BatchNorm amplifies such differences within tens of steps. Here every sum over the samples of a
/// global batch has one fixed shape, whatever the number of ranks W:
///
/// - The global batch is cut into Q **shards**: shard q holds positions q, q + Q, q + 2Q, ... of the
///   global batch. Rank r of W holds positions r, r + W, ... (the sampler's split), so it holds the
///   Q / W shards q = r + jW, and its local shard j is its samples j, j + Q/W, j + 2Q/W, ...
/// - A layer sums each shard on its own, from zero, in sample order: the **leaf**, the same
///   computation on any number of ranks.
/// - Leaves are combined in one fixed binary tree: the sum over shards q ≡ a (mod m) is the sum over
///   q ≡ a (mod 2m) plus the sum over q ≡ a + m (mod 2m). A rank's Q / W shards (q ≡ r mod W) form
///   a subtree; what remains above the ranks is the same tree over the ranks' sums (`treeSum`), which
///   the shared-memory reducer and synchronized BatchNorm follow.
///
/// With W a power of 2 that divides Q, the trained weights are then bitwise those of one rank.
/// `count` is this rank's Q / W; `planes` holds one gradient-sized plane per local shard.
public struct GradientShards {
    /// Local shards (Q / W), a power of 2.
    public let count: Int
    private let planes: UnsafeMutablePointer<Float>
    private let planeStride: Int
    private let gradients: UnsafeMutablePointer<Float>

    /// `planes`: `count` x `gradientCount` floats; `gradients`: the store's gradient buffer, where
    /// every layer's gradient pointers point.
    public init(count: Int, planes: UnsafeMutablePointer<Float>, gradients: UnsafeMutablePointer<Float>, gradientCount: Int) {
        precondition(count >= 1 && count & (count - 1) == 0, "shards must be a power of 2")
        self.count = count
        self.planes = planes
        planeStride = gradientCount
        self.gradients = gradients
    }

    /// Where shard `j`'s leaf of the gradient at `g` (a pointer into the store's gradients) goes.
    @inline(__always)
    public func leaf(_ g: UnsafeMutablePointer<Float>, shard j: Int) -> UnsafeMutablePointer<Float> {
        planes + j * planeStride + (g - gradients)
    }

    /// Number of local samples in shard `j` (samples j, j + count, j + 2 count, ...).
    @inline(__always)
    public func size(_ j: Int, of batch: Int) -> Int { j < batch ? (batch - j + count - 1) / count : 0 }

    /// Writes the fixed tree over the leaves of `n` values at `g` into `g`; the leaves are consumed.
    /// With gradient accumulation, the micro-batches add into the leaves (each shard's sum runs on
    /// in sample order, as on any number of ranks) and only the step's last backward combines them.
    public func combine(into g: UnsafeMutablePointer<Float>, count n: Int) {
        let root = leaf(g, shard: 0)
        treeSum(root, parts: count, count: n, stride: planeStride)
        g.update(from: root, count: n)
    }
}

/// Sums `parts` blocks of `n` values, `stride` apart, into the first, in `GradientShards`' tree:
/// parts a and a + parts/2 first, and so on down (a power-of-2 `parts`; any other count sums in order).
/// The shards' float leaves, BatchNorm's double statistics, and the ranks' statistics after a gather.
@inlinable
public func treeSum<T: FloatingPoint>(_ blocks: UnsafeMutablePointer<T>, parts: Int, count n: Int, stride: Int) {
    guard parts > 1 else { return }
    if parts & (parts - 1) != 0 {
        for p in 1..<parts { for i in 0..<n { blocks[i] += blocks[p * stride + i] } }
        return
    }
    var m = parts / 2
    while m >= 1 {
        for a in 0..<m {
            let to = blocks + a * stride, from = blocks + (a + m) * stride
            for i in 0..<n { to[i] += from[i] }
        }
        m /= 2
    }
}
