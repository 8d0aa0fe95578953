import Engine

/// What data-parallel training needs from the other ranks. `MPICommunicator` is the real one (and
/// the only code that imports MPI); `LocalCommunicator` is a world of one, for local mode and tests.
///
/// Every collective is identified by a short `what` for error and watchdog messages.
public protocol Communicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// Ranks sharing this node (Open MPI's local size), for choosing BLAS threads.
    var localSize: Int { get }
    /// The step the caller is at, shown by the stall watchdog.
    var currentStep: Int { get set }

    /// In-place sum over all ranks.
    func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int, what: String) throws
    func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int, what: String) throws
    /// Starts an in-place sum and returns a handle for `wait`. The buffer must stay untouched until then.
    func startAllreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int, what: String) throws -> Int
    /// Lets outstanding non-blocking collectives progress without waiting for them.
    func progress() throws
    func wait(_ request: Int) throws

    /// Root's `count` bytes to every rank.
    func broadcast(_ bytes: UnsafeMutableRawPointer, count: Int, root: Int, what: String) throws
    func barrier(what: String) throws
    /// Every rank's value, in rank order, on every rank.
    func allgather(_ value: UInt64, what: String) throws -> [UInt64]
    /// Every rank's `count` values, in rank order, into `all` (room for size x `count`), on every rank.
    func allgather(_ values: UnsafePointer<Double>, count: Int, into all: UnsafeMutablePointer<Double>, what: String) throws

    /// Node-shared memory for the gradient reduction, when every rank runs on this machine: a shared
    /// window with `counts[r]` floats for rank r, contiguous in rank order. Returns each rank's
    /// segment, or nil when ranks span machines (or this is a world of one).
    func sharedSegments(counts: [Int]) throws -> [UnsafeMutablePointer<Float>]?
    /// Makes this rank's writes to shared segments visible to the others and waits for all ranks.
    func sharedSync(what: String) throws
    /// The machines: how many, this rank's machine and its index there; nil when machines hold
    /// different numbers of ranks.
    func machines() throws -> MachineLayout?
    /// A shared window over this machine's ranks (whether or not others run elsewhere): `counts[l]`
    /// floats for local rank l, contiguous in local-rank order. After this, `sharedSync` is a
    /// barrier of this machine's ranks.
    func machineSegments(counts: [Int]) throws -> [UnsafeMutablePointer<Float>]
    /// Starts an in-place sum over the ranks with this rank's local index on every machine (one per
    /// machine); `wait` for it. `wire`: how the values travel (bf16: `count` UInt16 values, summed
    /// in FP32 at each step of the reduction). `scratch`: room for `count` values of the wire that
    /// the sum may use until `wait` (the caller's, allocated once).
    func startCrossMachineSum(_ buffer: UnsafeMutableRawPointer, count: Int, wire: GradientWire, scratch: UnsafeMutableRawPointer,
                              what: String) throws -> Int
    /// What `sharedSegments` gives, for the run header.
    var sharedMemoryKind: String { get }
    /// Root's `value` on every rank that runs in root's process (in-process ranks: one loaded
    /// dataset for all), nil on the others, which make their own. Called by every rank.
    func shareInProcess(_ value: Any?, what: String) throws -> Any?

    func finalize()
}

/// Where the ranks run: `count` machines of `localSize` ranks each.
public struct MachineLayout: Equatable {
    public var count: Int
    public var index: Int
    public var localRank: Int
    public var localSize: Int
    public init(count: Int, index: Int, localRank: Int, localSize: Int) {
        self.count = count
        self.index = index
        self.localRank = localRank
        self.localSize = localSize
    }
}

/// How gradients travel between machines (`--grad-wire`).
public enum GradientWire: String, CaseIterable, Codable, Sendable {
    /// 4 bytes a value: the exact sum.
    case fp32
    /// bfloat16, 2 bytes a value: half the bytes; each step of the reduction adds in FP32 and rounds.
    case bf16
}

public struct CommError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension Communicator {
    public var isRoot: Bool { rank == 0 }

    /// Broadcasts a byte array whose size only the root knows.
    public func broadcast(bytes: inout [UInt8], root: Int, what: String) throws {
        var n = UInt64(bytes.count)
        try broadcast(&n, count: 8, root: root, what: what + " (size)")
        if rank != root { bytes = [UInt8](repeating: 0, count: Int(n)) }
        if n > 0 { try bytes.withUnsafeMutableBytes { try broadcast($0.baseAddress!, count: Int(n), root: root, what: what) } }
    }

    /// One machine: every rank is local.
    public func machines() throws -> MachineLayout? { MachineLayout(count: 1, index: 0, localRank: rank, localSize: size) }
    public func machineSegments(counts: [Int]) throws -> [UnsafeMutablePointer<Float>] {
        guard let s = try sharedSegments(counts: counts) else { throw CommError("no shared memory between this machine's ranks") }
        return s
    }
    /// One rank per local index: nothing to sum.
    public func startCrossMachineSum(_ buffer: UnsafeMutableRawPointer, count: Int, wire: GradientWire, scratch: UnsafeMutableRawPointer,
                                     what: String) throws -> Int {
        throw CommError("no other machines to sum with")
    }

    public func allreduceSum(_ values: inout [Double], what: String) throws {
        let n = values.count
        try values.withUnsafeMutableBufferPointer { try allreduceSum($0.baseAddress!, count: n, what: what) }
    }
}

/// A world of one: every collective is the identity.
public final class LocalCommunicator: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public var localSize: Int { 1 }
    public var currentStep = 0
    public func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int, what: String) throws {}
    public func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int, what: String) throws {}
    public func startAllreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int, what: String) throws -> Int { 0 }
    public func progress() throws {}
    public func wait(_ request: Int) throws {}
    public func broadcast(_ bytes: UnsafeMutableRawPointer, count: Int, root: Int, what: String) throws {}
    public func barrier(what: String) throws {}
    public func allgather(_ value: UInt64, what: String) throws -> [UInt64] { [value] }
    public func allgather(_ values: UnsafePointer<Double>, count: Int, into all: UnsafeMutablePointer<Double>, what: String) throws {
        all.update(from: values, count: count)
    }
    public func sharedSegments(counts: [Int]) throws -> [UnsafeMutablePointer<Float>]? { nil }
    public func sharedSync(what: String) throws {}
    public var sharedMemoryKind: String { "none" }
    public func shareInProcess(_ value: Any?, what: String) throws -> Any? { value }
    public func finalize() {}
}

