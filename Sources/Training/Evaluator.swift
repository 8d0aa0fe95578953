import Comm
import Data
import Engine
import NN

/// Exact full-set evaluation on any number of ranks: rank r evaluates the r-th contiguous 1/W of the
/// set, forward only in eval mode, and the task's sums (loss, confusion counts or error sums) are
/// summed over all ranks. Every rank joins the same single all-reduce, so none can be left waiting
/// for rank 0.
public enum Evaluator {
    public static func evaluate(model: Sequential, task: Task, dataset: Dataset, comm: Communicator,
                                indices: UnsafeMutablePointer<Int32>, targets: TargetBuffer) throws -> EvalResult {
        let mine = Sampler.shard(dataset.count, rank: comm.rank, world: comm.size)
        var totals = [Double](repeating: 0, count: task.evalSlots)
        var start = mine.lowerBound
        while start < mine.upperBound {
            let k = min(model.maxBatch, targets.capacity, mine.upperBound - start)
            for j in 0..<k { indices[j] = Int32(start + j) }
            dataset.gather(indices, count: k, into: model.input, targets: targets)
            model.forward(batch: k, context: .eval)
            task.accumulate(model.output, targets: targets, batch: k, into: &totals)
            start += k
        }
        try comm.allreduceSum(&totals, what: "allreduce(evaluation)")
        return task.result(totals, count: dataset.count)
    }
}
