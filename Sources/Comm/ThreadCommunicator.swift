import Engine
import Glibc
import Synchronization

/// Ranks as threads of one process: local mode's way to use every core as `mpirun -np <cores>`
/// does. Each thread runs the same per-rank code as an MPI process, with its own model and one
/// BLAS thread; the gradient sum is the same `SharedMemoryReduce`, over memory this process shares
/// by nature. Collectives meet at a spinning barrier and sum in rank order, so a run is bitwise the
/// same as under mpirun with as many ranks (for two ranks any order is; MPI's own order for more
/// ranks is its algorithm's, and results then agree to rounding).
///
/// A rank whose code throws marks the world failed; the others throw at their next collective
/// instead of waiting forever. A rank that hangs is caught by the same stall watchdog as MPI's.
public final class ThreadCommunicator: Communicator {
    public let rank: Int
    public var size: Int { world.size }
    public var localSize: Int { world.size }
    public var currentStep = 0
    let world: ThreadWorld

    /// Non-blocking collectives are deferred: `startAllreduceSum` records the buffer and `wait`
    /// sums it. Every rank starts and waits for its requests in the same order (they run one program).
    private var pending: [(buffer: UnsafeMutablePointer<Float>, count: Int, what: String)?]
    private static let slots = 64
    private var nextSlot = 0
    /// This rank's sums before they are copied back (grown, rarely, to the largest request).
    private var scratch = UnsafeMutableRawPointer.allocate(byteCount: 1 << 16, alignment: 64)
    private var scratchBytes = 1 << 16

    init(rank: Int, world: ThreadWorld) {
        self.rank = rank
        self.world = world
        pending = [(buffer: UnsafeMutablePointer<Float>, count: Int, what: String)?](repeating: nil, count: Self.slots)
    }

    deinit { scratch.deallocate() }

    public var sharedMemoryKind: String { "one process's memory" }

