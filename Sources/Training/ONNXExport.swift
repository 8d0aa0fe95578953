import Data
import Foundation
import NN
import ONNXProto
import SwiftProtobuf

/// `ddp-train export --onnx`: a model's inference graph (`Sequential.inferenceGraph`) as an ONNX
/// file (IR 8, opset 13), with the parameters and BatchNorm statistics as initializers under the
/// weights file's names. Input "input" is (N, sample shape); output "output" is (N, outputs): the
/// logits (or log-probabilities with nll), as `predict` computes them before its softmax.
public enum ONNXExport {
    public static func encode(_ model: Sequential, metadata: [String: String]) throws -> [UInt8] {
        let (ops, last) = model.inferenceGraph(input: "input")
        var graph = Onnx_GraphProto()
        graph.name = "ddp-train"
        var used = Set<String>()
        for op in ops.ops {
            var node = Onnx_NodeProto()
            node.opType = op.type
            node.name = op.output
            node.input = op.inputs
            node.output = [op.output]
            node.attribute = op.attributes.map { attribute(name: $0.name, $0.value) }
            graph.node.append(node)
            used.formUnion(op.inputs)
        }
        var identity = Onnx_NodeProto()
        identity.opType = "Identity"
        identity.name = "output"
        identity.input = [last]
        identity.output = ["output"]
        graph.node.append(identity)

        let store = model.store
        for e in store.entries where used.contains(e.name) {
            graph.initializer.append(tensor(e.name, shape: e.shape, UnsafeBufferPointer(start: store.parameterPointer(e.offset), count: e.count)))
        }
        for e in store.bufferEntries where used.contains(e.name) && e.dtype == .f32 {
            graph.initializer.append(tensor(e.name, shape: e.shape, UnsafeBufferPointer(start: store.bufferPointer(e.offset), count: e.count)))
        }
        graph.input = [valueInfo("input", model.inputShape.dims)]
        graph.output = [valueInfo("output", model.outputShape.dims)]

        var m = Onnx_ModelProto()
        m.irVersion = 8
        m.producerName = "ddp-train"
        var opset = Onnx_OperatorSetIdProto()
        opset.version = 13
        m.opsetImport = [opset]
        m.graph = graph
        m.metadataProps = metadata.keys.sorted().map { key in
            var p = Onnx_StringStringEntryProto()
            p.key = key
            p.value = metadata[key]!
            return p
        }
        return try m.serializedBytes()
    }

    static func attribute(name: String, _ value: InferenceGraph.Attribute) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        switch value {
        case .int(let i): a.type = .int; a.i = Int64(i)
        case .ints(let v): a.type = .ints; a.ints = v.map(Int64.init)
        case .float(let f): a.type = .float; a.f = f
        }
        return a
    }

    static func tensor(_ name: String, shape: [Int], _ values: UnsafeBufferPointer<Float>) -> Onnx_TensorProto {
        var t = Onnx_TensorProto()
        t.name = name
        t.dims = shape.map(Int64.init)
        t.dataType = 1  // FLOAT
        t.rawData = Data(buffer: values)  // little-endian on every platform Swift runs ddp-train on
        return t
    }

    /// A float tensor of (N, dims...), N left free.
    static func valueInfo(_ name: String, _ dims: [Int]) -> Onnx_ValueInfoProto {
        var shape = Onnx_TensorShapeProto()
        var batch = Onnx_TensorShapeProto.Dimension()
        batch.dimParam = "N"
        shape.dim = [batch] + dims.map { d in
            var dim = Onnx_TensorShapeProto.Dimension()
            dim.dimValue = Int64(d)
            return dim
        }
        var tensor = Onnx_TypeProto.Tensor()
        tensor.elemType = 1
        tensor.shape = shape
        var type = Onnx_TypeProto()
        type.tensorType = tensor
        var v = Onnx_ValueInfoProto()
        v.name = name
        v.type = type
        return v
    }
}
