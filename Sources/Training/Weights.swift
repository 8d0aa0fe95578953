import Data
import Engine
import NN

/// Model weights as safetensors with the names and layouts of the equivalent torch.nn.Sequential's
/// state_dict, so `nn.Sequential(...).load_state_dict(safetensors.torch.load_file(path))` works.
public enum Weights {
    public static func sources(_ store: ParameterStore) -> [SafeTensors.Source] {
        store.entries.map { SafeTensors.Source(name: $0.name, shape: $0.shape, pointer: store.parameterPointer($0.offset)) }
    }

    public static func save(_ model: Sequential, spec: String, to path: String) throws {
        try SafeTensors.write(sources(model.store), metadata: ["format": "pt", "ddp_train.model": spec], to: path)
    }

    /// The `--model` a weights file was saved with, if it says.
    public static func modelSpec(in path: String) throws -> String? {
        try SafeTensors.read(path: path).metadata["ddp_train.model"]
    }

    /// Copies a file's tensors into the model, checking that names and shapes match exactly and that
    /// every value is finite (`--init-weights`, evaluate, predict).
    public static func load(_ model: Sequential, from path: String) throws {
        let file = try SafeTensors.read(path: path)
        for name in file.order where file.tensors[name]!.values.contains(where: { !$0.isFinite }) {
            throw DataError("\(path): tensor '\(name)' holds a non-finite value")
        }
        try load(model.store, tensors: file.tensors, source: path)
    }

    public static func load(_ store: ParameterStore, tensors: [String: SafeTensors.Tensor], source: String) throws {
        try check(store, tensors: tensors, source: source)
        copy(tensors, into: store)
    }

    /// Names and shapes must match the model's exactly.
    public static func check(_ store: ParameterStore, tensors: [String: SafeTensors.Tensor], source: String) throws {
        for entry in store.entries {
            guard let t = tensors[entry.name] else {
                throw DataError("\(source): missing tensor '\(entry.name)' (shape \(entry.shape)); was it saved from another --model?")
            }
            guard t.shape == entry.shape else {
                throw DataError("\(source): tensor '\(entry.name)' has shape \(t.shape), the model needs \(entry.shape); was it saved from another --model?")
            }
        }
        let known = Set(store.entries.map(\.name))
        if let extra = tensors.keys.sorted().first(where: { !known.contains($0) }) {
            throw DataError("\(source): unexpected tensor '\(extra)' that the model does not have; was it saved from another --model?")
        }
    }

    /// Copies checked tensors into the parameters.
    public static func copy(_ tensors: [String: SafeTensors.Tensor], into store: ParameterStore) {
        for entry in store.entries {
            let values = tensors[entry.name]!.values
            values.withUnsafeBufferPointer { store.parameterPointer(entry.offset).update(from: $0.baseAddress!, count: values.count) }
        }
    }
}
