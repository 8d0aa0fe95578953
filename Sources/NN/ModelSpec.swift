import Engine

/// What `--model` describes, parsed once: a preset or a list of layers. Input shapes are inferred
/// from the data when the layers are built.
///
///     mlp:H1,H2,...[:relu|sigmoid|tanh][:dropout=P]     Flatten, Linear, act, ..., Linear(classes)
///     linear                                            one Linear layer (mlp:0), for linear regression
///     cnn                                               pytorch/examples' MNIST net
///     lenet5                                            LeNet-5 (ReLU, max pooling)
///     resnet8                                           a small ResNet with BatchNorm, 28x28 or 32x32
///     conv(32,3),relu,maxpool(2),flatten,linear(10)     a layer list
///
/// List items, comma-separated at the top level: `conv(OUT,K[,stride=S][,padding=P][,bias=0])`,
/// `maxpool(K[,stride=S])`, `avgpool(K[,stride=S])`, `gap`, `bn`, `relu`, `sigmoid`, `tanh`,
/// `dropout(P)`, `dropout2d(P)`, `flatten`, `linear(OUT[,bias=0])`, `residual(LIST)`.
/// Tensor names are those of nn.Sequential over the same list ("0.weight", "0.bias", ...).
public struct ModelSpec: Equatable, CustomStringConvertible, Sendable {
    public enum Activation: String, Sendable { case relu, sigmoid, tanh }

    /// One item of a layer list.
    public indirect enum Item: Equatable, Sendable {
        case conv(out: Int, kernel: Int, stride: Int, padding: Int, bias: Bool)
        case maxpool(kernel: Int, stride: Int?)
        case avgpool(kernel: Int, stride: Int?)
        case gap, bn, flatten
        case activation(Activation)
        case dropout(Float)
        case dropout2d(Float)
        case linear(out: Int, bias: Bool)
        case residual([Item])
    }

    public var hidden: [Int] = []
    public var activation: Activation = .relu
    public var dropout: Float = 0
    /// The layer list, or nil for an `mlp:` spec.
    public var items: [Item]?
    /// The preset's name (`cnn`, `lenet5`, `resnet8`), which is also how it prints.
    public var preset: String?

    public struct ParseError: Error, CustomStringConvertible {
        public let description: String
    }

    public init(hidden: [Int], activation: Activation = .relu, dropout: Float = 0) {
        self.hidden = hidden
        self.activation = activation
        self.dropout = dropout
    }

    public static let presets = ["linear", "cnn", "lenet5", "resnet8"]
    static let usage = "expected mlp:H1,H2,...[:relu|sigmoid|tanh][:dropout=P], a preset (linear, cnn, lenet5, resnet8), "
        + "or a layer list such as conv(32,3),relu,maxpool(2),flatten,linear(10)"

    public init(parsing text: String) throws {
        func fail(_ why: String) -> ParseError { ParseError(description: "invalid --model '\(text)': \(why) (\(ModelSpec.usage))") }
        let trimmed = text.filter { !$0.isWhitespace }
        guard !trimmed.isEmpty else { throw fail("empty model") }
        if trimmed.hasPrefix("mlp:") || trimmed == "mlp" {
            try self.init(mlp: trimmed, fail: fail)
        } else if trimmed == "linear" {
            // One Linear layer from the (flattened) input to the outputs: the seed's nn.Linear(5, 1).
            self.init(hidden: [])
            preset = "linear"
        } else if let items = ModelSpec.presetItems(trimmed) {
            self.init(hidden: [])
            self.items = items
            preset = trimmed
        } else {
            self.init(hidden: [])
            var parser = ListParser(text: Array(trimmed))
            do { items = try parser.list(topLevel: true) } catch let e as ListParser.Failure { throw fail(e.why) }
        }
    }

