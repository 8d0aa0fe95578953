import CMPI
import Engine
import Glibc

/// Open MPI behind the `Communicator` protocol. Every call's return code is checked and turned into
/// a `CommError` naming the call. Every collective is non-blocking underneath and waited for by
/// polling against `stallTimeout`: a collective that has not completed by then is a stall, and the
/// watchdog prints the rank, step and collective and aborts the whole job.
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    public let localSize: Int
    public var currentStep = 0
    public let stallTimeout: Double
    private let comm: MPI_Comm
    private let oversubscribed: Bool

    /// Preallocated request slots, so that starting a collective allocates nothing.
    private var requests: UnsafeMutablePointer<MPI_Request?>
    private var labels: [String]
    private static let slots = 256
    private var nextSlot = 0

    /// True when this process was started by mpirun (Open MPI's or PMIx's environment is present).
    public static var launchedByMPI: Bool {
        getenv("OMPI_COMM_WORLD_SIZE") != nil || getenv("PMIX_RANK") != nil || getenv("PMI_RANK") != nil
    }

    public init(stallTimeout: Double) throws {
        var provided: Int32 = 0
        try Self.check(MPI_Init_thread(nil, nil, cmpi_thread_funneled(), &provided), "MPI_Init_thread")
        comm = cmpi_comm_world()
        try Self.check(MPI_Comm_set_errhandler(comm, cmpi_errors_return()), "MPI_Comm_set_errhandler")
        var r: Int32 = 0, s: Int32 = 0
        try Self.check(MPI_Comm_rank(comm, &r), "MPI_Comm_rank")
        try Self.check(MPI_Comm_size(comm, &s), "MPI_Comm_size")
        rank = Int(r)
        size = Int(s)
        localSize = getenv("OMPI_COMM_WORLD_LOCAL_SIZE").flatMap { Int(String(cString: $0)) } ?? Int(s)
        self.stallTimeout = stallTimeout
        oversubscribed = localSize > Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        requests = .allocate(capacity: Self.slots)
        requests.initialize(repeating: cmpi_request_null(), count: Self.slots)
        labels = [String](repeating: "", count: Self.slots)
    }

    /// `call` is an autoclosure: the name (often interpolated) is built only when the call failed,
    /// so polling a request allocates nothing.
    static func check(_ code: Int32, _ call: @autoclosure () -> String) throws {
        guard code != cmpi_success() else { return }
        var buffer = [CChar](repeating: 0, count: Int(cmpi_max_error_string()) + 1)
        var length: Int32 = 0
        MPI_Error_string(code, &buffer, &length)
        throw CommError("\(call()) failed: \(String(cString: buffer))")
    }

    private func takeSlot(_ what: String) -> Int {
        let slot = nextSlot
        nextSlot = (nextSlot + 1) % Self.slots
        labels[slot] = what
        return slot
    }

    public func startAllreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int, what: String) throws -> Int {
        let slot = takeSlot(what)
        try Self.check(MPI_Iallreduce(cmpi_in_place(), buffer, Int32(count), cmpi_float(), cmpi_sum(), comm, requests + slot),
                       "MPI_Iallreduce(\(what))")
        return slot
    }

    public func progress() throws {
        var flag: Int32 = 0, index: Int32 = 0
        try Self.check(MPI_Testany(Int32(Self.slots), requests, &index, &flag, cmpi_status_ignore()), "MPI_Testany")
    }

    public func wait(_ slot: Int) throws {
        try waitRequest(slot)
        if let e = exchanges[slot] {
            exchanges[slot] = nil
            try waitRequest(e.sendSlot)
            combine(e)
        }
    }

    private func waitRequest(_ slot: Int) throws {
        var flag: Int32 = 0
        try Self.check(MPI_Test(requests + slot, &flag, cmpi_status_ignore()), "MPI_Test(\(labels[slot]))")
        if flag != 0 { return }
        let start = Self.now()
        var polls = 0
        while true {
            try Self.check(MPI_Test(requests + slot, &flag, cmpi_status_ignore()), "MPI_Test(\(labels[slot]))")
            if flag != 0 { return }
            polls += 1
            if polls & 63 == 0 {
                let waited = Self.now() - start
                if waited > stallTimeout { stalled(labels[slot], waited: waited) }
                // Sharing cores with other ranks: give the CPU to a rank that still computes.
                if oversubscribed || waited > 0.002 { sched_yield() }
            }
        }
    }

    private func stalled(_ what: String, waited: Double) -> Never {
        let line = "ddp-train: watchdog: rank \(rank) waited \(Int(waited)) s (--stall-timeout \(stallTimeout)) in collective '\(what)' at step \(currentStep); another rank is stalled or dead; aborting the job\n"
        fputs(line, stderr)
        fflush(stderr)
        // Status 1, a runtime failure that a restart from the last checkpoint can fix (README, "Exit status").
        MPI_Abort(comm, 1)
        _exit(1)
    }

    public func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int, what: String) throws {
        try wait(startAllreduceSum(buffer, count: count, what: what))
    }

    public func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int, what: String) throws {
        let slot = takeSlot(what)
        try Self.check(MPI_Iallreduce(cmpi_in_place(), buffer, Int32(count), cmpi_double(), cmpi_sum(), comm, requests + slot),
                       "MPI_Iallreduce(\(what))")
        try wait(slot)
    }

    public func broadcast(_ bytes: UnsafeMutableRawPointer, count: Int, root: Int, what: String) throws {
        var offset = 0
        repeat {  // MPI counts are Int32: send large buffers in pieces.
            let n = min(count - offset, 1 << 30)
            let slot = takeSlot(what)
            try Self.check(MPI_Ibcast(bytes + offset, Int32(n), cmpi_byte(), Int32(root), comm, requests + slot), "MPI_Ibcast(\(what))")
            try wait(slot)
            offset += n
        } while offset < count
    }

    public func barrier(what: String) throws {
        let slot = takeSlot(what)
        try Self.check(MPI_Ibarrier(comm, requests + slot), "MPI_Ibarrier(\(what))")
        try wait(slot)
    }

    public func allgather(_ value: UInt64, what: String) throws -> [UInt64] {
        var mine = value
        var all = [UInt64](repeating: 0, count: size)
        let slot = takeSlot(what)
        try all.withUnsafeMutableBufferPointer { out in
            try Self.check(MPI_Iallgather(&mine, 1, cmpi_uint64(), out.baseAddress, 1, cmpi_uint64(), comm, requests + slot),
                           "MPI_Iallgather(\(what))")
            try wait(slot)
        }
        return all
    }

    public func allgather(_ values: UnsafePointer<Double>, count: Int, into all: UnsafeMutablePointer<Double>, what: String) throws {
        let slot = takeSlot(what)
        try Self.check(MPI_Iallgather(values, Int32(count), cmpi_double(), all, Int32(count), cmpi_double(), comm, requests + slot),
                       "MPI_Iallgather(\(what))")
        try wait(slot)
    }

    // MARK: - Machines: the ranks of one machine, and the ranks of one local index across machines

    private var nodeComm: MPI_Comm?
    /// The ranks with this rank's local index, one per machine (`startCrossMachineSum`).
    private var crossComm: MPI_Comm?
    private var layout: MachineLayout??

    private func splitNode() throws {
        if nodeComm != nil { return }
        var node: MPI_Comm?
        try Self.check(MPI_Comm_split_type(comm, cmpi_comm_type_shared(), 0, cmpi_info_null(), &node), "MPI_Comm_split_type")
        nodeComm = node
    }

    /// Machines are what MPI_COMM_TYPE_SHARED splits.
    public func machines() throws -> MachineLayout? {
        if let layout { return layout }
        try splitNode()
        var localRank: Int32 = 0, localSize: Int32 = 0
        try Self.check(MPI_Comm_rank(nodeComm, &localRank), "MPI_Comm_rank(node)")
        try Self.check(MPI_Comm_size(nodeComm, &localSize), "MPI_Comm_size(node)")
        let sizes = try allgather(UInt64(localSize), what: "allgather(ranks per machine)")
        let result: MachineLayout?
        if Set(sizes).count == 1 {
            var cross: MPI_Comm?
            try Self.check(MPI_Comm_split(comm, localRank, Int32(rank), &cross), "MPI_Comm_split(local index)")
            crossComm = cross
            // A machine's index: its place among the ranks with this local index (in world rank order).
            var index: Int32 = 0
            try Self.check(MPI_Comm_rank(cross, &index), "MPI_Comm_rank(cross)")
            result = MachineLayout(count: size / Int(localSize), index: Int(index), localRank: Int(localRank), localSize: Int(localSize))
        } else {
            result = nil
        }
        layout = .some(result)
        return result
    }

    public func machineSegments(counts: [Int]) throws -> [UnsafeMutablePointer<Float>] {
        try splitNode()
        var nodeSize: Int32 = 0
        try Self.check(MPI_Comm_size(nodeComm, &nodeSize), "MPI_Comm_size(node)")
        precondition(counts.count == Int(nodeSize))
        return try allocateShared(counts: counts, localRank: Int(try nodeRank()))
    }

    private func nodeRank() throws -> Int32 {
        var r: Int32 = 0
        try Self.check(MPI_Comm_rank(nodeComm, &r), "MPI_Comm_rank(node)")
        return r
    }

    /// Two machines: one exchange (each sends its values and adds the other's), where libnbc's
    /// all-reduce takes two rounds of the same bytes and so waits twice as often on our progress
    /// calls (measured on 2 emulated hosts: the exposed wait fell from 2.1-3.7 ms to 0.9-1.4 ms).
    /// The sum of two values is the same in either order, so both machines hold the same bits.
    /// More machines: `MPI_Iallreduce` (a ring for large buffers: 2(H-1)/H of the bytes).
    public func startCrossMachineSum(_ buffer: UnsafeMutableRawPointer, count: Int, wire: GradientWire, scratch: UnsafeMutableRawPointer,
                                     what: String) throws -> Int {
        guard let crossComm, let layout = layout ?? nil else { throw CommError("startCrossMachineSum before machines()") }
        let (type, op) = wire == .bf16 ? (cmpi_bf16(), cmpi_bf16_sum()) : (cmpi_float(), cmpi_sum())
        if layout.count == 2 {
            let receive = takeSlot(what), send = takeSlot(what)
            let peer = Int32(1 - layout.index)
            try Self.check(MPI_Irecv(scratch, Int32(count), type, peer, 7, crossComm, requests + receive), "MPI_Irecv(\(what))")
            try Self.check(MPI_Isend(buffer, Int32(count), type, peer, 7, crossComm, requests + send), "MPI_Isend(\(what))")
            exchanges[receive] = Exchange(buffer: buffer, received: scratch, count: count, wire: wire, sendSlot: send)
            return receive
        }
        let slot = takeSlot(what)
        try Self.check(MPI_Iallreduce(cmpi_in_place(), buffer, Int32(count), type, op, crossComm, requests + slot), "MPI_Iallreduce(\(what))")
        return slot
    }

    /// A two-machine exchange in flight: where the sum goes, and the send's request.
    private struct Exchange {
        let buffer: UnsafeMutableRawPointer
        let received: UnsafeMutableRawPointer
        let count: Int
        let wire: GradientWire
        let sendSlot: Int
    }
    private var exchanges = [Exchange?](repeating: nil, count: MPICommunicator.slots)

    /// buffer += received, in FP32 (bf16: widened, added, rounded to nearest even, as the MPI op does).
    private func combine(_ e: Exchange) {
        let received = e.received
        if e.wire == .bf16 {
            let a = e.buffer.assumingMemoryBound(to: UInt16.self), b = received.assumingMemoryBound(to: UInt16.self)
            for i in 0..<e.count { a[i] = cmpi_f32_to_bf16(cmpi_bf16_to_f32(a[i]) + cmpi_bf16_to_f32(b[i])) }
        } else {
            let a = e.buffer.assumingMemoryBound(to: Float.self), b = received.assumingMemoryBound(to: Float.self)
            for i in 0..<e.count { a[i] += b[i] }
        }
    }

    // MARK: - Node-shared memory (MPI-3 shared windows)

    /// Stands in for a zero-size segment that has no address.
    private static let emptySegment = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64)
    private var windows: [MPI_Win?] = []

    public func sharedSegments(counts: [Int]) throws -> [UnsafeMutablePointer<Float>]? {
        precondition(counts.count == size)
        try splitNode()
        var nodeSize: Int32 = 0
        try Self.check(MPI_Comm_size(nodeComm, &nodeSize), "MPI_Comm_size(node)")
        // Every rank learns whether all ranks share one machine; all return nil together if not.
        guard Int(nodeSize) == size else { return nil }
        return try allocateShared(counts: counts, localRank: rank)
    }

    /// A shared window over this machine's ranks: every local rank's segment.
    private func allocateShared(counts: [Int], localRank: Int) throws -> [UnsafeMutablePointer<Float>] {
        let rank = localRank
        var base: UnsafeMutableRawPointer?
        var win: MPI_Win?
        try Self.check(MPI_Win_allocate_shared(MPI_Aint(counts[rank] * 4), 4, cmpi_info_null(), nodeComm, &base, &win),
                       "MPI_Win_allocate_shared")
        try Self.check(MPI_Win_lock_all(cmpi_mode_nocheck(), win), "MPI_Win_lock_all")
        windows.append(win)
        var segments: [UnsafeMutablePointer<Float>] = []
        for r in 0..<counts.count {
            var bytes: MPI_Aint = 0
            var unit: Int32 = 0
            var pointer: UnsafeMutableRawPointer?
            try Self.check(MPI_Win_shared_query(win, Int32(r), &bytes, &unit, &pointer), "MPI_Win_shared_query")
            // A zero-size segment may report no address; it is never read.
            segments.append((pointer ?? base ?? Self.emptySegment).bindMemory(to: Float.self, capacity: max(counts[r], 1)))
        }
        try sharedSync(what: "shared window setup")
        return segments
    }

    public func sharedSync(what: String) throws {
        for w in windows { try Self.check(MPI_Win_sync(w), "MPI_Win_sync(\(what))") }
        let slot = takeSlot(what)
        try Self.check(MPI_Ibarrier(nodeComm ?? comm, requests + slot), "MPI_Ibarrier(\(what))")
        try wait(slot)
        for w in windows { try Self.check(MPI_Win_sync(w), "MPI_Win_sync(\(what))") }
    }

    public var sharedMemoryKind: String { "MPI-3 shared windows" }

    /// Processes share no objects: only root keeps its own.
    public func shareInProcess(_ value: Any?, what: String) throws -> Any? { rank == 0 ? value : nil }

    public func finalize() {
        for i in windows.indices {
            MPI_Win_unlock_all(windows[i])
            MPI_Win_free(&windows[i])
        }
        windows = []
        MPI_Finalize()
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}
