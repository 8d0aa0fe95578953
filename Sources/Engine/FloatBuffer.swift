/// A fixed-size, 64-byte aligned Float32 allocation. It never grows: everything a training step
/// touches is allocated once, up front, in these.
public final class FloatBuffer {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>
    private let owned: Bool

    public init(count: Int) {
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        pointer.initialize(repeating: 0, count: max(count, 1))
        owned = true
    }

    /// A view of memory owned elsewhere (an MPI shared window), which must outlive it.
    public init(wrapping pointer: UnsafeMutablePointer<Float>, count: Int) {
        self.count = count
        self.pointer = pointer
        owned = false
    }

    deinit { if owned { UnsafeMutableRawPointer(pointer).deallocate() } }

    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: pointer, count: count) }

    public func zero() { pointer.update(repeating: 0, count: count) }

    public subscript(i: Int) -> Float {
        get { pointer[i] }
        set { pointer[i] = newValue }
    }

    /// Whether no value is NaN or infinite (x * 0 is 0 for every finite x and NaN otherwise).
    public var allFinite: Bool {
        var acc = SIMD16<Float>(repeating: 0)
        let whole = count / 16 * 16
        let raw = UnsafeRawPointer(pointer)
        for i in stride(from: 0, to: whole, by: 16) {
            acc += raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self) * 0
        }
        var tail: Float = 0
        for i in whole..<count { tail += pointer[i] * 0 }
        return (acc.sum() + tail).isFinite
    }

    public func toArray() -> [Float] { Array(buffer) }

    public func copy(from array: [Float]) {
        precondition(array.count == count, "FloatBuffer.copy: \(array.count) values for \(count) slots")
        array.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: count) }
    }
}
