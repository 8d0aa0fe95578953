import Engine

/// A residual block, y = f(x) + shortcut(x): `body` is a chain of layers f, and the shortcut is x
/// itself, or a 1x1 Conv2d (with bias, stride H / H') when f changes the shape.
///
/// Tensor names, under the block's prefix "i.": the body's layers as an nn.Sequential named `body`
/// ("i.body.0.weight", ...), the shortcut conv as "i.shortcut.weight" and "i.shortcut.bias". The
/// PyTorch module (README):
///
///     class Residual(nn.Module):
///         def __init__(self, body, shortcut=None):
///             super().__init__(); self.body = body; self.shortcut = shortcut
///         def forward(self, x):
///             return self.body(x) + (x if self.shortcut is None else self.shortcut(x))
public final class Residual: ContainsLayers {
    /// body(x) + shortcut(x), the shortcut a 1x1 Conv or the identity.
    public func export(_ x: String, prefix: String, into graph: inout InferenceGraph) -> String {
        let b = graph.chain(body.layers, torchIndex: body.torchIndex, from: x, prefix: prefix + "body.")
        let s = shortcut.map { $0.export(x, prefix: prefix + "shortcut.", into: &graph) } ?? x
        return graph.add("Add", [b, s])
    }

    private let body: LayerChain
    public let shortcut: Conv2d?
    public var inputShape: Shape { body.inputShape }
    public var outputShape: Shape { body.outputShape }
    private var tempOffset = 0
    /// With a shortcut conv: the body's input gradient, before the shortcut's is added.
    private var bodyInputGrad: UnsafeMutablePointer<Float>?

    public struct ShapeError: Error, CustomStringConvertible { public let description: String }

    public init(body layers: [Layer]) throws {
        body = LayerChain(layers: layers, ownsInput: false, inputNeedsGrad: true)
        guard !body.outputIsInput else {
            throw ShapeError(description: "a residual block's body must compute something (it has only views such as flatten)")
        }
        let (input, output) = (body.inputShape, body.outputShape)
        if input == output {
            shortcut = nil
        } else {
            guard input.rank == 3, output.rank == 3, output.dims[1] > 0 else {
                throw ShapeError(description: "residual block maps \(input) to \(output); a 1x1-conv shortcut needs (C, H, W) both")
            }
            let stride = max(1, (input.dims[1] + output.dims[1] - 1) / output.dims[1])
            guard let conv = Conv2d(input: input, outChannels: output.dims[0], kernel: 1, stride: stride),
                  conv.outputShape == output else {
                throw ShapeError(description: "residual block maps \(input) to \(output): no 1x1-conv shortcut with one stride gives that shape")
            }
            shortcut = conv
        }
    }

    public var typeName: String { "Residual" }
    public var parameterCount: Int { body.layers.reduce(0) { $0 + $1.parameterCount } + (shortcut?.parameterCount ?? 0) }

    public var children: [(name: String, layer: Layer)] {
        body.layers.indices.map { (name: "body." + (body.torchIndex[$0].map(String.init) ?? "-"), layer: body.layers[$0]) }
            + (shortcut.map { [(name: "shortcut", layer: $0 as Layer)] } ?? [])
    }

    public func reserve(in store: ParameterStore, prefix: String, maxBatch: Int) {
        body.reserve(in: store, prefix: prefix + "body.", maxBatch: maxBatch)
        shortcut?.reserve(in: store, prefix: prefix + "shortcut.", maxBatch: maxBatch)
        if shortcut != nil { tempOffset = store.reserveWorkspace(maxBatch * inputShape.count) }
    }

    public func bind(to store: ParameterStore) {
        body.bind(to: store)
        shortcut?.bind(to: store)
        if shortcut != nil { bodyInputGrad = store.workspacePointer(tempOffset) }
    }

    public func resetParameters(rng: inout RandomStream) {
        for layer in body.layers { layer.resetParameters(rng: &rng) }
        shortcut?.resetParameters(rng: &rng)
    }

    public func gemms(batch: Int, inputGrad: Bool, direct: Bool) -> [GEMMShape] {
        body.gemms(batch: batch, direct: direct) + (shortcut?.gemms(batch: batch, inputGrad: inputGrad, direct: direct) ?? [])
    }

    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, context: StepContext) {
        body.forward(x, batch: batch, context: context)
        let f = body.output(input: x)
        let n = batch * outputShape.count
        if let shortcut {
            shortcut.forward(x, y, batch: batch, context: context)
            for i in 0..<n { y[i] += f[i] }
        } else {
            for i in 0..<n { y[i] = f[i] + x[i] }
        }
    }

    /// dy goes to the body's output gradient (a copy: the body's layers may change theirs in place)
    /// and to the shortcut; dx is the sum of the two input gradients.
    public func backward(x: UnsafePointer<Float>, y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>?, batch: Int, context: StepContext) {
        let n = batch * outputShape.count
        body.outputGrad!.update(from: dy, count: n)
        if let shortcut {
            shortcut.backward(x: x, y: y, dy: dy, dx: dx, batch: batch, context: context)
            body.backward(x, dx: dx == nil ? nil : bodyInputGrad, batch: batch, context: context)
            if let dx, let g = bodyInputGrad { for i in 0..<(batch * inputShape.count) { dx[i] += g[i] } }
        } else {
            body.backward(x, dx: dx, batch: batch, context: context)
            if let dx { for i in 0..<n { dx[i] += dy[i] } }
        }
    }
}
