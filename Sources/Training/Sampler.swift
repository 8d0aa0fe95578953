import Engine

/// Decides which samples each rank takes in each step.
///
/// Default (global) mode: the epoch order is a permutation seeded by (seed, epoch) alone, never by the
/// number of ranks. Global batch i is block i of that order (`globalBatch` = per-rank batch x ranks).
/// Rank r takes positions r, r+W, r+2W, ... of the block, so the union over ranks is exactly the
/// single-process batch. The last partial block is kept unless `dropLast`; a rank may then get
/// fewer samples, or none, and still joins every collective.
///
/// Shard mode (`--shard-data`): rank r keeps only the contiguous r-th 1/W of the training set and
/// shuffles within it; a step takes `perRankBatch` samples from each rank's shard. Results then
/// depend on W.
public final class Sampler {
    public let datasetCount: Int
    public let perRankBatch: Int
    public let rank: Int
    public let world: Int
    public let shuffle: Bool
    public let dropLast: Bool
    public let shardData: Bool
    public let seed: UInt64
    /// The range of dataset indices this rank may read (all of them unless sharded).
    public let shardRange: Range<Int>
    private var order: [Int32]
    public private(set) var epoch = -1

    public init(datasetCount: Int, perRankBatch: Int, rank: Int, world: Int, seed: UInt64,
                shuffle: Bool = true, dropLast: Bool = false, shardData: Bool = false) {
        self.datasetCount = datasetCount
        self.perRankBatch = perRankBatch
        self.rank = rank
        self.world = world
        self.seed = seed
        self.shuffle = shuffle
        self.dropLast = dropLast
        self.shardData = shardData
        shardRange = shardData ? Sampler.shard(datasetCount, rank: rank, world: world) : 0..<datasetCount
        order = Array(shardRange.lowerBound..<shardRange.upperBound).map { Int32($0) }
    }

    static func shard(_ n: Int, rank: Int, world: Int) -> Range<Int> { (n * rank / world)..<(n * (rank + 1) / world) }

    public var globalBatch: Int { perRankBatch * world }

    /// Optimizer steps in one epoch, the same on every rank.
    public var batchesPerEpoch: Int {
        if shardData {
            // The largest shard sets the count; ranks whose shard is used up contribute nothing.
            let largest = Sampler.shard(datasetCount, rank: world - 1, world: world).count
            let smallest = Sampler.shard(datasetCount, rank: 0, world: world).count
            return dropLast ? smallest / perRankBatch : (largest + perRankBatch - 1) / perRankBatch
        }
        return dropLast ? datasetCount / globalBatch : (datasetCount + globalBatch - 1) / globalBatch
    }

    /// Samples per epoch over all ranks (what `Processed x/y` counts).
    public var samplesPerEpoch: Int { dropLast ? batchesPerEpoch * globalBatch : datasetCount }

    /// The epoch order: dataset indices in the order they are consumed. Allocation-free after init.
    public func startEpoch(_ e: Int) {
        guard e != epoch else { return }
        epoch = e
        for i in 0..<order.count { order[i] = Int32(shardRange.lowerBound + i) }
        guard shuffle else { return }
        var rng = RandomStream(seed: seed, stream: 0xE90C_0000 &+ UInt64(e) &* 0x1_0000 &+ (shardData ? UInt64(rank) : 0))
        var i = order.count - 1
        while i > 0 {
            let j = Int(rng.next() % UInt64(i + 1))
            order.swapAt(i, j)
            i -= 1
        }
    }

    /// Writes this rank's dataset indices for batch `b` of the current epoch into `out` (room for
    /// `perRankBatch`) and returns (local count, global batch size).
    public func fill(batch b: Int, into out: UnsafeMutablePointer<Int32>) -> (local: Int, global: Int) {
        if shardData {
            var global = 0
            for r in 0..<world {
                let n = Sampler.shard(datasetCount, rank: r, world: world).count
                global += max(0, min(perRankBatch, n - b * perRankBatch))
            }
            let start = b * perRankBatch
            let k = max(0, min(perRankBatch, order.count - start))
            for j in 0..<k { out[j] = order[start + j] }
            return (k, global)
        }
        let start = b * globalBatch
        let global = min(globalBatch, datasetCount - start)
        var k = 0
        var p = rank
        while p < global {
            out[k] = order[start + p]
            k += 1
            p += world
        }
        return (k, global)
    }
}
