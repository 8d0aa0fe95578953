import Comm
import Engine

/// Sums the flat gradient buffer over all ranks in buckets, each started as soon as backward has
/// produced it. Backward runs from the last layer to the first, and layers reserve parameters in
/// forward order, so buckets are cut from the end of the buffer: the first bucket to be ready is the
/// one holding the last layer's gradients.
public final class GradientSync {
    let comm: Communicator
    let gradients: UnsafeMutablePointer<Float>
    /// Bucket ranges, from the end of the buffer to the start.
    public let buckets: [Range<Int>]
    private var requests: [Int]
    private var launched = 0
    private let labels: [String]

    public init(comm: Communicator, gradients: UnsafeMutablePointer<Float>, count: Int, bucketBytes: Int) {
        self.comm = comm
        self.gradients = gradients
        let per = max(1024, bucketBytes / 4)
        var b: [Range<Int>] = []
        var end = count
        while end > 0 {
            let start = max(0, end - per)
            b.append(start..<end)
            end = start
        }
        buckets = b
        requests = [Int](repeating: 0, count: b.count)
        labels = (0..<b.count).map { "allreduce(gradient bucket \($0 + 1)/\(b.count))" }
    }

    /// An error from starting a bucket during backward, thrown by `finish`.
    private var pendingError: Error?

    /// Call before backward.
    public func reset() {
        launched = 0
        pendingError = nil
    }

    /// Backward says every gradient at or after `offset` is final: start the buckets that are.
    /// Errors are kept for `finish`, so backward's callback needs no error handling.
    public func ready(from offset: Int) {
        do { try launch(from: offset) } catch { pendingError = pendingError ?? error }
    }

    private func launch(from offset: Int) throws {
        while launched < buckets.count && buckets[launched].lowerBound >= offset {
            let r = buckets[launched]
            requests[launched] = try comm.startAllreduceSum(gradients + r.lowerBound, count: r.count, what: labels[launched])
            launched += 1
        }
        if launched > 0 { try comm.progress() }
    }

    /// Starts what is left and waits for every bucket.
    public func finish() throws {
        if let pendingError { throw pendingError }
        try launch(from: 0)
        for i in 0..<buckets.count { try comm.wait(requests[i]) }
    }
}
