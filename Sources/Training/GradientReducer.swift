import Comm
import Engine
import Foundation
import Optim

/// Sums every rank's gradients and applies the optimizer, so that every rank ends the step with the
/// same parameters. Backward writes this rank's gradients into the model's gradient buffer and calls
/// `ready(from:)` as layers finish; then the trainer calls `finish()` (waiting: for the sum, or for
/// every rank's gradients), `step(_:)` (the update), and `publish()` (waiting for every rank's update).
public protocol GradientReducer: AnyObject {
    /// For the run header.
    var description: String { get }
    /// True when the ranks of a machine use one shared copy of the parameters and optimizer state.
    /// Then only one rank may write values loaded from a file, followed by `comm.sharedSync`.
    var sharesParameters: Bool { get }
    /// Whether this rank writes values loaded from a file into the parameters and state: every rank
    /// its own copy, or one rank per shared copy.
    var writesLoadedState: Bool { get }
    /// Gives every rank root's parameters (`parameters`: this rank's view of them).
    func shareParameters(_ parameters: UnsafeMutablePointer<Float>, count: Int) throws
    /// Memory for an optimizer state buffer of `count` values, zeroed.
    func allocateState(count: Int) throws -> FloatBuffer
    func reset()
    /// Every gradient at or after `offset` is final.
    func ready(from offset: Int)
    func finish() throws
    func step(_ optimizer: Optimizer) throws
    func publish() throws
    /// `--clip-grad-norm`: the summed gradients are scaled as torch's `clip_grad_norm_` does (over
    /// all parameters, after the sum, by the same factor on every rank) before the update.
    var clipGradNorm: Float? { get set }
    /// The gradients the last update applied (summed over ranks, clipped), into `out` (all of
    /// them): for TensorBoard's histograms. Valid on every rank after `publish()` until the next
    /// backward; with node-shared memory any rank may read them, since the segments are shared.
    func appliedGradients(into out: UnsafeMutablePointer<Float>)
}

/// torch.nn.utils.clip_grad_norm_'s factor: max_norm / (total_norm + 1e-6), at most 1.
@inline(__always)
public func clipCoefficient(sumOfSquares: Double, maxNorm: Float) -> Float {
    Float(min(1, Double(maxNorm) / (sumOfSquares.squareRoot() + 1e-6)))
}

/// The sum of squares of `count` floats, in double precision and a fixed order.
@inline(__always)
func sumOfSquares(_ x: UnsafePointer<Float>, _ count: Int) -> Double {
    var acc = SIMD8<Double>(repeating: 0)
    var i = 0
    while i + 8 <= count {
        let v = SIMD8<Double>(SIMD8<Float>(UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)))
        acc += v * v
        i += 8
    }
    var total = acc.sum()
    while i < count { total += Double(x[i]) * Double(x[i]); i += 1 }
    return total
}

/// Sums the flat gradient buffer in place with MPI non-blocking all-reduces, in buckets, each
/// started as soon as backward has produced it. Backward runs from the last layer to the first and
/// layers reserve parameters in forward order, so buckets are cut from the end of the buffer.
public final class BucketAllreduce: GradientReducer {
    let comm: Communicator
    let parameters: UnsafeMutablePointer<Float>
    let gradients: UnsafeMutablePointer<Float>
    let count: Int
    /// Bucket ranges, from the end of the buffer to the start.
    public let buckets: [Range<Int>]
    private var requests: [Int]
    private var launched = 0
    private let labels: [String]
    /// An error from starting a bucket during backward, thrown by `finish`.
    private var pendingError: Error?
    public var clipGradNorm: Float?

    public init(comm: Communicator, store: ParameterStore, bucketBytes: Int) {
        self.comm = comm
        parameters = store.parameters.pointer
        gradients = store.gradients.pointer
        count = store.count
        let b = backwardBuckets(count: count, per: max(1024, bucketBytes / 4))
        buckets = b
        requests = [Int](repeating: 0, count: b.count)
        labels = (0..<b.count).map { "allreduce(gradient bucket \($0 + 1)/\(b.count))" }
    }

    public var description: String {
        "MPI_Iallreduce in \(buckets.count) bucket\(buckets.count == 1 ? "" : "s"), overlapped with backward"
    }

