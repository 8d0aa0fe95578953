/// A model's inference computation as a list of operators with ONNX's names and attributes, which
/// `ddp-train export` writes as an ONNX graph. Each layer adds its own operators (`Layer.export`),
/// naming its parameters as the weights file does ("0.weight"), so NN stays free of any file format.
/// Training-only behaviour is left out: dropout is the identity, BatchNorm uses its running statistics.
public struct InferenceGraph {
    public enum Attribute: Equatable {
        case int(Int)
        case ints([Int])
        case float(Float)
    }

    public struct Op {
        public var type: String
        public var inputs: [String]
        public var output: String
        public var attributes: [(name: String, value: Attribute)]
    }

    public private(set) var ops: [Op] = []

    public init() {}

    /// Appends operator `type` on `inputs` and returns the name of its output.
    public mutating func add(_ type: String, _ inputs: [String], _ attributes: [(name: String, value: Attribute)] = []) -> String {
        let output = "\(type)_\(ops.count)"
        ops.append(Op(type: type, inputs: inputs, output: output, attributes: attributes))
        return output
    }

    /// A chain of layers from `input`, each under its torch name (`prefix` + index + "."); returns
    /// the last output's name.
    mutating func chain(_ layers: [Layer], torchIndex: [Int?], from input: String, prefix: String) -> String {
        var x = input
        for (i, layer) in layers.enumerated() {
            x = layer.export(x, prefix: torchIndex[i].map { "\(prefix)\($0)." } ?? prefix, into: &self)
        }
        return x
    }
}

extension Sequential {
    /// The whole model's inference graph from the input named `input`.
    public func inferenceGraph(input: String = "input") -> (graph: InferenceGraph, output: String) {
        var graph = InferenceGraph()
        let output = graph.chain(layers, torchIndex: torchIndex, from: input, prefix: "")
        return (graph, output)
    }
}
