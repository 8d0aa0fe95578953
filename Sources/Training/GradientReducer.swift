import Comm
import Engine
import Foundation

/// Sums every rank's gradients. Backward writes this rank's gradients into the model's gradient
/// buffer and calls `ready(from:)` as layers finish; after `finish()`, `summed` holds the sum over
/// all ranks, which every rank's optimizer then applies.
public protocol GradientReducer: AnyObject {
    /// For the run header.
    var description: String { get }
    func reset()
    /// Every gradient at or after `offset` is final.
    func ready(from offset: Int)
    func finish() throws
    var summed: UnsafePointer<Float> { get }
}

/// Sums the flat gradient buffer in place with MPI non-blocking all-reduces, in buckets, each
/// started as soon as backward has produced it. Backward runs from the last layer to the first and
/// layers reserve parameters in forward order, so buckets are cut from the end of the buffer.
public final class BucketAllreduce: GradientReducer {
    let comm: Communicator
    let gradients: UnsafeMutablePointer<Float>
    /// Bucket ranges, from the end of the buffer to the start.
    public let buckets: [Range<Int>]
    private var requests: [Int]
    private var launched = 0
    private let labels: [String]
    /// An error from starting a bucket during backward, thrown by `finish`.
    private var pendingError: Error?

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

    public var description: String {
        "MPI_Iallreduce in \(buckets.count) bucket\(buckets.count == 1 ? "" : "s"), overlapped with backward"
    }

    public var summed: UnsafePointer<Float> { UnsafePointer(gradients) }

    public func reset() {
        launched = 0
        pendingError = nil
    }

    /// Starts the buckets that are complete. Errors are kept for `finish`, so backward's callback
    /// needs no error handling.
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

/// Sums gradients through node-shared memory (an MPI-3 shared window) when every rank runs on one
/// machine. Each rank's backward writes straight into its own segment of the window; then rank r
/// sums slice r of the buffer over all ranks' segments, in rank order, into a second shared window
/// that holds the whole sum once for the node; every rank's optimizer reads it. Per step each rank
/// reads the gradient buffer's size once and writes 1/W of it, with no copies and two barriers,
/// where an all-reduce copies every byte through MPI's transport.
public final class SharedMemoryReduce: GradientReducer {
    let comm: Communicator
    let segments: [UnsafeMutablePointer<Float>]
    let sum: UnsafeMutablePointer<Float>
    let slice: Range<Int>

    /// nil when the ranks do not share one machine's memory, or when any rank could not map the
    /// shared windows (a small /dev/shm, say): every rank then agrees to fall back to MPI.
    public init?(comm: Communicator, store: ParameterStore) throws {
        let world = comm.size
        // Slice boundaries on 16-float (64-byte) lines, so no two ranks write one cache line.
        let starts = (0...world).map { r in r == world ? store.count : min(store.count, (store.count * r / world) / 16 * 16) }
        var windows: ([UnsafeMutablePointer<Float>], [UnsafeMutablePointer<Float>])?
        var failure = ""
        do {
            if let segs = try comm.sharedSegments(counts: [Int](repeating: store.count, count: world)),
               let sums = try comm.sharedSegments(counts: (0..<world).map { starts[$0 + 1] - starts[$0] }) {
                // The sum window must be one contiguous buffer: segment r right after segment r-1.
                if (0..<world).allSatisfy({ sums[$0] == sums[0] + starts[$0] || starts[$0 + 1] == starts[$0] }) {
                    windows = (segs, sums)
                } else {
                    failure = "the shared window is not contiguous"
                }
            }
        } catch {
            failure = "\(error)"
        }
        let agreed = try comm.allgather(windows == nil ? 0 : 1, what: "allgather(shared memory ok)")
        guard let (segs, sums) = windows, agreed.allSatisfy({ $0 == 1 }) else {
            if !failure.isEmpty && comm.isRoot {
                warn("note: shared-memory reduction unavailable (\(failure)); using MPI all-reduce")
            }
            return nil
        }
        self.comm = comm
        segments = segs
        sum = sums[0]
        slice = starts[comm.rank]..<starts[comm.rank + 1]
        store.moveGradients(to: FloatBuffer(wrapping: segs[comm.rank], count: store.count))
    }

    public var description: String { "shared memory (MPI-3 shared window), \(comm.size) ranks on one machine" }
    public var summed: UnsafePointer<Float> { UnsafePointer(sum) }
    public func reset() {}
    public func ready(from offset: Int) {}

    public func finish() throws {
        try comm.sharedSync(what: "shared reduce (gradients written)")
        let out = sum
        var i = slice.lowerBound
        let end = slice.upperBound
        let w = segments.count
        while i + 16 <= end {
            var s = load16(segments[0], i)
            for q in 1..<w { s += load16(segments[q], i) }
            store16(s, out, i)
            i += 16
        }
        while i < end {
            var s = segments[0][i]
            for q in 1..<w { s += segments[q][i] }
            out[i] = s
            i += 1
        }
        try comm.sharedSync(what: "shared reduce (sum written)")
    }
}