    public var sharesParameters: Bool { false }
    public var writesLoadedState: Bool { true }
    public func shareParameters(_ parameters: UnsafeMutablePointer<Float>, count: Int) throws {
        try comm.broadcast(parameters, count: count * 4, root: 0, what: "broadcast(parameters)")
    }
    public func allocateState(count: Int) throws -> FloatBuffer { FloatBuffer(count: count) }

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
    /// After `finish()` every rank's gradient buffer holds the sum (clipped in place in `step`).
    public func appliedGradients(into out: UnsafeMutablePointer<Float>) {
        out.update(from: gradients, count: count)
    }

    public func finish() throws {
        if let pendingError { throw pendingError }
        try launch(from: 0)
        for i in 0..<buckets.count { try comm.wait(requests[i]) }
    }

    /// Every rank applies the whole step to its own copy (the sums are the same on every rank, so
    /// is the clipping factor).
    public func step(_ optimizer: Optimizer) throws {
        if let maxNorm = clipGradNorm {
            let c = clipCoefficient(sumOfSquares: sumOfSquares(gradients, count), maxNorm: maxNorm)
            if c < 1 { for i in 0..<count { gradients[i] *= c } }
        }
        optimizer.step(parameters: parameters, gradients: gradients, count: count)
    }

    public func publish() throws {}
}

/// `out[0..<n]` = values `start ..< start + n` summed over every segment, in segment (rank) order.
/// `out` may be one of the segments at `start`: each value is read before it is written.
@inline(__always)
func sumSegments(_ segments: [UnsafeMutablePointer<Float>], _ start: Int, _ n: Int, into out: UnsafeMutablePointer<Float>) {
    let w = segments.count
    var i = 0
    while i + 16 <= n {
        var s = load16(segments[0], start + i)
        for q in 1..<w { s += load16(segments[q], start + i) }
        store16(s, out, i)
        i += 16
    }
    while i < n {
        var s = segments[0][start + i]
        for q in 1..<w { s += segments[q][start + i] }
        out[i] = s
        i += 1
    }
}

/// `sumSegments` in `GradientShards`' tree over the ranks (`--invariant-shards`): segments a and
/// a + w/2 first, and so on down; for 4, (s0 + s2) + (s1 + s3). For 1, 2 or 4 to 64 segments (a
/// power of 2); with 1 or 2 it is rank order. Unrolled, it takes about twice rank order's time on
/// data in L2 (which is why rank order stays the default); the recursive form took six times.
func sumSegmentsInTreeOrder(_ segments: [UnsafeMutablePointer<Float>], _ start: Int, _ n: Int, into out: UnsafeMutablePointer<Float>) {
    let w = segments.count
    guard w > 2 else { return sumSegments(segments, start, n, into: out) }
    precondition(w & (w - 1) == 0 && w <= 64, "the tree order needs a power-of-2 number of ranks up to 64, not \(w)")
    let full = n / 16 * 16, rest = n - full
    segments.withUnsafeBufferPointer { treeRows($0.baseAddress!, w, start, full, into: out) }
    guard rest > 0 else { return }
    // The last values, zero-padded to 16 per segment on the stack, through the same tree.
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 16 * (w + 1)) { tails in
        withUnsafeTemporaryAllocation(of: UnsafeMutablePointer<Float>.self, capacity: w) { pointers in
            let tails = tails.baseAddress!
            tails.update(repeating: 0, count: 16 * w)
            for q in 0..<w {
                (tails + 16 * q).update(from: segments[q] + start + full, count: rest)
                pointers[q] = tails + 16 * q
            }
            let sums = tails + 16 * w
            treeRows(UnsafePointer(pointers.baseAddress!), w, 0, 16, into: sums)
            (out + full).update(from: sums, count: rest)
        }
    }
}

private typealias Segments = UnsafePointer<UnsafeMutablePointer<Float>>

/// out[0..<n] (n a multiple of 16) = the tree over the w segments of values start ..< start + n.
private func treeRows(_ p: Segments, _ w: Int, _ start: Int, _ n: Int, into out: UnsafeMutablePointer<Float>) {
    var i = 0
    switch w {
    case 4: while i < n { store16(t4(p, start + i, 0, 1), out, i); i += 16 }
    case 8: while i < n { store16(t8(p, start + i, 0, 1), out, i); i += 16 }
    case 16: while i < n { store16(t16(p, start + i, 0, 1), out, i); i += 16 }
    case 32: while i < n { store16(t32(p, start + i, 0, 1), out, i); i += 16 }
    default: while i < n { store16(t32(p, start + i, 0, 2) + t32(p, start + i, 1, 2), out, i); i += 16 }  // 64
    }
}

