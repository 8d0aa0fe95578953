import Comm
import Engine
import Foundation
import Glibc
import Optim

/// Sums gradients across machines in two levels, overlapped with backward:
///
/// - **Inside a machine**, as `SharedMemoryReduce` does: each rank's backward writes into its own
///   segment of a shared window; the machine holds one copy of the parameters and optimizer state.
/// - **Between machines**, the buffer is cut into buckets in backward order (`--bucket-mb`), and
///   each bucket into L slices, one per local rank. When every rank of the machine has produced a
///   bucket (a shared counter per bucket says so), local rank l adds up slice l over the machine's
///   segments and starts an all-reduce of that slice with the ranks of index l on the other
///   machines (`Communicator.startCrossMachineSum`: between two machines one exchange): L
///   all-reduces at once, each 1/L of the bytes, while backward goes on. Each machine thus sends
///   2(H-1)/H of the gradient bytes, whatever L is.
/// - Rank l then holds the global sum of its slices, updates those slices of the machine's shared
///   parameters, and a machine barrier publishes them.
///
/// `--grad-wire bf16` sends the slices as bfloat16 (half the bytes), added in FP32 at each step of
/// the reduction; the update then reads the rounded sums.
public final class HierarchicalReduce: GradientReducer {
    let comm: Communicator
    let layout: MachineLayout
    let wire: GradientWire
    let count: Int
    /// Every local rank's gradient segment, and this rank's.
    let segments: [UnsafeMutablePointer<Float>]
    let own: UnsafeMutablePointer<Float>
    let parameters: UnsafeMutablePointer<Float>
    /// Bucket ranges from the end of the buffer to the start; `slices[b][l]` is local rank l's part.
    public let buckets: [Range<Int>]
    let slices: [[Range<Int>]]
    /// Per bucket, how many local ranks have produced it, over all steps (in shared memory).
    private let counters: UnsafeMutablePointer<Int64>
    /// The counters' value once this step's bucket is complete.
    private var target: Int64 = 0
    private var marked = 0
    private var launched = 0
    private var requests: [Int]
    private let labels: [String]
    private var pendingError: Error?
    /// bf16: this rank's slices on the wire, bucket after bucket.
    private let wireBuffer: UnsafeMutablePointer<UInt16>
    private let wireOffsets: [Int]
    /// Room for the other machine's slices while a sum is in flight (fp32-sized, so either wire fits).
    private let receiveBuffer: UnsafeMutablePointer<Float>
    private var stateWindows: [UnsafeMutablePointer<Float>]
    public var clipGradNorm: Float?
    private let normPart = UnsafeMutablePointer<Double>.allocate(capacity: 1)
    public let gradientMemory: FloatBuffer
    public let parameterMemory: FloatBuffer

    public init(comm: Communicator, layout: MachineLayout, count: Int, stateBuffers: Int, bucketBytes: Int, wire: GradientWire) throws {
        self.comm = comm
        self.layout = layout
        self.wire = wire
        self.count = count
        let L = layout.localSize, me = layout.localRank
        // Buckets from the end, as backward produces them; slices on 16-float lines.
        let b = backwardBuckets(count: count, per: max(1024 * L, bucketBytes / 4))
        buckets = b
        slices = b.map { r in
            let cuts = (0...L).map { l in l == L ? r.upperBound : min(r.upperBound, r.lowerBound + (r.count * l / L) / 16 * 16) }
            return (0..<L).map { cuts[$0]..<cuts[$0 + 1] }
        }
        requests = [Int](repeating: 0, count: b.count)
        labels = (0..<b.count).map { "cross-machine allreduce(gradient bucket \($0 + 1)/\(b.count))" }
        var offsets: [Int] = []
        var total = 0
        for s in slices {
            offsets.append(total)
            total += s[me].count
        }
        wireOffsets = offsets
        wireBuffer = .allocate(capacity: max(1, total))
        receiveBuffer = .allocate(capacity: max(1, total))
        // The machine's windows: gradient segments, the parameters, the optimizer state, the counters.
        let segs = try comm.machineSegments(counts: [Int](repeating: count + 16, count: L))
        segments = segs.map(alignedToCacheLine)
        own = segments[me]
        func oneCopy(_ floats: Int) throws -> UnsafeMutablePointer<Float> {
            alignedToCacheLine(try comm.machineSegments(counts: [floats + 16] + [Int](repeating: 0, count: L - 1))[0])
        }
        parameters = try oneCopy(count)
        stateWindows = try (0..<stateBuffers).map { _ in try oneCopy(count) }
        counters = UnsafeMutableRawPointer(try oneCopy(2 * b.count)).bindMemory(to: Int64.self, capacity: b.count)
        for (i, s) in slices.enumerated() {
            for w in stateWindows { (w + s[me].lowerBound).update(repeating: 0, count: s[me].count) }
            if me == 0 { counters[i] = 0 }
        }
        try comm.sharedSync(what: "hierarchical reduce setup")
        gradientMemory = FloatBuffer(wrapping: own, count: count)
        parameterMemory = FloatBuffer(wrapping: parameters, count: count)
    }

    deinit {
        wireBuffer.deallocate()
        receiveBuffer.deallocate()
        normPart.deallocate()
    }

    public var description: String {
        "hierarchical: shared memory (\(comm.sharedMemoryKind)) inside each of \(layout.count) machines of \(layout.localSize) rank\(layout.localSize == 1 ? "" : "s"), "
            + "then each local rank's 1/\(layout.localSize) of \(buckets.count) bucket\(buckets.count == 1 ? "" : "s") all-reduced between machines (\(wire.rawValue) on the wire), overlapped with backward"
    }

    public var sharesParameters: Bool { true }
    /// Each machine's first rank writes loaded values into its machine's copy.
    public var writesLoadedState: Bool { layout.localRank == 0 }

