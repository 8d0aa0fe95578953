import Engine

/// A chain of layers over one flat parameter store, with every activation and activation gradient
/// allocated once for `maxBatch` samples. A forward or backward pass allocates nothing.
///
/// `torchIndex[i]` is layer i's index in the equivalent torch.nn.Sequential, which has no leading
/// Flatten; parameters are named "\(index).weight" and "\(index).bias" as in its state_dict.
public final class Sequential {
    public let layers: [Layer]
    public let store = ParameterStore()
    public let maxBatch: Int
    public let inputShape: Shape
    public let outputShape: Shape
    /// Torch index of each layer, nil for the leading Flatten that torch's model would not have.
    public let torchIndex: [Int?]
    /// First flat-buffer offset of each layer's parameters (nil for a layer without parameters).
    public let parameterStart: [Int?]

    private var activations: [UnsafeMutablePointer<Float>] = []
    private var activationGrads: [UnsafeMutablePointer<Float>] = []
    private var ownedBuffers: [FloatBuffer] = []
    private let needsInputGrad: [Bool]

    public init(layers: [Layer], maxBatch: Int, seed: UInt64) {
        precondition(!layers.isEmpty && maxBatch > 0)
        self.layers = layers
        self.maxBatch = maxBatch
        inputShape = layers[0].inputShape
        outputShape = layers[layers.count - 1].outputShape

        var index: [Int?] = []
        var next = 0
        for (i, layer) in layers.enumerated() {
            if i == 0 && layer is Flatten { index.append(nil) } else { index.append(next); next += 1 }
        }
        torchIndex = index

        var starts: [Int?] = []
        for (i, layer) in layers.enumerated() {
            let before = store.count
            layer.reserveParameters(in: store, prefix: index[i].map { "\($0)." } ?? "")
            starts.append(store.count > before ? store.entries.first { $0.offset >= before }?.offset : nil)
        }
        parameterStart = starts
        store.seal()
        for layer in layers { layer.bind(to: store) }

        // A layer that can fuse the activation after it applies it in its own pass; the activation
        // becomes a view.
        for i in 0..<(layers.count - 1) {
            if let fuser = layers[i] as? FusesActivation, let act = layers[i + 1] as? Activation, fuser.fuse(act.kind) {
                act.fusedIntoPrevious = true
            }
        }

        var randomIndex: UInt64 = 0
        for case let keyed as KeyedRandomness in layers {
            keyed.randomnessIndex = randomIndex
            randomIndex += 1
        }

        // A layer needs dx only if some earlier layer has parameters.
        var seenParams = false
        var needs: [Bool] = []
        for layer in layers { needs.append(seenParams); if layer.parameterCount > 0 { seenParams = true } }
        needsInputGrad = needs

        let input = FloatBuffer(count: maxBatch * inputShape.count)
        let inputGrad = FloatBuffer(count: maxBatch * inputShape.count)
        ownedBuffers = [input, inputGrad]
        activations = [input.pointer]
        activationGrads = [inputGrad.pointer]
        for layer in layers {
            if layer.isView {
                activations.append(activations.last!)
                activationGrads.append(activationGrads.last!)
            } else {
                let y = FloatBuffer(count: maxBatch * layer.outputShape.count)
                let dy = FloatBuffer(count: maxBatch * layer.outputShape.count)
                ownedBuffers += [y, dy]
                activations.append(y.pointer)
                activationGrads.append(dy.pointer)
            }
        }
        resetParameters(seed: seed)
    }

    /// Points every layer at the store's buffers again (after `store.moveGradients` or `moveParameters`).
    public func rebind() {
        for layer in layers { layer.bind(to: store) }
    }

    public func resetParameters(seed: UInt64) {
        var rng = RandomStream(seed: seed, stream: 0x1A17)
        for layer in layers { layer.resetParameters(rng: &rng) }
    }

    /// Where the caller writes a batch of inputs: (maxBatch, inputShape).
    public var input: UnsafeMutablePointer<Float> { activations[0] }
    /// The outputs of the last `forward`: (batch, outputShape).
    public var output: UnsafePointer<Float> { UnsafePointer(activations[layers.count]) }
    /// Where the loss writes d(loss)/d(output) before `backward`.
    public var outputGrad: UnsafeMutablePointer<Float> { activationGrads[layers.count] }
    public var classes: Int { outputShape.count }

    public func forward(batch: Int, context: StepContext) {
        precondition(batch <= maxBatch)
        for i in 0..<layers.count {
            layers[i].forward(activations[i], activations[i + 1], batch: batch, context: context)
        }
    }

    /// Backpropagates `outputGrad` into the store's gradients (written, or added to when
    /// `context.accumulateGradients`). After each layer with parameters, `parametersReady(offset)`
    /// says that every gradient at or after `offset` is final, so a reducer can start on it.
    public func backward(batch: Int, context: StepContext, parametersReady: (Int) -> Void = { _ in }) {
        for i in stride(from: layers.count - 1, through: 0, by: -1) {
            layers[i].backward(x: activations[i], y: activations[i + 1], dy: activationGrads[i + 1],
                               dx: needsInputGrad[i] ? activationGrads[i] : nil, batch: batch, context: context)
            if let start = parameterStart[i] { parametersReady(start) }
        }
    }

    public var parameterCount: Int { store.trainableCount }

    /// One line per layer, the tutorials' model summary.
    public func summary(title: String = "Model") -> String {
        var lines = ["\(title):"]
        let header = "  " + pad("Layer", 22) + pad("Output shape", 16) + "Params"
        lines.append(header)
        lines.append("  " + String(repeating: "-", count: 46))
        func batched(_ s: Shape) -> String { "[B" + s.dims.map { ", \($0)" }.joined() + "]" }
        lines.append("  " + pad("Input", 22) + pad(batched(inputShape), 16) + "0")
        for (i, layer) in layers.enumerated() {
            let name = torchIndex[i].map { "\($0): " } ?? "-: "
            lines.append("  " + pad(name + layer.typeName, 22) + pad(batched(layer.outputShape), 16) + String(layer.parameterCount))
        }
        lines.append("  " + String(repeating: "-", count: 46))
        lines.append("  Total parameters: \(parameterCount)")
        return lines.joined(separator: "\n")
    }

    private func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }
}
