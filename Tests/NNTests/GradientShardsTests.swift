import Engine
import NN
import XCTest

/// `--invariant-shards`: a layer's parameter gradient over a batch cut into shards is, bit for bit,
/// the fixed tree over the gradients of each shard's samples on their own; the reducer's sum over
/// ranks follows the same tree. Together these make the sum independent of the number of ranks
/// (the end-to-end check is ConvNetTests' resnet8 on 1, 2 and 4 ranks).
final class GradientShardsTests: XCTestCase {
    let batch = 11  // shards of 3, 3, 3 and 2 samples: a ragged last shard
    let shards = 4

    /// The layer's gradients over `batch` samples with 4 shards, against: each shard's samples
    /// (j, j + 4, ...) gathered into a batch of their own through an identical layer without shards,
    /// combined as (g0 + g2) + (g1 + g3). With `passes` > 1 (gradient accumulation), each shard's
    /// leaf accumulates the passes as the plain layer accumulates, and only the last pass combines.
    func checkLeavesAndTree(_ make: () -> Layer, forwardFirst: Bool = false, passes: Int = 1, file: StaticString = #filePath, line: UInt = #line) {
        let layer = make(), plain = make()
        let store = ParameterStore(gradientShards: shards)
        layer.reserve(in: store, prefix: "", maxBatch: batch)
        store.seal()
        layer.bind(to: store)
        let plainStore = plain.standaloneStore(maxBatch: batch)
        var rng = RandomStream(seed: 3)
        layer.resetParameters(rng: &rng)
        plainStore.parameters.pointer.update(from: store.parameters.pointer, count: store.count)
        plainStore.buffers.pointer.update(from: store.buffers.pointer, count: store.bufferCount)
        let n = layer.inputShape.count, m = layer.outputShape.count
        let x = (0..<batch * n).map { _ in rng.uniform(-1, 1) }
        var y = [Float](repeating: 0, count: batch * m), plainY = y
        let sharded = GradientShards(count: shards, planes: store.shardPlanes.pointer, gradients: store.gradients.pointer, gradientCount: store.count)
        layer.forward(x, &y, batch: batch, context: StepContext(training: true, shards: sharded))
        // BatchNorm's backward uses the forward's statistics: the plain layer sees the whole batch too.
        if forwardFirst { plain.forward(x, &plainY, batch: batch, context: StepContext(training: true)) }

        var leaves = [[Float]](repeating: [Float](repeating: 0, count: store.count), count: shards)
        for pass in 0..<passes {
            let dy = (0..<batch * m).map { _ in rng.uniform(-1, 1) }
            var g = dy
            let context = StepContext(training: true, accumulateGradients: pass > 0, shards: sharded, finalBackward: pass == passes - 1)
            g.withUnsafeMutableBufferPointer { layer.backward(x: x, y: y, dy: $0.baseAddress!, dx: nil, batch: batch, context: context) }
            // This pass's leaves, one shard at a time through the plain layer, with the outputs the
            // sharded layer computed.
            for j in 0..<shards {
                let rows = Array(stride(from: j, to: batch, by: shards))
                let xs = rows.flatMap { x[$0 * n ..< ($0 + 1) * n] }
                var gs = rows.flatMap { dy[$0 * m ..< ($0 + 1) * m] }
                let ys = rows.flatMap { y[$0 * m ..< ($0 + 1) * m] }
                // A later pass accumulates into the shard's leaf, as the plain layer accumulates.
                plainStore.gradients.pointer.update(from: leaves[j], count: store.count)
                gs.withUnsafeMutableBufferPointer {
                    plain.backward(x: xs, y: ys, dy: $0.baseAddress!, dx: nil, batch: rows.count,
                                   context: StepContext(training: true, accumulateGradients: pass > 0))
                }
                leaves[j] = Array(UnsafeBufferPointer(start: plainStore.gradients.pointer, count: store.count))
            }
        }
        for i in 0..<store.count {
            let expected = (leaves[0][i] + leaves[2][i]) + (leaves[1][i] + leaves[3][i])
            if store.gradients[i].bitPattern != expected.bitPattern {
                return XCTFail("gradient \(i): \(store.gradients[i]), the tree of the shards' gradients gives \(expected)", file: file, line: line)
            }
        }
    }

