import Engine

/// Layers run one after another, each reading the previous one's output: the body of a `Sequential`
/// and of a residual block. The chain reserves every intermediate value and its gradient in the
/// store's workspace once (a view layer's output is its input's memory), wires the layers that fuse
/// the activation or the max-pooling after them, and runs forward and backward over plain pointers.
///
/// Value 0 is the chain's input: memory the chain owns (`ownsInput`, a model's input) or the
/// caller's, given at each call. Value i + 1 is layer i's output; the last is the chain's output.
final class LayerChain {
    let layers: [Layer]
    let inputShape: Shape
    let outputShape: Shape
    /// torch's nn.Sequential index of each layer (nil: a layer torch's model would not have).
    let torchIndex: [Int?]
    private let ownsInput: Bool
    /// The value whose memory holds value i: itself, or for a view the value before it (0 = input).
    private let home: [Int]
    /// Whether layer i must write its input gradient (some earlier layer has parameters, or the
    /// chain's caller wants the input gradient).
    private let needsInputGrad: [Bool]
    /// For a layer that runs the pooling after it (`FusesMaxPool`): itself, and the pooling's index.
    /// The layers from it to the pooling run as one step, and the values between have no memory.
    private let pooling: [(layer: FusesMaxPool, pool: Int)?]
    /// Layers that such a step runs (the pooling, and the activation before it).
    private let inPooling: [Bool]
    /// Workspace offsets of each value that has memory of its own, and of its gradient.
    private var offsets: [(value: Int, grad: Int)?] = []
    private var values: [UnsafeMutablePointer<Float>?] = []
    private var grads: [UnsafeMutablePointer<Float>?] = []

    init(layers: [Layer], ownsInput: Bool, inputNeedsGrad: Bool) {
        precondition(!layers.isEmpty)
        for i in 1..<layers.count {
            precondition(layers[i].inputShape == layers[i - 1].outputShape,
                         "layer \(i) (\(layers[i].typeName)) takes \(layers[i].inputShape), gets \(layers[i - 1].outputShape)")
        }
        self.layers = layers
        self.ownsInput = ownsInput
        inputShape = layers[0].inputShape
        outputShape = layers[layers.count - 1].outputShape

        var index: [Int?] = []
        var next = 0
        for layer in layers {
            if layer.hasTorchIndex { index.append(next); next += 1 } else { index.append(nil) }
        }
        torchIndex = index

        // A layer that can fuse the activation after it applies it in its own pass; the activation
        // becomes a view.
        for i in 0..<(layers.count - 1) {
            if let fuser = layers[i] as? FusesActivation, let act = layers[i + 1] as? Activation, fuser.fuse(act.kind) {
                act.fusedIntoPrevious = true
            }
        }
        // A layer that can run the 2x2 max-pooling after it (after the activation it fused) does so,
        // one sample at a time; that pooling then does nothing of its own.
        var pooling = [(layer: FusesMaxPool, pool: Int)?](repeating: nil, count: layers.count)
        var inPooling = [Bool](repeating: false, count: layers.count)
        for i in layers.indices {
            guard let fuser = layers[i] as? FusesMaxPool else { continue }
            var j = i + 1
            if j < layers.count, let act = layers[j] as? Activation, act.fusedIntoPrevious { j += 1 }
            guard j < layers.count, let pool = layers[j] as? MaxPool2d, fuser.fuse(pool) else { continue }
            pool.fusedIntoPrevious = true
            pooling[i] = (fuser, j)
            for k in (i + 1)...j { inPooling[k] = true }
        }
        self.pooling = pooling
        self.inPooling = inPooling
        var home = [0]
        for (i, layer) in layers.enumerated() { home.append(layer.isView ? home[i] : i + 1) }
        self.home = home
        var seenParams = inputNeedsGrad
        var needs: [Bool] = []
        for layer in layers { needs.append(seenParams); if layer.parameterCount > 0 { seenParams = true } }
        needsInputGrad = needs
    }

