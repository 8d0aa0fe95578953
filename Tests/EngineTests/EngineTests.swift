import Engine
import XCTest

final class EngineTests: XCTestCase {
    func testGemmMatchesNaive() {
        var rng = RandomStream(seed: 1)
        let m = 7, n = 5, k = 9
        let a = (0..<(m * k)).map { _ in rng.uniform(-1, 1) }
        let bT = (0..<(n * k)).map { _ in rng.uniform(-1, 1) }  // (n, k): used transposed
        var c = [Float](repeating: 1, count: m * n)
        Kernels.gemm(transA: false, transB: true, m: m, n: n, k: k, a: a, lda: k, b: bT, ldb: k, beta: 0.5, c: &c, ldc: n)
        for i in 0..<m {
            for j in 0..<n {
                var s: Float = 0.5
                for p in 0..<k { s += a[i * k + p] * bT[j * k + p] }
                XCTAssertEqual(c[i * n + j], s, accuracy: 1e-5)
            }
        }
    }

    func testGemmWithEmptyInnerDimensionScalesC() {
        var c: [Float] = [2, 4]
        let none: [Float] = [0]
        Kernels.gemm(transA: false, transB: false, m: 1, n: 2, k: 0, a: none, lda: 1, b: none, ldb: 2, beta: 0.5, c: &c, ldc: 2)
        XCTAssertEqual(c, [1, 2])
    }

    func testRandomStreamIsDeterministicAndSeparated() {
        var a = RandomStream(seed: 5), b = RandomStream(seed: 5), c = RandomStream(seed: 5, stream: 1)
        let xa = (0..<10).map { _ in a.next() }, xb = (0..<10).map { _ in b.next() }, xc = (0..<10).map { _ in c.next() }
        XCTAssertEqual(xa, xb)
        XCTAssertNotEqual(xa, xc)
        var u = RandomStream(seed: 9)
        let floats = (0..<10_000).map { _ in u.nextUnitFloat() }
        XCTAssert(floats.allSatisfy { $0 >= 0 && $0 < 1 })
        XCTAssertEqual(floats.reduce(0, +) / 10_000, 0.5, accuracy: 0.02)
    }

    /// Dropout's vectorized mask is CounterRandom.unitFloat >= p, bit for bit, and keeps about 1 - p.
    func testCounterRandomMaskEqualsUnitFloat() {
        var mask = [UInt8](repeating: 7, count: 10_003)
        for (key, p) in [(UInt64(1), Float(0.5)), (0xDEAD_BEEF_0123_4567, 0.25), (42, 0), (9, 0.999)] {
            CounterRandom.mask(&mask, key: key, count: mask.count, keepAbove: p)
            var kept = 0
            for i in 0..<mask.count {
                let expected: UInt8 = CounterRandom.unitFloat(key: key, counter: UInt64(i)) >= p ? 1 : 0
                if mask[i] != expected { return XCTFail("key \(key), p \(p), element \(i): \(mask[i]), expected \(expected)") }
                kept += Int(mask[i])
            }
            XCTAssertEqual(Double(kept) / Double(mask.count), Double(1 - p), accuracy: 0.02, "p \(p)")
        }
    }

    func testParameterStoreAlignsAndChecksums() {
        let store = ParameterStore()
        let a = store.reserve(name: "a", shape: [3])
        let b = store.reserve(name: "b", shape: [2, 2])
        store.seal()
        XCTAssertEqual(a, 0)
        XCTAssertEqual(b % 16, 0)
        XCTAssertEqual(store.trainableCount, 7)
        let before = store.checksum()
        store.parameters[b] = 1
        XCTAssertNotEqual(before, store.checksum())
    }

    func testAllFinite() {
        for n in [0, 1, 15, 16, 17, 100] {
            let b = FloatBuffer(count: n)
            for i in 0..<n { b[i] = Float(i) * 1e30 }
            XCTAssertTrue(b.allFinite, "\(n)")
            for bad in [Float.nan, .infinity, -.infinity] where n > 0 {
                for i in Set([0, n / 2, n - 1]) {
                    let saved = b[i]
                    b[i] = bad
                    XCTAssertFalse(b.allFinite, "\(bad) at \(i) of \(n)")
                    b[i] = saved
                }
            }
        }
    }
}
