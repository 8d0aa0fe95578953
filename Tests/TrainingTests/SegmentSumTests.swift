import Engine
import NN
@testable import Training
import XCTest

/// The shared-memory reducer's sums over ranks: rank order by default, and under --invariant-shards
/// the tree that `GradientShards` uses, bit for bit (`treeSum`, level by level, is its definition).
final class SegmentSumTests: XCTestCase {
    /// Values of mixed magnitude, so that every order of addition rounds differently.
    func segments(_ w: Int, _ n: Int) -> [UnsafeMutablePointer<Float>] {
        var rng = RandomStream(seed: UInt64(w * 1000 + n))
        return (0..<w).map { _ in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: n + 8)
            for i in 0..<(n + 8) { p[i] = rng.uniform(-1, 1) * Float(1 << Int(rng.uniform(0, 20))) }
            return p
        }
    }

    func testTreeOrderIsTreeSum() {
        for w in [1, 2, 4, 8, 16, 32, 64] {
            for (start, n) in [(0, 64), (3, 37), (5, 7)] {  // whole vectors, a tail, a tail alone
                let s = segments(w, start + n)
                defer { s.forEach { $0.deallocate() } }
                var got = [Float](repeating: .nan, count: n)
                got.withUnsafeMutableBufferPointer { sumSegmentsInTreeOrder(s, start, n, into: $0.baseAddress!) }
                var blocks = [Float](repeating: 0, count: w * n)
                for q in 0..<w { for i in 0..<n { blocks[q * n + i] = s[q][start + i] } }
                blocks.withUnsafeMutableBufferPointer { treeSum($0.baseAddress!, parts: w, count: n, stride: n) }
                XCTAssertEqual(got.map(\.bitPattern), blocks[0..<n].map(\.bitPattern), "\(w) segments, values \(start) ..< \(start + n)")
                if w == 4 {
                    let i = n - 1
                    XCTAssertEqual(got[i], (s[0][start + i] + s[2][start + i]) + (s[1][start + i] + s[3][start + i]))
                }
            }
        }
    }

    func testRankOrderStaysTheDefault() {
        let s = segments(4, 40)
        defer { s.forEach { $0.deallocate() } }
        var got = [Float](repeating: .nan, count: 40)
        got.withUnsafeMutableBufferPointer { sumSegments(s, 0, 40, into: $0.baseAddress!) }
        for i in 0..<40 { XCTAssertEqual(got[i], ((s[0][i] + s[1][i]) + s[2][i]) + s[3][i]) }
    }
}
