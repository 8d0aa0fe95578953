/// All parameters of a model in one flat buffer and all gradients in another, as in llm.c. Layers
/// reserve ranges while the model is built and keep pointers into both buffers; the optimizer makes
/// one pass over the whole buffer and the all-reduce is one call (or a few buckets) over one buffer.
public final class ParameterStore {
    /// A named range of the flat buffers, with the shape PyTorch's state_dict gives it.
    public struct Entry: Sendable {
        public let name: String
        public let shape: [Int]
        public let offset: Int
        public var count: Int { shape.reduce(1, *) }
    }

    public private(set) var entries: [Entry] = []
    public private(set) var count = 0
    public private(set) var parameters = FloatBuffer(count: 0)
    public private(set) var gradients = FloatBuffer(count: 0)
    private var sealed = false

    public init() {}

    /// Reserves `shape` under `name` and returns its offset. Only before `seal()`.
    public func reserve(name: String, shape: [Int]) -> Int {
        precondition(!sealed, "ParameterStore.reserve after seal")
        // Keep every tensor 16-float (64-byte) aligned so kernels see aligned rows.
        let offset = (count + 15) / 16 * 16
        entries.append(Entry(name: name, shape: shape, offset: offset))
        count = offset + shape.reduce(1, *)
        return offset
    }

    /// Allocates the two flat buffers once every layer has reserved its ranges.
    public func seal() {
        precondition(!sealed)
        sealed = true
        parameters = FloatBuffer(count: count)
        gradients = FloatBuffer(count: count)
    }

    /// Moves the gradients to other memory (a node-shared window), zeroed. Layers must `bind` again.
    public func moveGradients(to buffer: FloatBuffer) {
        precondition(sealed && buffer.count >= count)
        buffer.zero()
        gradients = buffer
    }

    /// Moves the parameters to other memory (a node-shared window that several processes map),
    /// copying only `range` of the current values: each process fills its own slice of the one
    /// shared copy. Layers must `bind` again.
    public func moveParameters(to buffer: FloatBuffer, copying range: Range<Int>) {
        precondition(sealed && buffer.count >= count && range.upperBound <= count)
        (buffer.pointer + range.lowerBound).update(from: parameters.pointer + range.lowerBound, count: range.count)
        parameters = buffer
    }

    public func parameterPointer(_ offset: Int) -> UnsafeMutablePointer<Float> { parameters.pointer + offset }
    public func gradientPointer(_ offset: Int) -> UnsafeMutablePointer<Float> { gradients.pointer + offset }

    /// Number of trainable values (the padding between tensors excluded).
    public var trainableCount: Int { entries.reduce(0) { $0 + $1.count } }

    public func entry(named name: String) -> Entry? { entries.first { $0.name == name } }

    /// Order-sensitive checksum of the parameters' bit patterns, for cross-rank sync checks.
    public func checksum() -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        let p = UnsafeRawPointer(parameters.pointer).bindMemory(to: UInt32.self, capacity: count)
        for i in 0..<count { h = (h ^ UInt64(p[i])) &* 0x100_0000_01B3 }
        return h
    }
}