/// The tree over segments a, a + m, a + 2m, ... (4, 8, 16 or 32 of them) at value i.
@inline(__always) private func t4(_ p: Segments, _ i: Int, _ a: Int, _ m: Int) -> F16 {
    (load16(p[a], i) + load16(p[a + 2 * m], i)) + (load16(p[a + m], i) + load16(p[a + 3 * m], i))
}
@inline(__always) private func t8(_ p: Segments, _ i: Int, _ a: Int, _ m: Int) -> F16 { t4(p, i, a, 2 * m) + t4(p, i, a + m, 2 * m) }
@inline(__always) private func t16(_ p: Segments, _ i: Int, _ a: Int, _ m: Int) -> F16 { t8(p, i, a, 2 * m) + t8(p, i, a + m, 2 * m) }
@inline(__always) private func t32(_ p: Segments, _ i: Int, _ a: Int, _ m: Int) -> F16 { t16(p, i, a, 2 * m) + t16(p, i, a + m, 2 * m) }

/// `count` values cut into buckets of `per` from the end of the buffer to the start: the order in
/// which backward produces them (layers reserve parameters in forward order).
func backwardBuckets(count: Int, per: Int) -> [Range<Int>] {
    var b: [Range<Int>] = []
    var end = count
    while end > 0 {
        let start = max(0, end - per)
        b.append(start..<end)
        end = start
    }
    return b
}

