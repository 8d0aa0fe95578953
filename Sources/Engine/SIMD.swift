/// 16-lane loads and stores for the single passes over flat buffers (optimizers, the shared-memory
/// gradient sum). The scalar loops were not vectorized by the compiler: the SGD step took 0.56 ms
/// for 670k parameters against 0.17 ms with these.
public typealias F16 = SIMD16<Float>

@inlinable @inline(__always)
public func load16(_ p: UnsafePointer<Float>, _ i: Int) -> F16 {
    UnsafeRawPointer(p + i).loadUnaligned(as: F16.self)
}

@inlinable @inline(__always)
public func load16(_ p: UnsafeMutablePointer<Float>, _ i: Int) -> F16 {
    UnsafeRawPointer(p + i).loadUnaligned(as: F16.self)
}

@inlinable @inline(__always)
public func store16(_ v: F16, _ p: UnsafeMutablePointer<Float>, _ i: Int) {
    UnsafeMutableRawPointer(p + i).storeBytes(of: v, as: F16.self)
}