    public func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int, what: String) throws {
        try reduce(buffer, count: count, what: what)
    }

    public func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int, what: String) throws {
        try reduce(buffer, count: count, what: what)
    }

    /// Every rank posts its buffer; each sums all of them in rank order into its scratch; after a
    /// second barrier (nobody reads a buffer any more) each copies its sums back.
    private func reduce<T: BinaryFloatingPoint>(_ buffer: UnsafeMutablePointer<T>, count: Int, what: String) throws {
        world.post(rank, UnsafeMutableRawPointer(buffer))
        try world.barrier(rank: rank, what: what, step: currentStep)
        let bytes = count * MemoryLayout<T>.stride
        if bytes > scratchBytes {
            scratch.deallocate()
            scratch = .allocate(byteCount: bytes, alignment: 64)
            scratchBytes = bytes
        }
        let out = scratch.bindMemory(to: T.self, capacity: count)
        let first = world.posted(0).assumingMemoryBound(to: T.self)
        out.update(from: first, count: count)
        for r in 1..<world.size {
            let p = world.posted(r).assumingMemoryBound(to: T.self)
            for i in 0..<count { out[i] += p[i] }
        }
        try world.barrier(rank: rank, what: what, step: currentStep)
        buffer.update(from: out, count: count)
    }

    public func startAllreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int, what: String) throws -> Int {
        let slot = nextSlot
        nextSlot = (nextSlot + 1) % Self.slots
        pending[slot] = (buffer, count, what)
        return slot
    }

    public func progress() throws {}

    public func wait(_ request: Int) throws {
        guard let r = pending[request] else { return }
        pending[request] = nil
        try reduce(r.buffer, count: r.count, what: r.what)
    }

    public func broadcast(_ bytes: UnsafeMutableRawPointer, count: Int, root: Int, what: String) throws {
        world.post(rank, bytes)
        try world.barrier(rank: rank, what: what, step: currentStep)
        if rank != root && count > 0 { bytes.copyMemory(from: world.posted(root), byteCount: count) }
        try world.barrier(rank: rank, what: what, step: currentStep)
    }

    public func barrier(what: String) throws {
        try world.barrier(rank: rank, what: what, step: currentStep)
    }

    public func allgather(_ value: UInt64, what: String) throws -> [UInt64] {
        var mine = value
        var all = [UInt64](repeating: 0, count: world.size)
        try all.withUnsafeMutableBufferPointer { try gather(&mine, count: 1, into: $0.baseAddress!, what: what) }
        return all
    }

    public func allgather(_ values: UnsafePointer<Double>, count: Int, into all: UnsafeMutablePointer<Double>, what: String) throws {
        try gather(values, count: count, into: all, what: what)
    }

    /// Every rank posts its `count` values; each copies all of them, in rank order, into `all`.
    private func gather<T>(_ values: UnsafePointer<T>, count: Int, into all: UnsafeMutablePointer<T>, what: String) throws {
        world.post(rank, UnsafeMutableRawPointer(mutating: values))
        try world.barrier(rank: rank, what: what, step: currentStep)
        for r in 0..<world.size {
            (all + r * count).update(from: world.posted(r).assumingMemoryBound(to: T.self), count: count)
        }
        try world.barrier(rank: rank, what: what, step: currentStep)
    }

    /// Rank 0 allocates one block, rank r's segment right after rank r-1's; every rank gets them all.
    public func sharedSegments(counts: [Int]) throws -> [UnsafeMutablePointer<Float>]? {
        precondition(counts.count == size)
        if rank == 0 { world.post(0, world.allocate(floats: counts.reduce(0, +))) }
        try world.barrier(rank: rank, what: "shared memory setup", step: currentStep)
        let base = world.posted(0).assumingMemoryBound(to: Float.self)
        var segments: [UnsafeMutablePointer<Float>] = []
        var offset = 0
        for c in counts {
            segments.append(base + offset)
            offset += c
        }
        try world.barrier(rank: rank, what: "shared memory setup", step: currentStep)
        return segments
    }

    /// The barrier's atomics order every write before it against every read after it.
    public func sharedSync(what: String) throws {
        try world.barrier(rank: rank, what: what, step: currentStep)
    }

    public func shareInProcess(_ value: Any?, what: String) throws -> Any? {
        if rank == 0 { world.object = value }
        try world.barrier(rank: rank, what: what, step: currentStep)
        let shared = world.object
        try world.barrier(rank: rank, what: what, step: currentStep)
        if rank == 0 { world.object = nil }
        return shared
    }

    public func finalize() {}
}

/// What one process's rank threads share: the barrier, a slot per rank to post a pointer in, the
/// shared blocks, and whether some rank has failed.
final class ThreadWorld: @unchecked Sendable {
    let size: Int
    let stallTimeout: Double
    private let arrived = Atomic<Int>(0)
    private let generation = Atomic<Int>(0)
    /// 0 while every rank is well; else 1 + the rank that failed first.
    let failedRank = Atomic<Int>(0)
    private let slots: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    private var blocks: [UnsafeMutableRawPointer] = []
    /// `shareInProcess`'s value, between its two barriers.
    var object: Any?
    /// More ranks than cores: a waiting rank gives its core away instead of spinning.
    private let oversubscribed: Bool

    init(size: Int, stallTimeout: Double, cores: Int) {
        self.size = size
        self.stallTimeout = stallTimeout
        oversubscribed = size > cores
        slots = .allocate(capacity: size)
        slots.initialize(repeating: nil, count: size)
    }

    deinit {
        for b in blocks { b.deallocate() }
        slots.deallocate()
    }

    func post(_ rank: Int, _ p: UnsafeMutableRawPointer) { slots[rank] = p }
    func posted(_ rank: Int) -> UnsafeMutableRawPointer { slots[rank]! }

    /// A zeroed block on whole cache lines, freed with the world.
    func allocate(floats: Int) -> UnsafeMutableRawPointer {
        let bytes = max(64, (floats * 4 + 63) / 64 * 64)
        let p = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        p.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        blocks.append(p)
        return p
    }

