import Data
import Engine
import Foundation
import NN
import Optim

/// A trainer's state as a checkpoint file (the format is `CheckpointFile`, in the Data module):
/// the weights, the optimizer's buffers, and the position and run configuration as JSON.
public enum Checkpoint {
    /// The state JSON: the position (`CheckpointFile.Position`'s fields) and the run configuration.
    struct State: Encodable {
        var position: CheckpointFile.Position
        var config: TrainConfig

        func encode(to encoder: Encoder) throws {
            try position.encode(to: encoder)
            var c = encoder.container(keyedBy: Key.self)
            try c.encode(config, forKey: .config)
        }
    }

    /// The run configuration inside the state JSON.
    struct SavedConfig: Decodable {
        var config: TrainConfig
    }

    enum Key: String, CodingKey { case config }

    /// The checkpoint's safetensors body (`CheckpointFile.write` frames it). `Checkpointer.write`
    /// has checked that every value is finite.
    public static func encodeBody(trainer: Trainer) throws -> [UInt8] {
        var position = CheckpointFile.Position(
            step: trainer.step, epoch: trainer.epoch, batchInEpoch: trainer.batchInEpoch, seed: trainer.config.seed,
            globalBatch: trainer.sampler.globalBatch, trainCount: trainer.splits.train.count, bestAccuracy: trainer.monitor == .valAccuracy ? trainer.bestScore ?? -1 : -1,
            optimizer: trainer.optimizer.name, optimizerStep: trainer.optimizer.stepCount, learningRate: trainer.optimizer.learningRate,
            model: trainer.spec.description, worldSize: trainer.comm.size, runID: trainer.runID)
        position.bestLoss = trainer.monitor == .valLoss ? trainer.bestScore.map { -$0 } : nil
        position.earlyStop = trainer.config.earlyStop != nil ? trainer.earlyStopState : nil
        let json = String(decoding: try JSONEncoder().encode(State(position: position, config: trainer.config)), as: UTF8.self)
        var sources = Weights.sources(trainer.model.store)
        for (name, buffer) in trainer.optimizer.stateBuffers {
            sources.append(.init(name: "optimizer.\(name)", shape: [buffer.count], pointer: buffer.pointer))
        }
        var metadata = trainer.savedDescription.metadata
        metadata[CheckpointFile.stateKey] = json
        return SafeTensors.encode(sources, metadata: metadata)
    }

    /// Puts a checkpoint file's bytes into the trainer: weights, optimizer state, position. Every
    /// rank checks the same bytes and reaches the same verdict.
    ///
    /// The command line must agree with the checkpoint on everything that decides the trajectory
    /// (model, optimizer and its hyperparameters, loss, seed, data and its order): a difference is
    /// refused (`UsageError`) rather than applied or silently overridden, so that a resumed run is
    /// the run that wrote the checkpoint. The global batch may change only at an epoch boundary.
    public static func restore(_ file: [UInt8], into trainer: Trainer, name: String) throws {
        let contents = try CheckpointFile.decode(file, name: name)
        let state = contents.position
        guard state.model == trainer.spec.description else {
            throw UsageError("\(name): checkpoint of model \(state.model), this run trains \(trainer.spec.description)")
        }
        guard state.optimizer == trainer.optimizer.name else {
            throw UsageError("\(name): checkpoint of optimizer \(state.optimizer), this run uses \(trainer.optimizer.name)")
        }
        guard state.trainCount == trainer.splits.train.count else {
            throw UsageError("\(name): checkpoint of a \(state.trainCount)-sample training set, this run has \(trainer.splits.train.count)")
        }
        guard let saved = try? JSONDecoder().decode(SavedConfig.self, from: Data(contents.stateJSON.utf8)).config else {
            throw DataError("\(name): checkpoint has no readable run configuration")
        }
        let differences = trainer.config.trajectoryDifferences(from: saved)
        if !differences.isEmpty {
            throw UsageError("\(name): the command line differs from the checkpoint: \(differences.joined(separator: ", ")); "
                             + "resume with the checkpoint's values, or start a new run")
        }
        // The stored rate is the one the schedule gave the last step taken (or the base rate before any).
        let lastEpoch = state.batchInEpoch > 0 ? state.epoch : state.epoch - 1
        let expected = state.step == 0 ? trainer.baseLearningRate : trainer.scheduledRate(step: state.step - 1, epoch: max(lastEpoch, 0))
        guard state.learningRate == expected else {
            throw DataError("\(name): corrupt training state: learning rate \(state.learningRate) is not the \(expected) the run's schedule gives at step \(state.step)")
        }
        guard state.seed == trainer.config.seed else {
            throw DataError("\(name): corrupt training state: seed \(state.seed) is not the run's \(saved.seed)")
        }
        if state.batchInEpoch > 0 && state.globalBatch != trainer.sampler.globalBatch {
            throw UsageError("\(name): written mid-epoch at global batch \(state.globalBatch); resume with the same global batch (ranks x --batch-size), this run has \(trainer.sampler.globalBatch)")
        }
        if state.batchInEpoch > 0 && trainer.config.shardData {
            throw UsageError("\(name): a mid-epoch checkpoint cannot be resumed with --shard-data")
        }
        if state.batchInEpoch > trainer.sampler.batchesPerEpoch {
            throw DataError("\(name): corrupt training state: position \(state.batchInEpoch) is past the epoch's \(trainer.sampler.batchesPerEpoch) batches")
        }
        var weights = contents.tensors
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
            Weights.copyParameters(weights, into: trainer.model.store)
            for (bufferName, buffer) in trainer.optimizer.stateBuffers { buffer.copy(from: optimizerState[bufferName]!.values) }
        }
        Weights.copyBuffers(weights, into: trainer.model.store)
        try trainer.loadedStatePublished()
        trainer.optimizer.stepCount = state.optimizerStep
        trainer.optimizer.learningRate = state.learningRate
        trainer.step = state.step
        trainer.epoch = state.epoch
        trainer.batchInEpoch = state.batchInEpoch
        trainer.bestScore = trainer.monitor == .valAccuracy ? (state.bestAccuracy >= 0 ? state.bestAccuracy : nil) : state.bestLoss.map { -$0 }
        trainer.earlyStopState = state.earlyStop ?? .init()
        trainer.runID = state.runID ?? trainer.runID
    }
}