    private init(mlp text: String, fail: (String) -> ParseError) throws {
        self.init(hidden: [])
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 2, !parts[1].isEmpty else { throw fail("missing hidden sizes (mlp:0 has no hidden layer)") }
        if parts[1] != "0" {
            for field in parts[1].split(separator: ",", omittingEmptySubsequences: false) {
                guard let h = Int(field), h > 0 else { throw fail("hidden size '\(field)' is not a positive integer") }
                guard h <= ModelSpec.maxWidth else { throw fail("hidden size \(h) is larger than \(ModelSpec.maxWidth)") }
                hidden.append(h)
            }
        }
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

    /// The widest layer (features or channels) a spec may ask for.
    public static let maxWidth = 1 << 20

    /// The presets as layer lists; `linear(0)` stands for the number of classes.
    static func presetItems(_ name: String) -> [Item]? {
        let text: String
        switch name {
        case "cnn":
            text = "conv(32,3),relu,conv(64,3),relu,maxpool(2),dropout(0.25),flatten,linear(128),relu,dropout(0.5),linear(0)"
        case "lenet5":
            text = "conv(6,5,padding=2),relu,maxpool(2),conv(16,5),relu,maxpool(2),flatten,linear(120),relu,linear(84),relu,linear(0)"
        case "resnet8":
            func block(_ c: Int, _ s: Int) -> String {
                "residual(conv(\(c),3,stride=\(s),padding=1,bias=0),bn,relu,conv(\(c),3,padding=1,bias=0),bn),relu"
            }
            text = "conv(16,3,padding=1,bias=0),bn,relu,\(block(16, 1)),\(block(32, 2)),\(block(64, 2)),gap,flatten,linear(0)"
        default: return nil
        }
        var parser = ListParser(text: Array(text), allowClasses: true)
        return try! parser.list(topLevel: true)
    }

    public var description: String {
        if let preset { return preset }
        if let items { return items.map(\.description).joined(separator: ",") }
        var s = "mlp:" + (hidden.isEmpty ? "0" : hidden.map(String.init).joined(separator: ","))
        if activation != .relu { s += ":" + activation.rawValue }
        if dropout > 0 { s += ":dropout=\(dropout)" }
        return s
    }

    /// The layers for inputs of `inputShape` and `classes` outputs. `logSoftmax` appends a
    /// LogSoftmax for use with NLL loss. Throws `ParseError` when the list does not fit the data.
    public func layers(inputShape: Shape, classes: Int, logSoftmax: Bool = false) throws -> [Layer] {
        var layers: [Layer] = []
        if let items {
            var shape = inputShape
            layers = try ModelSpec.build(items, input: &shape, classes: classes, spec: description)
            guard shape.count == classes else {
                throw ParseError(description: "--model \(description): the model outputs \(shape.count) values per sample, the data has \(classes) classes")
            }
            guard shape.rank == 1 else {
                throw ParseError(description: "--model \(description): the model's output has shape \(shape); end with flatten and linear(\(classes))")
            }
        } else {
            if inputShape.rank > 1 { layers.append(Flatten(inputShape, implicit: true)) }
            var width = inputShape.count
            for h in hidden {
                layers.append(Linear(width, h))
                layers.append(ModelSpec.activationLayer(activation, Shape(h)))
                if dropout > 0 { layers.append(Dropout(p: dropout, shape: Shape(h))) }
                width = h
            }
            layers.append(Linear(width, classes))
        }
        if logSoftmax { layers.append(LogSoftmax(classes)) }
        return layers
    }

    static func activationLayer(_ a: Activation, _ shape: Shape) -> Layer {
        switch a {
        case .relu: return ReLU(shape)
        case .sigmoid: return Sigmoid(shape)
        case .tanh: return Tanh(shape)
        }
    }

    /// Builds `items` from `shape` on, leaving `shape` at the last output.
    static func build(_ items: [Item], input shape: inout Shape, classes: Int, spec: String) throws -> [Layer] {
        var layers: [Layer] = []
        for (i, item) in items.enumerated() {
            func fail(_ why: String) -> ParseError {
                ParseError(description: "--model \(spec): item \(i + 1) (\(item)) \(why)")
            }
            func image() throws {
                guard shape.rank == 3 else { throw fail("needs (C, H, W) input, gets \(shape); it must come before flatten") }
            }
            let layer: Layer
            switch item {
            case let .conv(out, k, s, p, bias):
                try image()
                guard let l = Conv2d(input: shape, outChannels: out, kernel: k, stride: s, padding: p, bias: bias) else {
                    throw fail("does not fit its input \(shape) (the kernel is larger than the padded image)")
                }
                layer = l
            case let .maxpool(k, s):
                try image()
                guard let l = MaxPool2d(input: shape, kernel: k, stride: s) else { throw fail("does not fit its input \(shape)") }
                layer = l
            case let .avgpool(k, s):
                try image()
                guard let l = AvgPool2d(input: shape, kernel: k, stride: s) else { throw fail("does not fit its input \(shape)") }
                layer = l
            case .gap:
                try image()
                layer = GlobalAvgPool2d(input: shape)!
            case .bn:
                guard let l = BatchNorm(input: shape) else { throw fail("needs (C), (C, L) or (C, H, W) input, gets \(shape)") }
                layer = l
            case .flatten:
                layer = Flatten(shape)
            case .activation(let a):
                layer = activationLayer(a, shape)
            case .dropout(let p):
                layer = Dropout(p: p, shape: shape)
            case .dropout2d(let p):
                guard shape.rank >= 2 else { throw fail("needs (C, H, W) input, gets \(shape)") }
                layer = Dropout2d(p: p, shape: shape)
            case let .linear(out, bias):
                guard shape.rank == 1 else { throw fail("needs flat input, gets \(shape): put flatten before it") }
                layer = Linear(shape.count, out == 0 ? classes : out, bias: bias)
            case .residual(let body):
                var inner = shape
                let bodyLayers = try build(body, input: &inner, classes: classes, spec: spec)
                do { layer = try Residual(body: bodyLayers) } catch { throw fail("\(error)") }
            }
            guard layer.outputShape.count > 0 else { throw fail("leaves nothing of its input \(shape)") }
            shape = layer.outputShape
            layers.append(layer)
        }
        return layers
    }

    public func build(inputShape: Shape, classes: Int, maxBatch: Int, seed: UInt64, logSoftmax: Bool = false) throws -> Sequential {
        Sequential(layers: try layers(inputShape: inputShape, classes: classes, logSoftmax: logSoftmax), maxBatch: maxBatch, seed: seed)
    }
}

extension ModelSpec.Item: CustomStringConvertible {
    public var description: String {
        switch self {
        case let .conv(out, k, s, p, bias):
            return "conv(\(out),\(k)" + (s != 1 ? ",stride=\(s)" : "") + (p != 0 ? ",padding=\(p)" : "") + (bias ? "" : ",bias=0") + ")"
        case let .maxpool(k, s): return "maxpool(\(k)" + (s.map { ",stride=\($0)" } ?? "") + ")"
        case let .avgpool(k, s): return "avgpool(\(k)" + (s.map { ",stride=\($0)" } ?? "") + ")"
        case .gap: return "gap"
        case .bn: return "bn"
        case .flatten: return "flatten"
        case .activation(let a): return a.rawValue
        case .dropout(let p): return "dropout(\(p))"
        case .dropout2d(let p): return "dropout2d(\(p))"
        case let .linear(out, bias): return "linear(\(out)" + (bias ? "" : ",bias=0") + ")"
        case .residual(let body): return "residual(" + body.map(\.description).joined(separator: ",") + ")"
        }
    }
}

/// A recursive-descent parser for layer lists: `item (',' item)*`, `item = name ['(' args ')']`.
struct ListParser {
    struct Failure: Error { let why: String }
    let text: [Character]
    var allowClasses = false
    var at = 0