/// The first 64-byte boundary at or after `p` (at most 15 floats on).
func alignedToCacheLine(_ p: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float> {
    let pad = (64 - Int(bitPattern: p) % 64) % 64
    return UnsafeMutableRawPointer(p).advanced(by: pad).assumingMemoryBound(to: Float.self)
}

/// Sums gradients and applies the optimizer through node-shared memory (MPI-3 shared windows) when
/// every rank runs on one machine. The node holds one copy of the parameters and of the optimizer
/// state, split into W slices on 64-byte lines. Each rank's backward writes straight into its own
/// gradient segment; after a barrier, rank r sums slice r over all ranks' segments (in rank order,
/// a chunk at a time, into a buffer that stays in L1) and applies the optimizer to slice r of the
/// shared parameters and state; after a second barrier every rank's next forward reads the updated
/// parameters. Per step a rank reads one gradient buffer's worth and updates 1/W of the parameters,
/// with no copies: no all-reduce moves every byte through a transport, the optimizer's work is
/// split W ways, and the weights that every core's GEMMs read are one copy in the shared cache.
public final class SharedMemoryReduce: GradientReducer {
    let comm: Communicator
    let segments: [UnsafeMutablePointer<Float>]
    let parameters: UnsafeMutablePointer<Float>
    let slice: Range<Int>
    /// Every rank's slice (with `--clip-grad-norm`, slice r of segment r holds the applied sum).
    let slices: [Range<Int>]
    /// Shared windows for the optimizer's state, handed out by `allocateState`.
    private var stateWindows: [UnsafeMutablePointer<Float>]
    private let count: Int
    private let chunk = FloatBuffer(count: SharedMemoryReduce.chunkSize)
    static let chunkSize = 2048
    private let parameterChunk = FloatBuffer(count: SharedMemoryReduce.chunkSize)
    public var clipGradNorm: Float?
    /// `--invariant-shards`: sum the ranks in `GradientShards`' tree (`sumSegmentsInTreeOrder`), else in rank order.
    let inTreeOrder: Bool
    /// This rank's part of the squared norm, summed over ranks (preallocated: a step allocates nothing).
    private let normPart = UnsafeMutablePointer<Double>.allocate(capacity: 1)

    /// How updated parameters reach the shared copy: normal stores, or streaming stores, which
    /// leave the lines in no cache. Normal stores are faster while the cores exchange cache lines
    /// quickly; on this project's 2-vCPU VM some runs land where writing a line that the other
    /// core has read costs several times more (update 0.22 ms normally, 0.8-1.0 ms then, against
    /// 0.3-0.4 ms with streaming stores either way). So the first steps time both and keep the
    /// faster; the values written are the same either way. `DDP_PARAMETER_STORES=cached|streaming`
    /// fixes the choice.
    public private(set) var streaming = false
    /// The next tuning step, or nil once the choice is made.
    private var tuning: Int?
    private var storeSeconds = [0.0, 0.0]
    static let tuningSteps = 8

    /// nil when the ranks do not share one machine's memory, or when any rank could not map the
    /// shared windows (a small /dev/shm, say): every rank then agrees to fall back to MPI.
    /// `stateBuffers`: how many optimizer state buffers to place in shared memory.
    /// This rank's gradient segment and the node's one copy of the parameters, for the model's store.
    public let gradientMemory: FloatBuffer
    public let parameterMemory: FloatBuffer

    public init?(comm: Communicator, count: Int, stateBuffers: Int, inTreeOrder: Bool = false) throws {
        self.inTreeOrder = inTreeOrder
        let stores = ProcessInfo.processInfo.environment["DDP_PARAMETER_STORES"]
        if let stores, stores != "cached" && stores != "streaming" {
            throw TrainingError("invalid DDP_PARAMETER_STORES '\(stores)': expected cached or streaming")
        }
        let world = comm.size
        // Slice boundaries on 16-float (64-byte) lines, so no two ranks write one cache line.
        let starts = (0...world).map { r in r == world ? count : min(count, (count * r / world) / 16 * 16) }
        var windows: (segments: [UnsafeMutablePointer<Float>], shared: [UnsafeMutablePointer<Float>])?
        var failure = ""
        do {
            // MPI aligns a window only to 8 bytes here (Open MPI's osc/sm puts a header first), so
            // every buffer gets 16 spare floats and starts at its first 64-byte boundary: whole
            // cache lines for SIMD, and no line written by two ranks.
            if let segs = try comm.sharedSegments(counts: [Int](repeating: count + 16, count: world)) {
                // One copy of the parameters and of each state buffer, rank r's slice in its own part.
                var shared: [UnsafeMutablePointer<Float>] = []
                for _ in 0...stateBuffers {
                    let sizes = (0..<world).map { starts[$0 + 1] - starts[$0] + ($0 == world - 1 ? 16 : 0) }
                    guard let s = try comm.sharedSegments(counts: sizes) else { break }
                    // The slices must form one contiguous buffer: slice r right after slice r-1.
                    guard (0..<world).allSatisfy({ s[$0] == s[0] + starts[$0] || sizes[$0] == 0 }) else {
                        failure = "the shared window is not contiguous"
                        break
                    }
                    shared.append(alignedToCacheLine(s[0]))
                }
                if shared.count == stateBuffers + 1 { windows = (segs.map(alignedToCacheLine), shared) }
            }
        } catch {
            failure = "\(error)"
        }
        let agreed = try comm.allgather(windows == nil ? 0 : 1, what: "allgather(shared memory ok)")
        guard let windows, agreed.allSatisfy({ $0 == 1 }) else {
            if !failure.isEmpty && comm.isRoot {
                warn("note: shared-memory reduction unavailable (\(failure)); using MPI all-reduce")
            }
            return nil
        }
        self.comm = comm
        self.count = count
        segments = windows.segments
        parameters = windows.shared[0]
        stateWindows = Array(windows.shared.dropFirst())
        slice = starts[comm.rank]..<starts[comm.rank + 1]
        slices = (0..<world).map { starts[$0]..<starts[$0 + 1] }
        // Each rank zeroes its own slices of the state (first touch: the pages land near the rank that
        // updates them). Rank 0 writes the initial parameters; `Trainer` syncs after them.
        for s in stateWindows { (s + slice.lowerBound).update(repeating: 0, count: slice.count) }
        switch stores {
        case "cached"?: streaming = false
        case "streaming"?: streaming = true
        default: tuning = 0
        }
        gradientMemory = FloatBuffer(wrapping: segments[comm.rank], count: count)
        parameterMemory = FloatBuffer(wrapping: parameters, count: count)
    }

    public var description: String {
        "shared memory (\(comm.sharedMemoryKind)), \(comm.size) ranks on one machine, one copy of the parameters, optimizer split \(comm.size) ways, "
            + (tuning != nil ? "stores chosen by timing" : streaming ? "streaming stores" : "cached stores")
    }
    public var sharesParameters: Bool { true }
    /// Rank 0 writes the machine's one copy.
    public var writesLoadedState: Bool { comm.isRoot }
    /// The one copy that rank 0 initialized: a barrier makes it visible.
    public func shareParameters(_ parameters: UnsafeMutablePointer<Float>, count: Int) throws {
        try comm.sharedSync(what: "shared parameters loaded")
    }

    public func allocateState(count: Int) throws -> FloatBuffer {
        if count == 0 { return FloatBuffer(count: 0) }
        precondition(count == self.count && !stateWindows.isEmpty, "optimizer state beyond the shared windows reserved for it")
        return FloatBuffer(wrapping: stateWindows.removeFirst(), count: count)
    }

    public func reset() {}
    public func ready(from offset: Int) {}

    deinit { normPart.deallocate() }

    /// Waits until every rank has written its gradients.
    public func finish() throws {
        try comm.sharedSync(what: "shared reduce (gradients written)")
    }

    /// Without clipping, the sum of every segment; with it, each rank's slice from its own
    /// segment, where `step` left the summed, scaled values.
    public func appliedGradients(into out: UnsafeMutablePointer<Float>) {
        if clipGradNorm != nil {
            for (r, s) in slices.enumerated() { (out + s.lowerBound).update(from: segments[r] + s.lowerBound, count: s.count) }
        } else {
            for s in slices { sum(s.lowerBound, s.count, into: out + s.lowerBound) }
        }
    }

    /// Sums this rank's slice over all segments and updates that slice of the shared parameters.
    /// With `clipGradNorm`, a first pass sums the slice into this rank's own segment (only this rank
    /// reads slice r of any segment) while adding up its squared norm; one all-reduce gives the
    /// total, and the update pass then reads the stored sums, scaled, instead of summing again.
    public func step(_ optimizer: Optimizer) throws {
        let t0 = tuning != nil ? monotonicSeconds() : 0
        var scale: Float = 1
        if let maxNorm = clipGradNorm {
            let own = segments[comm.rank]
            normPart.pointee = 0
            forEachChunk { start, n in
                sum(start, n, into: own + start)
                normPart.pointee += sumOfSquares(own + start, n)
            }
            try comm.allreduceSum(normPart, count: 1, what: "allreduce(gradient norm)")
            scale = clipCoefficient(sumOfSquares: normPart.pointee, maxNorm: maxNorm)
        }
        forEachChunk { start, n in
            let g: UnsafeMutablePointer<Float>
            if clipGradNorm != nil {
                g = segments[comm.rank] + start
                if scale < 1 { for i in 0..<n { g[i] *= scale } }
            } else {
                g = chunk.pointer
                sum(start, n, into: g)
            }
            if streaming {
                // Update a private copy of the chunk, then stream it out.
                let p = parameterChunk.pointer
                p.update(from: parameters + start, count: n)
                optimizer.update(parameters: p, gradients: g, offset: start, count: n)
                Kernels.streamingCopy(p, to: parameters + start, count: n)
            } else {
                optimizer.update(parameters: parameters + start, gradients: g, offset: start, count: n)
            }
        }
        optimizer.stepCount = optimizer.stepCount + 1
        if let t = tuning { try tune(t, seconds: monotonicSeconds() - t0) }
    }

    /// Calls `body(start, n)` for this rank's slice in chunks of at most `chunkSize` values.
    @inline(__always)
    private func forEachChunk(_ body: (Int, Int) -> Void) {
        var start = slice.lowerBound
        while start < slice.upperBound {
            let n = min(SharedMemoryReduce.chunkSize, slice.upperBound - start)
            body(start, n)
            start += n
        }
    }

    /// Values `start ..< start + n` summed over the ranks' segments, in the order `inTreeOrder` says.
    @inline(__always)
    private func sum(_ start: Int, _ n: Int, into out: UnsafeMutablePointer<Float>) {
        if inTreeOrder {
            sumSegmentsInTreeOrder(segments, start, n, into: out)
        } else {
            sumSegments(segments, start, n, into: out)
        }
    }

    /// Times `SharedMemoryReduce.tuningSteps` steps with each kind of store, alternating, after a few
    /// to warm up; then every rank takes the kind that was faster summed over all ranks.
    private func tune(_ t: Int, seconds: Double) throws {
        let warm = 4
        if t >= warm { storeSeconds[(t - warm) % 2] += seconds }
        if t + 1 == warm + 2 * SharedMemoryReduce.tuningSteps {
            try comm.allreduceSum(&storeSeconds, what: "allreduce(store timing)")
            streaming = storeSeconds[1] < storeSeconds[0]
            tuning = nil
        } else {
            tuning = t + 1
            if t + 1 >= warm { streaming = (t + 1 - warm) % 2 == 1 }
        }
    }

    /// Waits until every rank has updated its slice.
    public func publish() throws {
        try comm.sharedSync(what: "shared reduce (parameters updated)")
    }
}