    /// A sense-reversing barrier: the last rank to arrive opens the next generation. Waiting ranks
    /// spin (each has its own core), yield when ranks outnumber cores, throw when another rank has
    /// failed, and end the process as the MPI watchdog does after `stallTimeout`.
    func barrier(rank: Int, what: String, step: Int) throws {
        let gen = generation.load(ordering: .acquiring)
        if arrived.wrappingAdd(1, ordering: .acquiringAndReleasing).newValue == size {
            arrived.store(0, ordering: .relaxed)
            generation.store(gen + 1, ordering: .releasing)
            return
        }
        var spins = 0
        var start = 0.0
        while generation.load(ordering: .acquiring) == gen {
            spins += 1
            if spins & 1023 == 0 {
                let failed = failedRank.load(ordering: .acquiring)
                if failed > 0 { throw PeerFailure(rank: failed - 1, what: what) }
                let now = MPICommunicator.now()
                if start == 0 { start = now }
                let waited = now - start
                if waited > stallTimeout { stalled(rank: rank, what: what, step: step, waited: waited) }
                if oversubscribed || waited > 0.002 { sched_yield() }
            }
        }
    }

    func fail(rank: Int) {
        _ = failedRank.compareExchange(expected: 0, desired: rank + 1, ordering: .acquiringAndReleasing)
    }

    private func stalled(rank: Int, what: String, step: Int, waited: Double) -> Never {
        fputs("ddp-train: watchdog: rank \(rank) waited \(Int(waited)) s (--stall-timeout \(stallTimeout)) in '\(what)' at step \(step); "
              + "another rank is stalled; ending the process\n", stderr)
        // The other threads still run: end the process without running exit handlers under them.
        fflush(nil)
        _exit(1)
    }
}

/// Thrown by a rank whose collective cannot complete because another rank's code failed.
public struct PeerFailure: Error, CustomStringConvertible {
    public let rank: Int
    public let what: String
    public var description: String { "rank \(rank) failed while this rank waited in '\(what)'" }
}

/// Runs ranks as threads: `body` once per rank with that rank's communicator, rank 0 on the
/// calling thread. Returns when every rank has returned; throws the error that ended the run
/// (rank 0's, else the lowest rank's that is not just a peer's failure).
public enum InProcessRanks {
    public static func run(count: Int, stallTimeout: Double, cores: Int, _ body: @escaping (Communicator) throws -> Void) throws {
        let world = ThreadWorld(size: count, stallTimeout: stallTimeout, cores: cores)
        let results = ErrorSlots(count: count)
        func runRank(_ r: Int) {
            do {
                try body(ThreadCommunicator(rank: r, world: world))
            } catch {
                results.set(r, error)
                world.fail(rank: r)
            }
        }
        var threads: [pthread_t] = []
        var started = true
        for r in 1..<max(count, 1) {
            let box = Unmanaged.passRetained(RankThread { runRank(r) }).toOpaque()
            var attributes = pthread_attr_t()
            pthread_attr_init(&attributes)
            pthread_attr_setstacksize(&attributes, 16 << 20)
            var thread = pthread_t()
            let rc = pthread_create(&thread, &attributes, { p in
                let work = Unmanaged<RankThread>.fromOpaque(p!).takeRetainedValue()
                work.body()
                return nil
            }, box)
            pthread_attr_destroy(&attributes)
            if rc != 0 {
                Unmanaged<RankThread>.fromOpaque(box).release()
                world.fail(rank: r)
                results.set(r, CommError("pthread_create for rank \(r) failed: \(String(cString: strerror(rc)))"))
                started = false
                break
            }
            threads.append(thread)
        }
        if started { runRank(0) }
        for t in threads { pthread_join(t, nil) }
        if let error = results.first { throw error }
    }
}

private final class RankThread {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}

/// Each rank's error, written by its own thread and read after all have joined.
private final class ErrorSlots: @unchecked Sendable {
    private var errors: [Error?]
    private let lock = Mutex(())
    init(count: Int) { errors = [Error?](repeating: nil, count: count) }
    func set(_ r: Int, _ e: Error) { lock.withLock { _ in errors[r] = e } }
    /// The error that ended the run: the lowest rank's that is not a peer's failure, else any.
    var first: Error? {
        lock.withLock { _ in errors.first { $0 != nil && !($0! is PeerFailure) } ?? errors.first { $0 != nil } ?? nil }
    }
}
