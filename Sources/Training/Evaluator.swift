import Comm
import Data
import Engine
import NN

/// Exact full-set evaluation on any number of ranks: rank r evaluates the r-th contiguous 1/W of the
/// set, forward only in eval mode, and the loss sums and confusion counts are summed over all ranks.
/// Every rank joins the same single all-reduce, so none can be left waiting for rank 0.
public enum Evaluator {
    public static func evaluate(model: Sequential, loss: Loss, dataset: Dataset, comm: Communicator,
                                indices: UnsafeMutablePointer<Int32>, labels: UnsafeMutablePointer<Int32>) throws -> EvalResult {
        let classes = model.classes
        let mine = Sampler.shard(dataset.count, rank: comm.rank, world: comm.size)
        // [loss sum, confusion counts...] reduced in one call.
        var totals = [Double](repeating: 0, count: 1 + classes * classes)
        var start = mine.lowerBound
        while start < mine.upperBound {
            let k = min(model.maxBatch, mine.upperBound - start)
            for j in 0..<k { indices[j] = Int32(start + j) }
            dataset.gather(indices, count: k, into: model.input, labels: labels)
            model.forward(batch: k, context: .eval)
            totals[0] += loss.evaluate(model.output, labels: labels, batch: k, classes: classes, gradScale: 0, grad: nil)
            let out = model.output
            for r in 0..<k {
                totals[1 + Int(labels[r]) * classes + argmax(out + r * classes, classes)] += 1
            }
            start += k
        }
        try comm.allreduceSum(&totals, what: "allreduce(evaluation)")
        var confusion = ConfusionMatrix(classes: classes)
        confusion.counts = Array(totals[1...])
        return EvalResult(loss: dataset.count > 0 ? totals[0] / Double(dataset.count) : 0, confusion: confusion)
    }
}

@inline(__always)
public func argmax(_ x: UnsafePointer<Float>, _ n: Int) -> Int {
    var best = 0
    for i in 1..<n where x[i] > x[best] { best = i }
    return best
}