    init(text: [Character], allowClasses: Bool = false) {
        self.text = text
        self.allowClasses = allowClasses
    }

    mutating func list(topLevel: Bool) throws -> [ModelSpec.Item] {
        var items: [ModelSpec.Item] = []
        repeat {
            if !items.isEmpty { at += 1 }
            items.append(try item())
        } while at < text.count && text[at] == ","
        if topLevel && at < text.count { throw Failure(why: "unexpected '\(text[at])' at character \(at + 1)") }
        return items
    }

    private mutating func name() -> String {
        let start = at
        while at < text.count && (text[at].isLetter || text[at].isNumber || text[at] == "_") { at += 1 }
        return String(text[start..<at]).lowercased()
    }

    /// The raw arguments between the parentheses (nil when there are none), split at top-level commas.
    private mutating func arguments(_ name: String) throws -> [String]? {
        guard at < text.count && text[at] == "(" else { return nil }
        var depth = 0, current = "", args: [String] = []
        while at < text.count {
            let c = text[at]
            at += 1
            if c == "(" { depth += 1; if depth == 1 { continue } }
            if c == ")" { depth -= 1; if depth == 0 { args.append(current); return args } }
            if c == "," && depth == 1 { args.append(current); current = ""; continue }
            current.append(c)
        }
        throw Failure(why: "'\(name)(' has no closing parenthesis")
    }

