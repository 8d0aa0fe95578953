import Engine

/// Parses `--model` strings and builds the network.
///
///     mlp:H1,H2,...[:relu|sigmoid|tanh][:dropout=P]
///
/// `mlp:512,512` is Flatten, Linear(784,512), ReLU, Linear(512,512), ReLU, Linear(512,10).
/// With `:dropout=P`, a Dropout follows every activation, as in the PyTorch examples.
public struct ModelSpec: Equatable, CustomStringConvertible, Sendable {
    public enum Activation: String, Sendable { case relu, sigmoid, tanh }

    public var hidden: [Int]
    public var activation: Activation = .relu
    public var dropout: Float = 0

    public struct ParseError: Error, CustomStringConvertible {
        public let description: String
    }

    public init(hidden: [Int], activation: Activation = .relu, dropout: Float = 0) {
        self.hidden = hidden
        self.activation = activation
        self.dropout = dropout
    }

    public init(parsing text: String) throws {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        func fail(_ why: String) -> ParseError {
            ParseError(description: "invalid --model '\(text)': \(why) (expected mlp:H1,H2,...[:relu|sigmoid|tanh][:dropout=P], e.g. mlp:512,512)")
        }
        guard let kind = parts.first, !kind.isEmpty else { throw fail("empty model") }
        if kind == "cnn" {
            throw ParseError(description: "invalid --model '\(text)': cnn models are not available yet (Conv2d is planned); use mlp:H1,H2,...")
        }
        guard kind == "mlp" else { throw fail("unknown model kind '\(kind)'") }
        guard parts.count >= 2, !parts[1].isEmpty else { throw fail("missing hidden sizes (mlp:0 has no hidden layer)") }
        var hidden: [Int] = []
        if parts[1] != "0" {
            for field in parts[1].split(separator: ",", omittingEmptySubsequences: false) {
                guard let h = Int(field), h > 0 else { throw fail("hidden size '\(field)' is not a positive integer") }
                guard h <= ModelSpec.maxWidth else { throw fail("hidden size \(h) is larger than \(ModelSpec.maxWidth)") }
                hidden.append(h)
            }
        }
        self.hidden = hidden
        for option in parts.dropFirst(2) {
            if let a = Activation(rawValue: option) {
                activation = a
            } else if option.hasPrefix("dropout=") {
                guard let p = Float(option.dropFirst(8)), p >= 0, p < 1 else { throw fail("dropout must be in [0, 1)") }
                dropout = p
            } else {
                throw fail("unknown option '\(option)'")
            }
        }
    }

    /// The widest hidden layer a spec may ask for.
    public static let maxWidth = 1 << 20

    /// Trainable values for inputs of `inputCount` values and `classes` outputs (as `build` makes).
    public func parameterCount(inputCount: Int, classes: Int) -> Int {
        var total = 0, width = inputCount
        for h in hidden + [classes] { total += width * h + h; width = h }
        return total
    }

    /// Floats of activations and their gradients for `maxBatch` samples (an upper estimate).
    public func activationCount(inputCount: Int, classes: Int, maxBatch: Int) -> Int {
        let perSample = inputCount + hidden.reduce(0, +) * (dropout > 0 ? 3 : 2) + 2 * classes
        return 2 * maxBatch * perSample
    }

    public var description: String {
        var s = "mlp:" + (hidden.isEmpty ? "0" : hidden.map(String.init).joined(separator: ","))
        if activation != .relu { s += ":" + activation.rawValue }
        if dropout > 0 { s += ":dropout=\(dropout)" }
        return s
    }

    /// The layers for inputs of `inputShape` and `classes` outputs. `logSoftmax` appends a
    /// LogSoftmax for use with NLL loss.
    public func layers(inputShape: Shape, classes: Int, logSoftmax: Bool = false) -> [Layer] {
        var layers: [Layer] = []
        if inputShape.rank > 1 { layers.append(Flatten(inputShape)) }
        var width = inputShape.count
        for h in hidden {
            layers.append(Linear(width, h))
            switch activation {
            case .relu: layers.append(ReLU(Shape(h)))
            case .sigmoid: layers.append(Sigmoid(Shape(h)))
            case .tanh: layers.append(Tanh(Shape(h)))
            }
            if dropout > 0 { layers.append(Dropout(p: dropout, shape: Shape(h))) }
            width = h
        }
        layers.append(Linear(width, classes))
        if logSoftmax { layers.append(LogSoftmax(classes)) }
        return layers
    }

    public func build(inputShape: Shape, classes: Int, maxBatch: Int, seed: UInt64, logSoftmax: Bool = false) -> Sequential {
        Sequential(layers: layers(inputShape: inputShape, classes: classes, logSoftmax: logSoftmax), maxBatch: maxBatch, seed: seed)
    }
}