    func testLinear() { checkLeavesAndTree { Linear(7, 5) } }
    func testLinearFusedTanhAccumulating() {
        checkLeavesAndTree({ let l = Linear(6, 4); _ = l.fuse(.tanh); return l }, passes: 3)
    }
    func testConv2d() { checkLeavesAndTree { Conv2d(input: Shape(2, 5, 5), outChannels: 3, kernel: 3, padding: 1)! } }
    func testConv2dFusedReLUNoBias() {
        checkLeavesAndTree { let c = Conv2d(input: Shape(2, 4, 4), outChannels: 3, kernel: 3, stride: 2, bias: false)!; _ = c.fuse(.relu); return c }
    }
    func testConv2dWinogradFusedTanhAccumulating() {
        checkLeavesAndTree({ let c = Conv2d(input: Shape(8, 5, 4), outChannels: 8, kernel: 3, padding: 1)!; _ = c.fuse(.tanh); return c },
                           passes: 2)
    }
    func testBatchNorm2d() { checkLeavesAndTree({ BatchNorm(input: Shape(3, 4, 4))! }, forwardFirst: true) }
    func testConv2dAndBatchNormAccumulating() {
        checkLeavesAndTree({ Conv2d(input: Shape(2, 4, 5), outChannels: 2, kernel: 2)! }, passes: 2)
        checkLeavesAndTree({ BatchNorm(input: Shape(2, 3))! }, forwardFirst: true, passes: 2)
    }

    /// More shards than samples: the empty ones add zeros.
    func testEmptyShardsAddNothing() {
        let layer = Linear(3, 2), store = ParameterStore(gradientShards: 8)
        layer.reserve(in: store, prefix: "", maxBatch: 2)
        store.seal()
        layer.bind(to: store)
        store.shardPlanes.pointer.update(repeating: .nan, count: store.shardPlanes.count)  // stale values must not leak
        let shards = GradientShards(count: 8, planes: store.shardPlanes.pointer, gradients: store.gradients.pointer, gradientCount: store.count)
        let x: [Float] = [1, 2, 3, 4, 5, 6], dy: [Float] = [1, -1, 2, 0.5]
        var g = dy
        g.withUnsafeMutableBufferPointer {
            layer.backward(x: x, y: x, dy: $0.baseAddress!, dx: nil, batch: 2, context: StepContext(training: true, shards: shards))
        }
        let expected: [Float] = [9, 12, 15, 1, 0.5, 0]  // rows (1, 2, 3) and (4, 5, 6) times dy (1, -1) and (2, 0.5)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: layer.weightGrad, count: 6)), expected)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: layer.biasGrad!, count: 2)), [3, -0.5])
    }

    /// The tree, in doubles (BatchNorm's statistics between shards and ranks).
    func testTreeSumOrder() {
        // 1e16 + 1 - 1e16 depends on the order: (a0 + a2) + (a1 + a3) = (1e16 - 1e16) + (1 + 1) = 2.
        var values: [Double] = [1e16, 1, -1e16, 1]
        values.withUnsafeMutableBufferPointer { treeSum($0.baseAddress!, parts: 4, count: 1, stride: 1) }
        XCTAssertEqual(values[0], 2)
        var inOrder: [Double] = [1e16, 1, -1e16, 1]
        inOrder.withUnsafeMutableBufferPointer { treeSum($0.baseAddress!, parts: 3, count: 1, stride: 1) }
        XCTAssertEqual(inOrder[0], 0, "not a power of 2: in order, ((1e16 + 1) - 1e16) = 0")
    }
}
