import Comm
import NN

/// Synchronized BatchNorm's cross-rank sums, over the communicator: a blocking all-reduce that every
/// rank joins at the same point of every forward and backward. Layers cannot throw mid-pass, so an
/// error is kept and thrown by `throwPending` after the pass.
///
/// `inTreeOrder` (`--invariant-shards`): the sum follows `GradientShards`' tree over the ranks, not
/// MPI's order: every rank gathers all ranks' values and sums them in the tree itself. Two ranks
/// need no gather: a + b is b + a.
final class CommReplicaSum: CrossReplicaSum {
    let comm: Communicator
    let inTreeOrder: Bool
    private var pending: Error?
    /// Every rank's values (inTreeOrder), allocated on the first sum, grown for a larger BatchNorm.
    private var gathered: UnsafeMutablePointer<Double>?
    private var gatheredCapacity = 0

    init(comm: Communicator, inTreeOrder: Bool) {
        self.comm = comm
        self.inTreeOrder = inTreeOrder && comm.size > 2
    }

    deinit { gathered?.deallocate() }

    func sum(_ values: UnsafeMutablePointer<Double>, count: Int) {
        guard pending == nil else { return }
        do {
            guard inTreeOrder else {
                return try comm.allreduceSum(values, count: count, what: "allreduce(BatchNorm statistics)")
            }
            let w = comm.size
            if gatheredCapacity < count {  // once per model size: the largest BatchNorm's first pass
                gathered?.deallocate()
                gathered = .allocate(capacity: w * count)
                gatheredCapacity = count
            }
            let buffer = gathered!
            try comm.allgather(values, count: count, into: buffer, what: "allgather(BatchNorm statistics)")
            treeSum(buffer, parts: w, count: count, stride: count)
            values.update(from: buffer, count: count)
        } catch {
            pending = error
        }
    }

    func throwPending() throws {
        if let error = pending {
            pending = nil
            throw error
        }
    }
}