    private mutating func item() throws -> ModelSpec.Item {
        let start = at
        let n = name()
        guard !n.isEmpty else {
            throw Failure(why: at < text.count ? "unexpected '\(text[at])' at character \(at + 1)" : "a layer is missing at the end")
        }
        if n == "residual" {
            guard at < text.count && text[at] == "(" else { throw Failure(why: "residual needs a layer list: residual(conv(16,3,padding=1),bn)") }
            at += 1
            let body = try list(topLevel: false)
            guard at < text.count && text[at] == ")" else { throw Failure(why: "residual( has no closing parenthesis") }
            at += 1
            return .residual(body)
        }
        let args = try arguments(n)
        let shown = String(text[start..<at])
        var positional: [String] = [], named: [String: String] = [:]
        for a in args ?? [] {
            if let eq = a.firstIndex(of: "=") {
                named[String(a[..<eq])] = String(a[a.index(after: eq)...])
            } else {
                guard named.isEmpty else { throw Failure(why: "\(shown): positional argument after a named one") }
                positional.append(a)
            }
        }
        func int(_ s: String?, _ what: String, min: Int = 1) throws -> Int? {
            guard let s else { return nil }
            guard let v = Int(s), v >= min, v <= ModelSpec.maxWidth else {
                throw Failure(why: "\(shown): \(what) must be an integer from \(min) to \(ModelSpec.maxWidth), not '\(s)'")
            }
            return v
        }
        func probability(_ s: String?) throws -> Float {
            guard let s, let p = Float(s), p >= 0, p < 1 else { throw Failure(why: "\(shown): the probability must be in [0, 1)") }
            return p
        }
        func flag(_ s: String?) throws -> Bool {
            switch s {
            case nil, "1", "true", "True": return true
            case "0", "false", "False": return false
            default: throw Failure(why: "\(shown): bias must be 0 or 1")
            }
        }
        func expect(_ count: ClosedRange<Int>, _ allowed: Set<String>, _ form: String) throws {
            guard count.contains(positional.count), Set(named.keys).isSubset(of: allowed) else {
                throw Failure(why: "\(shown): expected \(form)")
            }
        }
        switch n {
        case "conv", "conv2d":
            try expect(2...2, ["stride", "padding", "bias"], "conv(OUT,K[,stride=S][,padding=P][,bias=0])")
            return .conv(out: try int(positional[0], "OUT")!, kernel: try int(positional[1], "K")!,
                         stride: try int(named["stride"], "stride") ?? 1, padding: try int(named["padding"], "padding", min: 0) ?? 0,
                         bias: try flag(named["bias"]))
        case "maxpool", "avgpool":
            try expect(1...1, ["stride"], "\(n)(K[,stride=S])")
            let k = try int(positional[0], "K")!, s = try int(named["stride"], "stride")
            return n == "maxpool" ? .maxpool(kernel: k, stride: s) : .avgpool(kernel: k, stride: s)
        case "gap", "bn", "flatten", "relu", "sigmoid", "tanh":
            guard args == nil else { throw Failure(why: "\(shown): \(n) takes no arguments") }
            switch n {
            case "gap": return .gap
            case "bn": return .bn
            case "flatten": return .flatten
            default: return .activation(ModelSpec.Activation(rawValue: n)!)
            }
        case "dropout", "dropout2d":
            try expect(1...1, [], "\(n)(P)")
            let p = try probability(positional[0])
            return n == "dropout" ? .dropout(p) : .dropout2d(p)
        case "linear":
            try expect(1...1, ["bias"], "linear(OUT[,bias=0])")
            return .linear(out: try int(positional[0], "OUT", min: allowClasses ? 0 : 1)!, bias: try flag(named["bias"]))
        default:
            throw Failure(why: "unknown layer '\(n)'")
        }
    }
}
