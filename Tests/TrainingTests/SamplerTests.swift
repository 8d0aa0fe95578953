import Training
import XCTest

final class SamplerTests: XCTestCase {
    /// Every rank's part of global batch b, reassembled by position (rank r holds r, r+W, ...).
    func globalBatches(count: Int, globalBatch: Int, world: Int, epoch: Int, shuffle: Bool = true, dropLast: Bool = false) -> [[Int32]] {
        let samplers = (0..<world).map {
            Sampler(datasetCount: count, perRankBatch: globalBatch / world, rank: $0, world: world, seed: 11, shuffle: shuffle, dropLast: dropLast)
        }
        var out: [[Int32]] = []
        var buffer = [Int32](repeating: -1, count: globalBatch)
        for s in samplers { s.startEpoch(epoch) }
        for b in 0..<samplers[0].batchesPerEpoch {
            var batch: [Int32] = []
            var parts: [[Int32]] = []
            var global = -1
            for s in samplers {
                let (k, g) = s.fill(batch: b, into: &buffer)
                if global >= 0 { XCTAssertEqual(g, global, "every rank agrees on the global batch size") }
                global = g
                parts.append(Array(buffer[0..<k]))
            }
            for p in 0..<global { batch.append(parts[p % world][p / world]) }
            out.append(batch)
        }
        return out
    }

    func testEpochOrderIsIndependentOfWorldSize() {
        for shuffle in [true, false] {
            for epoch in 0..<2 {
                let one = globalBatches(count: 1000, globalBatch: 64, world: 1, epoch: epoch, shuffle: shuffle)
                XCTAssertEqual(globalBatches(count: 1000, globalBatch: 64, world: 2, epoch: epoch, shuffle: shuffle), one)
                XCTAssertEqual(globalBatches(count: 1000, globalBatch: 64, world: 4, epoch: epoch, shuffle: shuffle), one)
            }
        }
        let e0 = globalBatches(count: 1000, globalBatch: 64, world: 1, epoch: 0)
        let e1 = globalBatches(count: 1000, globalBatch: 64, world: 1, epoch: 1)
        XCTAssertNotEqual(e0, e1, "each epoch has its own order")
        XCTAssertEqual(globalBatches(count: 10, globalBatch: 4, world: 1, epoch: 0, shuffle: false).flatMap { $0 }, Array(0..<10))
    }

    func testUnevenLastBatchUsesEverySampleOnce() {
        // 1000 samples, 3 ranks, per-rank batch 64: the last global batch has 40 samples.
        let samplers = (0..<3).map { Sampler(datasetCount: 1000, perRankBatch: 64, rank: $0, world: 3, seed: 5) }
        var seen = [Int](repeating: 0, count: 1000)
        var buffer = [Int32](repeating: 0, count: 64)
        XCTAssertEqual(samplers[0].batchesPerEpoch, 6)
        for s in samplers {
            s.startEpoch(0)
            for b in 0..<s.batchesPerEpoch {
                let (k, g) = s.fill(batch: b, into: &buffer)
                XCTAssertEqual(g, b == 5 ? 40 : 192)
                for i in 0..<k { seen[Int(buffer[i])] += 1 }
            }
        }
        XCTAssertEqual(seen, [Int](repeating: 1, count: 1000))
    }

    func testRankWithNoSamplesInLastBatch() {
        // 5 samples, 4 ranks of batch 1: the second batch has one sample; ranks 1-3 get none.
        let s = Sampler(datasetCount: 5, perRankBatch: 1, rank: 3, world: 4, seed: 1)
        s.startEpoch(0)
        var buffer: [Int32] = [0]
        XCTAssertEqual(s.fill(batch: 1, into: &buffer).local, 0)
        XCTAssertEqual(s.fill(batch: 1, into: &buffer).global, 1)
    }

    func testDropLastAndSharding() {
        let s = Sampler(datasetCount: 1000, perRankBatch: 64, rank: 0, world: 3, seed: 1, dropLast: true)
        XCTAssertEqual(s.batchesPerEpoch, 5)
        // Sharded: rank 1 of 4 only ever reads its contiguous quarter.
        let shard = Sampler(datasetCount: 1000, perRankBatch: 32, rank: 1, world: 4, seed: 1, shardData: true)
        XCTAssertEqual(shard.shardRange, 250..<500)
        shard.startEpoch(0)
        var buffer = [Int32](repeating: 0, count: 32)
        var seen = Set<Int32>()
        for b in 0..<shard.batchesPerEpoch {
            let (k, _) = shard.fill(batch: b, into: &buffer)
            seen.formUnion(buffer[0..<k])
        }
        XCTAssertEqual(seen, Set((250..<500).map { Int32($0) }))
    }
}
