import Data
import Engine
import Foundation
import NN

/// Model weights as safetensors with the names, layouts and dtypes of the equivalent torch.nn.Sequential's
/// state_dict (parameters, then buffers such as BatchNorm's running statistics), so that
/// `model.load_state_dict(safetensors.torch.load_file(path))` works.
public enum Weights {
    public static func sources(_ store: ParameterStore) -> [SafeTensors.Source] {
        store.entries.map { SafeTensors.Source(name: $0.name, shape: $0.shape, pointer: store.parameterPointer($0.offset)) }
            + store.bufferEntries.map { e in
                e.dtype == .i64 ? SafeTensors.Source(name: e.name, shape: e.shape, int64Pointer: store.int64BufferPointer(e.offset))
                    : SafeTensors.Source(name: e.name, shape: e.shape, pointer: store.bufferPointer(e.offset))
            }
    }

    /// What a weights file says about itself in its safetensors metadata, beside the tensors: enough
    /// for evaluate and predict to rebuild the model and repeat the training run's preprocessing.
    public struct Description {
        /// `--model`.
        public var model: String
        /// classification or regression.
        public var task: String?
        /// `--loss` as trained (cross-entropy, nll, mse, l1, huber).
        public var loss: String?
        /// The data flags (paths absolute).
        public var data: DataSource?
        /// What was fitted on the training data: input shape, class or target names, table schema.
        public var preprocessing: Preprocessing?

        public init(model: String, task: String? = nil, loss: String? = nil, data: DataSource? = nil, preprocessing: Preprocessing? = nil) {
            self.model = model
            self.task = task
            self.loss = loss
            self.data = data
            self.preprocessing = preprocessing
        }

        static let keys = (model: "ddp_train.model", task: "ddp_train.task", loss: "ddp_train.loss", data: "ddp_train.data",
                           preprocessing: "ddp_train.preprocessing")

        /// As safetensors metadata: strings, the structured parts as JSON.
        public var metadata: [String: String] {
            var m = ["format": "pt", Self.keys.model: model]
            m[Self.keys.task] = task
            m[Self.keys.loss] = loss
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            if let data, let json = try? encoder.encode(data) { m[Self.keys.data] = String(decoding: json, as: UTF8.self) }
            if let preprocessing, let json = try? encoder.encode(preprocessing) {
                m[Self.keys.preprocessing] = String(decoding: json, as: UTF8.self)
            }
            return m
        }

        /// Reads what a file's metadata says (a file from elsewhere may say nothing but tensors).
        public init(metadata m: [String: String], source: String) throws {
            model = m[Self.keys.model] ?? ""
            task = m[Self.keys.task]
            loss = m[Self.keys.loss]
            do {
                data = try m[Self.keys.data].map { try JSONDecoder().decode(DataSource.self, from: Data($0.utf8)) }
                preprocessing = try m[Self.keys.preprocessing].map { try JSONDecoder().decode(Preprocessing.self, from: Data($0.utf8)) }
            } catch {
                throw DataError("\(source): unreadable ddp_train metadata (\(error))")
            }
        }
    }

    /// The model a weights file holds: `spec` (else the one the file records, else the default MLP)
    /// built for `inputShape` and `outputs`, with the file's tensors loaded. Evaluate, predict,
    /// report and export all start here.
    public static func loadModel(_ path: String, recorded: Description, spec override: String? = nil, inputShape: Shape,
                                 outputs: Int, maxBatch: Int, logSoftmax: Bool = false) throws -> (Sequential, ModelSpec) {
        let spec = try ModelSpec(parsing: override ?? (recorded.model.isEmpty ? "mlp:512,512" : recorded.model))
        let net = try spec.build(inputShape: inputShape, classes: outputs, maxBatch: maxBatch, seed: 0, logSoftmax: logSoftmax)
        try load(net, from: path)
        return (net, spec)
    }

    public static func save(_ model: Sequential, description: Description, to path: String) throws {
        try SafeTensors.write(sources(model.store), metadata: description.metadata, to: path)
    }

    /// What a weights file says about itself.
    public static func description(in path: String) throws -> Description {
        try Description(metadata: SafeTensors.read(path: path).metadata, source: path)
    }

    /// Copies a file's tensors into the model, checking that names, shapes and dtypes match exactly
    /// and that every value is finite (`--init-weights`, evaluate, predict).
    public static func load(_ model: Sequential, from path: String) throws {
        let file = try SafeTensors.read(path: path)
        for name in file.order where file.tensors[name]!.values.contains(where: { !$0.isFinite }) {
            throw DataError("\(path): tensor '\(name)' holds a non-finite value")
        }
        try check(model.store, tensors: file.tensors, source: path)
        copyParameters(file.tensors, into: model.store)
        copyBuffers(file.tensors, into: model.store)
    }

    /// Names, shapes and dtypes must match the model's exactly.
    public static func check(_ store: ParameterStore, tensors: [String: SafeTensors.Tensor], source: String) throws {
        for entry in store.entries + store.bufferEntries {
            guard let t = tensors[entry.name] else {
                throw DataError("\(source): missing tensor '\(entry.name)' (shape \(entry.shape)); was it saved from another --model?")
            }
            guard t.shape == entry.shape else {
                throw DataError("\(source): tensor '\(entry.name)' has shape \(t.shape), the model needs \(entry.shape); was it saved from another --model?")
            }
            guard t.dtype == entry.dtype.rawValue else {
                throw DataError("\(source): tensor '\(entry.name)' has dtype \(t.dtype), the model needs \(entry.dtype.rawValue)")
            }
        }
        let known = Set((store.entries + store.bufferEntries).map(\.name))
        if let extra = tensors.keys.sorted().first(where: { !known.contains($0) }) {
            throw DataError("\(source): unexpected tensor '\(extra)' that the model does not have; was it saved from another --model?")
        }
    }

    /// Copies checked tensors into the parameters (with node-shared parameters, one rank does it).
    public static func copyParameters(_ tensors: [String: SafeTensors.Tensor], into store: ParameterStore) {
        for entry in store.entries {
            let values = tensors[entry.name]!.values
            values.withUnsafeBufferPointer { store.parameterPointer(entry.offset).update(from: $0.baseAddress!, count: values.count) }
        }
    }

    /// Copies checked tensors into the buffers (every rank has its own).
    public static func copyBuffers(_ tensors: [String: SafeTensors.Tensor], into store: ParameterStore) {
        for entry in store.bufferEntries {
            let t = tensors[entry.name]!
            if let ints = t.integers {
                ints.withUnsafeBufferPointer { store.int64BufferPointer(entry.offset).update(from: $0.baseAddress!, count: ints.count) }
            } else {
                t.values.withUnsafeBufferPointer { store.bufferPointer(entry.offset).update(from: $0.baseAddress!, count: t.values.count) }
            }
        }
    }
}
