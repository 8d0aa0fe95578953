import Engine

/// A model: a chain of layers over one `ParameterStore`. Every parameter, buffer, activation and
/// activation gradient is declared while the model is built and allocated once, for `maxBatch`
/// samples, in memory that never moves; a forward or backward pass allocates nothing.
///
/// Building takes two steps, so that the caller can choose where the parameters and gradients live
/// before any layer takes a pointer: `init(layers:maxBatch:)` reserves, `allocate` seals the store
/// and binds every layer once. `init(layers:maxBatch:seed:)` does both in private memory.
///
/// Tensor names are those of the equivalent torch.nn.Sequential's state_dict: "\(index).weight".
public final class Sequential {
    public let store: ParameterStore
    public let maxBatch: Int
    private let chain: LayerChain
    /// First flat-buffer offset of each layer's parameters (nil for a layer without parameters).
    public let parameterStart: [Int?]

    public var layers: [Layer] { chain.layers }
    public var inputShape: Shape { chain.inputShape }
    public var outputShape: Shape { chain.outputShape }
    /// Torch index of each layer, nil for one the torch model would not have.
    public var torchIndex: [Int?] { chain.torchIndex }

    /// Reserves the model's memory; `allocate` must follow. `gradientShards`: this rank's shards of
    /// each batch under `--invariant-shards` (`GradientShards`), 1 when off.
    public init(layers: [Layer], maxBatch: Int, gradientShards: Int = 1) {
        precondition(maxBatch > 0)
        self.maxBatch = maxBatch
        store = ParameterStore(gradientShards: gradientShards)
        chain = LayerChain(layers: layers, ownsInput: true, inputNeedsGrad: false)
        parameterStart = chain.reserve(in: store, prefix: "", maxBatch: maxBatch)
        var randomIndex: UInt64 = 0
        for case let keyed as KeyedRandomness in chain.allLayers {
            keyed.randomnessIndex = randomIndex
            randomIndex += 1
        }
    }

    /// A model in private memory, initialized from `seed`.
    public convenience init(layers: [Layer], maxBatch: Int, seed: UInt64) {
        self.init(layers: layers, maxBatch: maxBatch)
        allocate(initializeParametersWithSeed: seed)
    }

    /// Seals the store (parameters and gradients in `parameters`/`gradients` when given, e.g.
    /// node-shared windows) and binds every layer, once. With a seed, writes torch's default
    /// initialization into the parameters and resets the buffers.
    public func allocate(parameters: FloatBuffer? = nil, gradients: FloatBuffer? = nil, initializeParametersWithSeed seed: UInt64?) {
        store.seal(parameters: parameters, gradients: gradients)
        chain.bind(to: store)
        if let seed { resetParameters(seed: seed) }
    }

    /// The shards' partial sums for `StepContext.shards` under `--invariant-shards` (after
    /// `allocate`): `store.gradientShards` of them (one: the rank's whole batch is one shard).
    public var gradientShards: GradientShards {
        GradientShards(count: store.gradientShards, planes: store.shardPlanes.pointer,
                       gradients: store.gradients.pointer, gradientCount: store.count)
    }

    public func resetParameters(seed: UInt64) {
        var rng = RandomStream(seed: seed, stream: 0x1A17)
        for layer in layers { layer.resetParameters(rng: &rng) }
    }

    /// Where the caller writes a batch of inputs: (maxBatch, inputShape).
    public var input: UnsafeMutablePointer<Float> { chain.input }
    /// The outputs of the last `forward`: (batch, outputShape).
    public var output: UnsafePointer<Float> { UnsafePointer(chain.output(input: chain.input)) }
    /// Where the loss writes d(loss)/d(output) before `backward`.
    public var outputGrad: UnsafeMutablePointer<Float> { chain.outputGrad! }
    public var classes: Int { outputShape.count }

    public func forward(batch: Int, context: StepContext) {
        precondition(batch <= maxBatch)
        chain.forward(chain.input, batch: batch, context: context)
    }

    /// Backpropagates `outputGrad` into the store's gradients (written, or added to when
    /// `context.accumulateGradients`). After each layer with parameters, `parametersReady(offset)`
    /// says that every gradient at or after `offset` is final, so a reducer can start on it.
    public func backward(batch: Int, context: StepContext, parametersReady: (Int) -> Void = { _ in }) {
        chain.backward(chain.input, dx: nil, batch: batch, context: context) { i in
            if let start = parameterStart[i] { parametersReady(start) }
        }
    }

    public var parameterCount: Int { store.trainableCount }

    /// The GEMMs of one training step at `batch` samples, every layer's (blocks' inner layers
    /// included); `direct`: those of the layers' definitions, convolutions as im2col.
    public func gemms(batch: Int, direct: Bool = false) -> [GEMMShape] { chain.gemms(batch: batch, direct: direct) }

    /// One line per layer, the tutorials' model summary: torch name, module, output shape, parameters.
    public func summary(title: String = "Model") -> String {
        var rows: [(String, String, String)] = [("Input", "[B" + inputShape.dims.map { ", \($0)" }.joined() + "]", "0")]
        func add(_ layer: Layer, name: String, depth: Int) {
            let shape = "[B" + layer.outputShape.dims.map { ", \($0)" }.joined() + "]"
            rows.append((String(repeating: "  ", count: depth) + name + layer.typeName, shape, String(layer.parameterCount)))
            if let block = layer as? ContainsLayers {
                for child in block.children { add(child.layer, name: child.name + ": ", depth: depth + 1) }
            }
        }
        for (i, layer) in layers.enumerated() { add(layer, name: torchIndex[i].map { "\($0): " } ?? "-: ", depth: 0) }
        let w0 = max(22, rows.map(\.0.count).max()! + 2), w1 = max(16, rows.map(\.1.count).max()! + 2)
        let rule = "  " + String(repeating: "-", count: w0 + w1 + 8)
        var lines = ["\(title):", "  " + pad("Layer", w0) + pad("Output shape", w1) + "Params", rule]
        for r in rows { lines.append("  " + pad(r.0, w0) + pad(r.1, w1) + r.2) }
        lines.append(rule)
        lines.append("  Total parameters: \(parameterCount)")
        if !store.bufferEntries.isEmpty {
            lines.append("  Buffers (running statistics, not trained): \(store.bufferEntries.reduce(0) { $0 + $1.count })")
        }
        return lines.joined(separator: "\n")
    }

    private func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }
}
