/// Every piece of memory a model's layers use, declared once while the model is built and allocated
/// once, in flat buffers that never move (llm.c's layout):
///
/// - **parameters** and their **gradients**: trainable, one flat buffer each. The optimizer makes one
///   pass over the whole buffer and the all-reduce is one call (or a few buckets) over one buffer.
///   Where they live is the caller's choice at `seal` (private memory, or node-shared windows).
/// - **buffers**: non-trainable state saved with the weights (BatchNorm's running statistics). Not
///   optimized, not gradient-reduced; every rank computes the same values.
/// - **workspace**: a layer's own memory for the largest batch, kept from forward to backward
///   (activations inside a block, BatchNorm's batch statistics, max-pooling's argmax).
/// - **scratch**: memory a layer needs only during one call (Conv2d's im2col columns or Winograd tiles). One region,
///   as large as the largest request, shared by every layer: only one layer runs at a time.
///
/// Layers `reserve` ranges (offsets) before `seal`, and take pointers once after it.
public final class ParameterStore {
    public enum DType: String, Sendable { case f32 = "F32", i64 = "I64" }

    /// A named range of the parameters or buffers, with the shape and dtype PyTorch's state_dict gives it.
    public struct Entry: Sendable {
        public let name: String
        public let shape: [Int]
        /// In floats (an I64 value takes two).
        public let offset: Int
        public let dtype: DType
        public var count: Int { shape.reduce(1, *) }
    }

    /// Trainable tensors, in reservation order.
    public private(set) var entries: [Entry] = []
    /// Non-trainable tensors (running statistics), in reservation order.
    public private(set) var bufferEntries: [Entry] = []
    /// Floats in the parameter (and gradient) buffer, alignment padding included.
    public private(set) var count = 0
    public private(set) var bufferCount = 0
    public private(set) var workspaceCount = 0
    public private(set) var scratchCount = 0

    public private(set) var parameters = FloatBuffer(count: 0)
    public private(set) var gradients = FloatBuffer(count: 0)
    public private(set) var buffers = FloatBuffer(count: 0)
    public private(set) var workspace = FloatBuffer(count: 0)
    public private(set) var scratch = FloatBuffer(count: 0)
    public private(set) var sealed = false
    /// `--invariant-shards`: this rank's shards of each batch (1: off). When more than one, `seal`
    /// allocates one gradient-sized plane per shard for the shards' partial sums (`shardPlanes`).
    public let gradientShards: Int
    public private(set) var shardPlanes = FloatBuffer(count: 0)

    public init(gradientShards: Int = 1) {
        precondition(gradientShards >= 1)
        self.gradientShards = gradientShards
    }

    /// Every range starts on a 16-float (64-byte) line, so kernels see aligned rows.
    private static func aligned(_ n: Int) -> Int { (n + 15) / 16 * 16 }

    /// Reserves a trainable tensor of `shape` under `name` and returns its offset.
    public func reserve(name: String, shape: [Int]) -> Int {
        precondition(!sealed, "ParameterStore.reserve after seal")
        let offset = Self.aligned(count)
        entries.append(Entry(name: name, shape: shape, offset: offset, dtype: .f32))
        count = offset + shape.reduce(1, *)
        return offset
    }

    /// Reserves a non-trainable tensor and returns its offset in `buffers`.
    public func reserveBuffer(name: String, shape: [Int], dtype: DType = .f32) -> Int {
        precondition(!sealed, "ParameterStore.reserveBuffer after seal")
        let offset = Self.aligned(bufferCount)
        bufferEntries.append(Entry(name: name, shape: shape, offset: offset, dtype: dtype))
        bufferCount = offset + shape.reduce(1, *) * (dtype == .i64 ? 2 : 1)
        return offset
    }

    /// Reserves `floats` of workspace for one layer and returns its offset.
    public func reserveWorkspace(_ floats: Int) -> Int {
        precondition(!sealed, "ParameterStore.reserveWorkspace after seal")
        let offset = Self.aligned(workspaceCount)
        workspaceCount = offset + floats
        return offset
    }

    /// Asks for at least `floats` of scratch (shared by all layers, at `scratch.pointer`).
    public func reserveScratch(_ floats: Int) {
        precondition(!sealed, "ParameterStore.reserveScratch after seal")
        scratchCount = max(scratchCount, floats)
    }

    /// Allocates everything once every layer has reserved its ranges. `parameters` and `gradients`
    /// may be memory the caller provides (node-shared windows of at least `count` floats); the
    /// gradients are zeroed, the parameters are left as they are (for the layers to initialize).
    public func seal(parameters p: FloatBuffer? = nil, gradients g: FloatBuffer? = nil) {
        precondition(!sealed, "ParameterStore.seal twice")
        precondition((p?.count ?? count) >= count && (g?.count ?? count) >= count, "ParameterStore.seal: memory smaller than the reservations")
        sealed = true
        parameters = p ?? FloatBuffer(count: count)
        gradients = g ?? FloatBuffer(count: count)
        gradients.pointer.update(repeating: 0, count: count)
        buffers = FloatBuffer(count: bufferCount)
        workspace = FloatBuffer(count: workspaceCount)
        scratch = FloatBuffer(count: scratchCount)
        if gradientShards > 1 { shardPlanes = FloatBuffer(count: gradientShards * count) }
    }

    public func parameterPointer(_ offset: Int) -> UnsafeMutablePointer<Float> { parameters.pointer + offset }
    public func gradientPointer(_ offset: Int) -> UnsafeMutablePointer<Float> { gradients.pointer + offset }
    public func bufferPointer(_ offset: Int) -> UnsafeMutablePointer<Float> { buffers.pointer + offset }
    public func int64BufferPointer(_ offset: Int) -> UnsafeMutablePointer<Int64> {
        UnsafeMutableRawPointer(buffers.pointer + offset).assumingMemoryBound(to: Int64.self)
    }
    public func workspacePointer(_ offset: Int) -> UnsafeMutablePointer<Float> { workspace.pointer + offset }

    /// Number of trainable values (the padding between tensors excluded).
    public var trainableCount: Int { entries.reduce(0) { $0 + $1.count } }

    public func entry(named name: String) -> Entry? { entries.first { $0.name == name } }

    /// Order-sensitive checksum of the parameters' and buffers' bit patterns, for cross-rank sync checks.
    public func checksum() -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for buffer in [(parameters, count), (buffers, bufferCount)] {
            let p = UnsafeRawPointer(buffer.0.pointer).bindMemory(to: UInt32.self, capacity: buffer.1)
            for i in 0..<buffer.1 { h = (h ^ UInt64(p[i])) &* 0x100_0000_01B3 }
        }
        return h
    }
}
