import Comm
import Foundation
import XCTest

/// The collectives of ranks that are threads of one process.
final class ThreadCommunicatorTests: XCTestCase {
    func testCollectives() throws {
        let n = 3
        let results = Results(n)
        try InProcessRanks.run(count: n, stallTimeout: 30, cores: 2) { comm in
            let r = comm.rank
            // Sums in rank order, the same bits on every rank.
            var x: [Float] = [Float(r) + 0.1, 1e8, -Float(r)]
            try x.withUnsafeMutableBufferPointer { try comm.allreduceSum($0.baseAddress!, count: 3, what: "f") }
            var d: [Double] = [Double(r)]
            try comm.allreduceSum(&d, what: "d")
            // Deferred: started, then waited.
            var y: [Float] = [Float(r + 1)]
            let request = try y.withUnsafeMutableBufferPointer { try comm.startAllreduceSum($0.baseAddress!, count: 1, what: "y") }
            try comm.wait(request)
            var bytes: [UInt8] = r == 1 ? [7, 8, 9] : []
            try comm.broadcast(bytes: &bytes, root: 1, what: "b")
            let gathered = try comm.allgather(UInt64(10 + r), what: "g")
            let segments = try comm.sharedSegments(counts: [4, 0, 5])!
            if r != 1 { segments[r][0] = Float(100 + r) }  // rank 1's segment is empty
            try comm.sharedSync(what: "s")
            let seen = segments.map { $0[0] }
            let shared = try comm.shareInProcess(r == 0 ? "root's" : "mine", what: "o") as? String
            results.set(r, "\(x) \(d) \(y) \(bytes) \(gathered) \(segments[1] - segments[0]) \(segments[2] - segments[0]) \(seen.prefix(1)) \(seen[2]) \(shared ?? "nil")")
        }
        let expected = "[\(((Float(0.1) + 1.1) + 2.1)), 3e+08, -3.0] [3.0] [6.0] [7, 8, 9] [10, 11, 12] 4 4 [100.0] 102.0 root's"
        for r in 0..<n { XCTAssertEqual(results.get(r), expected, "rank \(r)") }
    }

    /// A rank that throws ends the others' waits with `PeerFailure`; the run throws its error.
    func testFailingRankEndsTheOthers() {
        struct Boom: Error {}
        let results = Results(2)
        XCTAssertThrowsError(try InProcessRanks.run(count: 2, stallTimeout: 30, cores: 2) { comm in
            if comm.rank == 1 { throw Boom() }
            do { try comm.barrier(what: "waits for rank 1") } catch { results.set(0, "\(error)"); throw error }
        }) { XCTAssertTrue($0 is Boom, "\($0)") }
        XCTAssertEqual(results.get(0), "rank 1 failed while this rank waited in 'waits for rank 1'")
    }
}

private final class Results: @unchecked Sendable {
    private var values: [String]
    private let lock = NSLock()
    init(_ n: Int) { values = [String](repeating: "", count: n) }
    func set(_ r: Int, _ v: String) { lock.lock(); values[r] = v; lock.unlock() }
    func get(_ r: Int) -> String { lock.lock(); defer { lock.unlock() }; return values[r] }
}
