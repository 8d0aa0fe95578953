import Comm
import Data
import Foundation
import Engine
import NN

/// What a run will allocate, estimated before anything large is allocated, against the memory this
/// machine has. A run that cannot fit is refused with one line instead of dying in an allocation.
public struct MemoryEstimate {
    /// (what, bytes) per rank; a size that overflows is Int.max.
    public var items: [(String, Int)] = []

    public init() {}

    public var total: Int { items.reduce(0) { MemoryEstimate.saturating($0, plus: $1.1) } }

    static func saturating(_ a: Int, times b: Int) -> Int {
        let (p, overflow) = a.multipliedReportingOverflow(by: b)
        return overflow ? Int.max : p
    }

    static func saturating(_ a: Int, plus b: Int) -> Int {
        let (s, overflow) = a.addingReportingOverflow(b)
        return overflow ? Int.max : s
    }

    /// The data of `--dataset synthetic:N` (train and test), before it is generated.
    public static func syntheticData(_ kind: DatasetKind) -> MemoryEstimate {
        var e = MemoryEstimate()
        if case .synthetic(let n) = kind {
            e.items.append(("data", saturating(n + max(n / 5, 100), times: Synthetic.side * Synthetic.side + 4)))
        }
        return e
    }

    /// The model's parameters, gradients, optimizer state, buffers, activations and scratch, as its
    /// layers reserved them (before the store allocates anything).
    public static func model(_ store: ParameterStore, stateBuffers: Int) -> MemoryEstimate {
        let paramBytes = saturating(store.count, times: 4)
        var e = MemoryEstimate()
        e.items.append(("parameters and gradients", saturating(paramBytes, times: 2)))
        e.items.append(("optimizer state", saturating(paramBytes, times: stateBuffers)))
        e.items.append(("activations, buffers and scratch", saturating(saturating(store.workspaceCount, plus: saturating(store.scratchCount, plus: store.bufferCount)), times: 4)))
        return e
    }

    /// Bytes this process may still allocate: MemAvailable plus free swap, or the cgroup's limit
    /// less its usage when that is smaller. `DDP_TEST_MEMORY_BYTES` overrides it (tests).
    public static func availableBytes() -> Int {
        if let v = ProcessInfo.processInfo.environment["DDP_TEST_MEMORY_BYTES"], let n = Int(v) { return n }
        var available = Int.max
        if let info = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) {
            var fields: [String: Int] = [:]
            for line in info.split(separator: "\n") {
                let parts = line.split(separator: " ", omittingEmptySubsequences: true)
                if parts.count >= 2, let kb = Int(parts[1]) { fields[String(parts[0].dropLast())] = kb * 1024 }
            }
            if let a = fields["MemAvailable"] { available = a + (fields["SwapFree"] ?? 0) }
        }
        if let max = try? String(contentsOfFile: "/sys/fs/cgroup/memory.max", encoding: .utf8),
           let limit = Int(max.trimmingCharacters(in: .whitespacesAndNewlines)),
           let used = (try? String(contentsOfFile: "/sys/fs/cgroup/memory.current", encoding: .utf8))
               .flatMap({ Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) {
            available = min(available, limit - used)
        }
        return available
    }

    /// Refuses (on every rank alike) when the ranks on some machine would need more than it has.
    public func check(comm: Communicator, what: String) throws {
        let need = total, available = MemoryEstimate.availableBytes()
        let short: UInt64 = MemoryEstimate.saturating(need, times: comm.localSize) > available ? 1 : 0
        guard try comm.allgather(short, what: "allgather(memory check)").contains(1) else { return }
        let detail = items.filter { $0.1 > 0 }.map { "\($0.0) \(MemoryEstimate.format($0.1))" }.joined(separator: ", ")
        throw UsageError("\(what) needs about \(MemoryEstimate.format(need)) per rank (\(detail))"
            + (comm.localSize > 1 ? " x \(comm.localSize) ranks on this machine" : "")
            + ", more than the \(MemoryEstimate.format(max(available, 0))) available; use a smaller model, dataset or batch")
    }

    public static func format(_ bytes: Int) -> String {
        if bytes == Int.max { return "more than 9 EB" }
        let units = ["B", "KB", "MB", "GB", "TB", "PB", "EB"]
        var v = Double(bytes), u = 0
        while v >= 1000 && u < units.count - 1 { v /= 1000; u += 1 }
        return u == 0 ? "\(bytes) B" : String(format: "%.1f %@", v, units[u])
    }
}
