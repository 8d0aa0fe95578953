import Comm
import NN

/// Synchronized BatchNorm's cross-rank sums, over the communicator: a blocking all-reduce that every
/// rank joins at the same point of every forward and backward. Layers cannot throw mid-pass, so an
/// error is kept and thrown by `throwPending` after the pass.
final class CommReplicaSum: CrossReplicaSum {
    let comm: Communicator
    private var pending: Error?

    init(comm: Communicator) { self.comm = comm }

    func sum(_ values: UnsafeMutablePointer<Double>, count: Int) {
        guard pending == nil else { return }
        do { try comm.allreduceSum(values, count: count, what: "allreduce(BatchNorm statistics)") } catch { pending = error }
    }

    func throwPending() throws {
        if let error = pending {
            pending = nil
            throw error
        }
    }
}