    /// Root's copy to every machine's: a broadcast into a scratch copy, written by each machine's
    /// first rank, then a machine barrier.
    public func shareParameters(_ parameters: UnsafeMutablePointer<Float>, count: Int) throws {
        let scratch = FloatBuffer(count: count)
        if comm.isRoot { scratch.pointer.update(from: parameters, count: count) }
        try comm.broadcast(scratch.pointer, count: count * 4, root: 0, what: "broadcast(parameters)")
        if layout.localRank == 0 && !comm.isRoot { parameters.update(from: scratch.pointer, count: count) }
        try comm.sharedSync(what: "machine copies of the parameters")
    }

    public func allocateState(count: Int) throws -> FloatBuffer {
        if count == 0 { return FloatBuffer(count: 0) }
        precondition(count == self.count && !stateWindows.isEmpty, "optimizer state beyond the shared windows reserved for it")
        return FloatBuffer(wrapping: stateWindows.removeFirst(), count: count)
    }

    public func reset() {
        marked = 0
        launched = 0
        pendingError = nil
        target += Int64(layout.localSize)
    }

    /// Marks the buckets this rank has finished, starts those every local rank has finished, and
    /// lets the started ones progress. Errors wait for `finish`.
    public func ready(from offset: Int) {
        while marked < buckets.count && buckets[marked].lowerBound >= offset {
            Kernels.atomicAddRelease(counters + marked, 1)
            marked += 1
        }
        do {
            try launch(waiting: false)
            if launched > 0 { try comm.progress() }
        } catch {
            pendingError = pendingError ?? error
        }
    }

    /// Starts buckets in order while the machine has produced them (with `waiting`, all of them).
    private func launch(waiting: Bool) throws {
        while launched < buckets.count {
            if Kernels.atomicLoadAcquire(counters + launched) < target {
                guard waiting else { return }
                try waitForMachine(launched)
            }
            let s = slices[launched][layout.localRank]
            if !s.isEmpty {
                sumOverMachine(s)
            }
            // One machine (--allreduce hierarchical on one): the machine's sum is the sum.
            if !s.isEmpty && layout.count > 1 {
                if wire == .bf16 {
                    let w = wireBuffer + wireOffsets[launched]
                    Kernels.toBF16(own + s.lowerBound, w, count: s.count)
                    requests[launched] = try comm.startCrossMachineSum(UnsafeMutableRawPointer(w), count: s.count, wire: .bf16,
                                                                       scratch: UnsafeMutableRawPointer(receiveBuffer + wireOffsets[launched]), what: labels[launched])
                } else {
                    requests[launched] = try comm.startCrossMachineSum(UnsafeMutableRawPointer(own + s.lowerBound), count: s.count, wire: .fp32,
                                                                       scratch: UnsafeMutableRawPointer(receiveBuffer + wireOffsets[launched]), what: labels[launched])
                }
            }
            launched += 1
        }
    }

    /// Spins (letting MPI progress) until every local rank has produced bucket `b`.
    private func waitForMachine(_ b: Int) throws {
        var spins = 0
        let start = monotonicSeconds()
        while Kernels.atomicLoadAcquire(counters + b) < target {
            spins += 1
            if spins & 255 == 0 {
                try comm.progress()
                let waited = monotonicSeconds() - start
                if waited > 0.002 { sched_yield() }
                if waited > 300 { throw TrainingError("rank \(comm.rank) waited \(Int(waited)) s for this machine's ranks to finish backward") }
            }
        }
    }

    /// `own[s]` = slice `s` summed over the machine's segments, in local-rank order. Only this rank
    /// reads slice `s` of any segment, so the sum may land in its own.
    private func sumOverMachine(_ s: Range<Int>) {
        if segments.count > 1 { sumSegments(segments, s.lowerBound, s.count, into: own + s.lowerBound) }
    }

    public func finish() throws {
        ready(from: 0)
        if let pendingError { throw pendingError }
        try launch(waiting: true)
        for b in 0..<buckets.count where !slices[b][layout.localRank].isEmpty && layout.count > 1 {
            try comm.wait(requests[b])
            if wire == .bf16 {
                let s = slices[b][layout.localRank]
                Kernels.fromBF16(wireBuffer + wireOffsets[b], own + s.lowerBound, count: s.count)
            }
        }
    }

    /// Rank l updates its slices of the machine's parameters from the global sums it holds. The
    /// clipping norm adds up every slice once: only the first machine's ranks contribute.
    public func step(_ optimizer: Optimizer) throws {
        let me = layout.localRank
        if let maxNorm = clipGradNorm {
            normPart.pointee = 0
            if layout.index == 0 { for s in slices { normPart.pointee += sumOfSquares(own + s[me].lowerBound, s[me].count) } }
            try comm.allreduceSum(normPart, count: 1, what: "allreduce(gradient norm)")
            let c = clipCoefficient(sumOfSquares: normPart.pointee, maxNorm: maxNorm)
            if c < 1 { for s in slices { for i in s[me] { own[i] *= c } } }
        }
        for s in slices where !s[me].isEmpty {
            optimizer.update(parameters: parameters + s[me].lowerBound, gradients: own + s[me].lowerBound, offset: s[me].lowerBound, count: s[me].count)
        }
        optimizer.stepCount = optimizer.stepCount + 1
    }

    public func publish() throws {
        try comm.sharedSync(what: "machine barrier (parameters updated)")
    }

    /// Slice l of every bucket is in local rank l's segment.
    public func appliedGradients(into out: UnsafeMutablePointer<Float>) {
        for bucket in slices {
            for (l, s) in bucket.enumerated() { (out + s.lowerBound).update(from: segments[l] + s.lowerBound, count: s.count) }
        }
    }
}