    /// Reserves the layers' memory (tensor names "\(prefix)\(index).weight") and the values'.
    /// Returns each layer's first parameter offset (nil for a layer without parameters).
    @discardableResult
    func reserve(in store: ParameterStore, prefix: String, maxBatch: Int) -> [Int?] {
        var starts: [Int?] = []
        for (i, layer) in layers.enumerated() {
            let before = store.entries.count
            layer.reserve(in: store, prefix: torchIndex[i].map { "\(prefix)\($0)." } ?? prefix, maxBatch: maxBatch)
            starts.append(store.entries.count > before ? store.entries[before].offset : nil)
        }
        offsets = (0...layers.count).map { i in
            // Not the output of a layer that runs the pooling after it (nothing writes it).
            guard home[i] == i, i > 0 || ownsInput, i == 0 || pooling[i - 1] == nil else { return nil }
            let n = maxBatch * (i == 0 ? inputShape.count : layers[i - 1].outputShape.count)
            return (store.reserveWorkspace(n), store.reserveWorkspace(n))
        }
        return starts
    }

    func bind(to store: ParameterStore) {
        for layer in layers { layer.bind(to: store) }
        values = offsets.map { $0.map { store.workspacePointer($0.value) } }
        grads = offsets.map { $0.map { store.workspacePointer($0.grad) } }
    }

    var input: UnsafeMutablePointer<Float> { values[0]! }
    /// The last forward's output (its memory is fixed; valid after `forward`).
    func output(input x: UnsafePointer<Float>) -> UnsafeMutablePointer<Float> { value(layers.count, x) }
    /// Where the caller writes the gradient of the output before `backward`, or nil when the output is
    /// the input's memory (a chain of views).
    var outputGrad: UnsafeMutablePointer<Float>? { grads[home[layers.count]] }

    /// True when the output is the input's memory (a chain of views only).
    var outputIsInput: Bool { home[layers.count] == 0 }

    private func value(_ i: Int, _ x: UnsafePointer<Float>) -> UnsafeMutablePointer<Float> {
        home[i] == 0 ? UnsafeMutablePointer(mutating: x) : values[home[i]]!
    }
    private func grad(_ i: Int, _ dx: UnsafeMutablePointer<Float>?) -> UnsafeMutablePointer<Float>? {
        home[i] == 0 ? dx : grads[home[i]]
    }

    func forward(_ x: UnsafePointer<Float>, batch: Int, context: StepContext) {
        for i in 0..<layers.count where !inPooling[i] {
            if let (fuser, pool) = pooling[i] {
                fuser.forward(value(i, x), pooled: value(pool + 1, x), batch: batch, context: context)
            } else {
                layers[i].forward(value(i, x), value(i + 1, x), batch: batch, context: context)
            }
        }
    }

    /// Backpropagates `outputGrad` to the parameters and, when `dx` is given, to the input. After each
    /// layer, `layerDone(i)` (the reducer's cue for the gradients of layer i and later).
    func backward(_ x: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?, batch: Int, context: StepContext,
                  layerDone: (Int) -> Void = { _ in }) {
        for i in stride(from: layers.count - 1, through: 0, by: -1) where !inPooling[i] {
            let last = pooling[i]?.pool ?? i
            guard let dy = grad(last + 1, dx) else { continue }
            let dxi = needsInputGrad[i] ? grad(i, dx) : nil
            if let (fuser, _) = pooling[i] {
                fuser.backward(x: value(i, x), pooled: value(last + 1, x), dPooled: dy, dx: dxi, batch: batch, context: context)
            } else {
                layers[i].backward(x: value(i, x), y: value(i + 1, x), dy: dy, dx: dxi, batch: batch, context: context)
            }
            layerDone(i)
        }
    }

    /// The GEMMs of one training step at `batch` samples (`direct`: see `Layer.gemms`).
    func gemms(batch: Int, direct: Bool) -> [GEMMShape] {
        layers.indices.flatMap { layers[$0].gemms(batch: batch, inputGrad: needsInputGrad[$0], direct: direct) }
    }

    /// Every layer, inner layers of blocks included, depth first.
    var allLayers: [Layer] { layers.flatMap(LayerChain.withDescendants) }

    static func withDescendants(_ layer: Layer) -> [Layer] {
        guard let block = layer as? ContainsLayers else { return [layer] }
        return [layer] + block.children.flatMap { withDescendants($0.layer) }
    }
}
