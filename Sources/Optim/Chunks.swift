import Dispatch

/// Runs `body` over `count` elements split into `chunks` contiguous, 16-aligned ranges, on as many
/// threads. Optimizers use it in local mode, where one process has every core.
@inline(__always)
func forEachChunk(count: Int, chunks: Int, _ body: (Range<Int>) -> Void) {
    if chunks <= 1 || count < 65_536 {
        body(0..<count)
        return
    }
    let per = (count / chunks + 15) / 16 * 16
    DispatchQueue.concurrentPerform(iterations: chunks) { c in
        let start = min(count, c * per), end = min(count, start + per)
        if start < end { body(start..<end) }
    }
}

typealias F16 = SIMD16<Float>

@inline(__always) func load16(_ p: UnsafeMutablePointer<Float>, _ i: Int) -> F16 {
    UnsafeRawPointer(p + i).loadUnaligned(as: F16.self)
}
@inline(__always) func load16(_ p: UnsafePointer<Float>, _ i: Int) -> F16 {
    UnsafeRawPointer(p + i).loadUnaligned(as: F16.self)
}
@inline(__always) func store16(_ v: F16, _ p: UnsafeMutablePointer<Float>, _ i: Int) {
    UnsafeMutableRawPointer(p + i).storeBytes(of: v, as: F16.self)
}
