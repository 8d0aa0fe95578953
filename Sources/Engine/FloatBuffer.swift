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

    public func toArray() -> [Float] { Array(buffer) }

    public func copy(from array: [Float]) {
        precondition(array.count == count, "FloatBuffer.copy: \(array.count) values for \(count) slots")
        array.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: count) }
    }
}
