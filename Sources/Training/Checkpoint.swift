import Data
import Engine
import Foundation
import NN
import Optim

/// A checkpoint file:
///
///     offset 0   "DDPCKPT\n"   magic
///            8   UInt32 LE     format version (1)
///           12   UInt32 LE     CRC-32 of every byte from offset 24 to the end
///           16   UInt64 LE     number of bytes from offset 24 to the end
///           24   a safetensors image: the weights under their PyTorch names (as `--save` writes
///                them), the optimizer's flat state buffers as "optimizer.<name>", and the training
///                state as JSON in its metadata under "ddp_train.state"
///
/// Python reads the weights with `safetensors.numpy.load(open(path, "rb").read()[24:])`.
public enum Checkpoint {
    public static let magic: [UInt8] = Array("DDPCKPT\n".utf8)
    public static let version: UInt32 = 1
    static let headerSize = 24

    /// Where training stands. ddp-train keeps no stateful per-rank RNG: the epoch order is a function
    /// of (seed, epoch), dropout masks of (seed, step, layer, sample), so `seed`, `epoch` and `step`
    /// are every rank's random state.
    public struct State: Codable, Equatable {
        public var step: Int
        public var epoch: Int
        public var batchInEpoch: Int
        public var seed: UInt64
        public var globalBatch: Int
        public var trainCount: Int
        public var bestAccuracy: Double
        public var optimizer: String
        public var optimizerStep: Int
        public var learningRate: Float
        public var model: String
        public var worldSize: Int
        public var config: TrainConfig
    }

    public static func encode(trainer: Trainer) throws -> [UInt8] {
        let state = State(step: trainer.step, epoch: trainer.epoch, batchInEpoch: trainer.batchInEpoch, seed: trainer.config.seed,
                          globalBatch: trainer.sampler.globalBatch, trainCount: trainer.splits.train.count,
                          bestAccuracy: trainer.bestAccuracy, optimizer: trainer.optimizer.name,
                          optimizerStep: trainer.optimizer.stepCount, learningRate: trainer.optimizer.learningRate,
                          model: trainer.spec.description, worldSize: trainer.comm.size, config: trainer.config)
        let json = String(decoding: try JSONEncoder().encode(state), as: UTF8.self)
        var sources = Weights.sources(trainer.model.store)
        for (name, buffer) in trainer.optimizer.stateBuffers {
            sources.append(.init(name: "optimizer.\(name)", shape: [buffer.count], pointer: buffer.pointer))
        }
        let body = SafeTensors.encode(sources, metadata: ["format": "pt", "ddp_train.state": json, "ddp_train.model": trainer.spec.description])
        var out = magic
        func le32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        le32(version)
        le32(body.withUnsafeBytes { crc32Checksum($0) })
        withUnsafeBytes(of: UInt64(body.count).littleEndian) { out += $0 }
        return out + body
    }

    /// Checks magic, version, length and checksum; returns the safetensors body.
    public static func verify(_ bytes: [UInt8], name: String) throws -> [UInt8] {
        guard bytes.count >= headerSize else {
            throw DataError("\(name): truncated checkpoint (\(bytes.count) bytes, the header alone is \(headerSize))")
        }
        guard Array(bytes[0..<8]) == magic else { throw DataError("\(name): not a ddp-train checkpoint (wrong magic number)") }
        let v = readLE32(bytes, 8)
        guard v == version else { throw DataError("\(name): checkpoint format version \(v), this ddp-train reads version \(version)") }
        var length: UInt64 = 0
        for i in 0..<8 { length |= UInt64(bytes[16 + i]) << (8 * UInt64(i)) }
        guard length == UInt64(bytes.count - headerSize) else {
            throw DataError("\(name): truncated checkpoint (\(bytes.count - headerSize) of \(length) bytes)")
        }
        let body = Array(bytes[headerSize...])
        let crc = body.withUnsafeBytes { crc32Checksum($0) }
        guard crc == readLE32(bytes, 12) else { throw DataError("\(name): corrupted checkpoint (checksum mismatch)") }
        return body
    }

    public static func read(path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else { throw DataError("\(path): cannot read checkpoint") }
        return try verify([UInt8](data), name: path)
    }

    /// Puts a verified checkpoint's content into the trainer: weights, optimizer state, position.
    public static func restore(_ body: [UInt8], into trainer: Trainer, name: String) throws {
        let file = try SafeTensors.decode(body, name: name)
        guard let json = file.metadata["ddp_train.state"],
              let state = try? JSONDecoder().decode(State.self, from: Data(json.utf8)) else {
            throw DataError("\(name): checkpoint has no readable training state")
        }
        guard state.model == trainer.spec.description else {
            throw DataError("\(name): checkpoint of model \(state.model), this run trains \(trainer.spec.description)")
        }
        guard state.optimizer == trainer.optimizer.name else {
            throw DataError("\(name): checkpoint of optimizer \(state.optimizer), this run uses \(trainer.optimizer.name)")
        }
        guard state.trainCount == trainer.splits.train.count else {
            throw DataError("\(name): checkpoint of a \(state.trainCount)-sample training set, this run has \(trainer.splits.train.count)")
        }
        if state.batchInEpoch > 0 && state.globalBatch != trainer.sampler.globalBatch {
            throw DataError("\(name): written mid-epoch at global batch \(state.globalBatch); resume with the same global batch (ranks x --batch-size), this run has \(trainer.sampler.globalBatch)")
        }
        if state.batchInEpoch > 0 && trainer.config.shardData {
            throw DataError("\(name): a mid-epoch checkpoint cannot be resumed with --shard-data")
        }
        var weights = file.tensors
        var optimizerState: [String: SafeTensors.Tensor] = [:]
        for key in weights.keys where key.hasPrefix("optimizer.") { optimizerState[String(key.dropFirst(10))] = weights.removeValue(forKey: key) }
        try Weights.check(trainer.model.store, tensors: weights, source: name)
        for (bufferName, buffer) in trainer.optimizer.stateBuffers {
            guard let t = optimizerState[bufferName], t.values.count == buffer.count else {
                throw DataError("\(name): checkpoint lacks optimizer state '\(bufferName)' of \(buffer.count) values")
            }
        }
        // Every rank has checked the same bytes; the writers copy them (with a node-shared copy, rank 0).
        if trainer.writesLoadedState {
            Weights.copy(weights, into: trainer.model.store)
            for (bufferName, buffer) in trainer.optimizer.stateBuffers { buffer.copy(from: optimizerState[bufferName]!.values) }
        }
        try trainer.loadedStatePublished()
        trainer.optimizer.stepCount = state.optimizerStep
        trainer.optimizer.learningRate = state.learningRate
        trainer.step = state.step
        trainer.epoch = state.epoch
        trainer.batchInEpoch = state.batchInEpoch
        trainer.bestAccuracy = state.bestAccuracy
    }

    private static func readLE32(_ b: [UInt8], _ o: Int) -> UInt32 {
        UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24
    }
}
