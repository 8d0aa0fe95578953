import Comm
import NN

/// Synchronized BatchNorm's cross-rank sums, over the communicator: a blocking all-reduce that every
/// rank joins at the same point of every forward and backward. Layers cannot throw mid-pass, so an
/// error is kept and thrown by `throwPending` after the pass.
///
/// `inTreeOrder` (`--invariant-shards`): the sum follows `GradientShards`' tree over the ranks, not
/// MPI's order. Each rank puts its values in its own slot of a W-slot buffer, zeros elsewhere; the
/// all-reduce then adds each value only to zeros (exact in any order) and every rank sums the slots
/// in the tree. Two ranks need no slots: a + b is b + a.
final class CommReplicaSum: CrossReplicaSum {
    let comm: Communicator
    let inTreeOrder: Bool
    private var pending: Error?
    private var slots: UnsafeMutablePointer<Double>?
    private var slotCapacity = 0

    init(comm: Communicator, inTreeOrder: Bool) {
        self.comm = comm
        self.inTreeOrder = inTreeOrder && comm.size > 2
    }

    deinit { slots?.deallocate() }

    func sum(_ values: UnsafeMutablePointer<Double>, count: Int) {
        guard pending == nil else { return }
        do {
            guard inTreeOrder else {
                return try comm.allreduceSum(values, count: count, what: "allreduce(BatchNorm statistics)")
            }
            let w = comm.size
            if slotCapacity < count {  // once per model size: the largest BatchNorm's first pass
                slots?.deallocate()
                slots = .allocate(capacity: w * count)
                slotCapacity = count
            }
            let buffer = slots!
            buffer.update(repeating: 0, count: w * count)
            (buffer + comm.rank * count).update(from: values, count: count)
            try comm.allreduceSum(buffer, count: w * count, what: "allreduce(BatchNorm statistics)")
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
