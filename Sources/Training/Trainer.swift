import Comm
import Data
import Engine
import Foundation
import NN
import Optim
import Glibc

/// Milliseconds spent in each phase of the training steps since the last `reset`.
public struct StepTimes {
    public var steps = 0
    public var data = 0.0, forward = 0.0, backward = 0.0, allreduceWait = 0.0, optimizer = 0.0
    public mutating func reset() { self = StepTimes() }
}

/// Splits a step into timed phases: `clock.lap(&times.forward)` adds the time since the last lap.
struct PhaseClock {
    private var last = monotonicSeconds()
    mutating func lap(_ into: inout Double) {
        let now = monotonicSeconds()
        into += (now - last) * 1000
        last = now
    }
}

/// Data-parallel training, one batch from disk to the optimizer step (`trainStep`):
///
///     sampler.fill -> dataset.gather -> forward -> loss -> backward (writes this rank's gradients,
///     telling the reducer as each layer's are ready) -> reducer.finish (sum over ranks) -> reducer.step
///     (the optimizer) -> reducer.publish
///
/// Every rank runs this same loop. Each rank's loss is its samples' sum divided by the *global*
/// batch size, so the summed all-reduce is exactly the gradient of the global mean loss and every
/// rank takes the identical step. Rank 0 alone prints, writes metrics and saves.
public final class Trainer {
    public let config: TrainConfig
    public let comm: Communicator
    public let console: Console
    public let splits: DataSplits
    public let spec: ModelSpec
    public let model: Sequential
    /// Classification or regression: the loss, the metrics and what "best" means.
    public let task: Task
    public let optimizer: Optimizer
    public let sampler: Sampler
    public let reducer: GradientReducer
    /// Synchronized BatchNorm's sums over all ranks (nil on one rank: its batch is the global batch).
    let replicas: CommReplicaSum?
    /// `--invariant-shards`: the shards' partial sums, or nil.
    let shards: GradientShards?
    /// The learning rate of every step (`--lr-schedule`, `--warmup-steps`) from the base rate.
    public let schedule: LRSchedule
    public let baseLearningRate: Float
    /// Optimizer steps the run will take: the schedule's length.
    public let totalSteps: Int
    public var metrics: MetricsLog?
    /// `--tensorboard`: the same figures for TensorBoard, with weight and gradient histograms and
    /// the confusion matrix.
    public var board: TensorBoardWriter?
    /// The gradients of the epoch's last step, copied for the histograms (rank 0, with --tensorboard).
    private var appliedGradients: [Float] = []
    /// Whether this process has taken a step (so there are gradients to show).
    private var tookStep = false

    // Position in training; what a checkpoint records.
    public var step = 0
    public var epoch = 0
    public var batchInEpoch = 0
    /// What decides "best" and early stopping (`--monitor`, else the task's own).
    public let monitor: Monitor
    /// The best evaluation's score so far (`monitor.score`: accuracy, or minus the loss).
    public var bestScore: Double?
    /// Early stopping: the score to beat by more than `--min-delta`, and evaluations since it was set.
    public var earlyStopState = CheckpointFile.EarlyStopState()
    /// `--max-steps`, or 1 for `--dry-run`.
    public let maxSteps: Int?
    /// This run's identity (checkpoint names): new at a fresh start, the checkpoint's on resume.
    public var runID = CheckpointFile.newRunID()
    public private(set) var lastEval: EvalResult?

    public var times = StepTimes()
    /// Called on every rank after each optimizer step and after each evaluation (checkpoints).
    public var afterStep: ((Trainer, _ evaluated: Bool) throws -> Void)?
    /// Whether the last evaluation set a new best score.
    public private(set) var lastEvalImproved = false
    /// True when training stopped early because some rank got SIGTERM or SIGINT.
    public private(set) var stoppedBySignal = false
    /// True when `--early-stop` ended training.
    public private(set) var stoppedEarly = false
    /// The 1-based epoch of the last evaluation.
    private var lastEvalEpoch = 0

    // Preallocated per-step buffers.
    private let indices: UnsafeMutablePointer<Int32>
    private let targets: TargetBuffer
    /// [this rank's loss sum, 1 if this rank was asked to stop], summed over ranks every step.
    private let lossBuffer = FloatBuffer(count: 2)
    private let stallHook: (rank: Int, step: Int)?
    private let perturbHook: (rank: Int, step: Int)?
    private var sampleTrace: FileHandle?
    private let killHook: (rank: Int, step: Int)?

    public init(config: TrainConfig, comm: Communicator) throws {
        try config.validate()
        self.config = config
        self.comm = comm
        console = Console(enabled: comm.isRoot && !config.quiet, underMPI: MPICommunicator.launchedByMPI)
        // Outputs first: a path that cannot be written fails now, not after hours of training.
        try rootDecides(comm, what: "output paths") {
            do {
                if let path = config.savePath { try AtomicFile.checkWritable(path, flag: "--save") }
                if let path = config.metricsPath { try AtomicFile.checkWritable(path, flag: "--metrics") }
            } catch {
                throw UsageError("\(error)")
            }
        }
        let source = config.data
        let kind = try source.kind
        try MemoryEstimate.syntheticData(kind).check(comm: comm, what: "--dataset \(kind)")
        // Rank 0 loads first: what it builds once (a table's cache) the others then only read.
        var loaded: DataSplits?
        try rootDecides(comm, what: "data") { loaded = try DataSplits.load(source) }
        // Ranks that are threads of rank 0's process read its copy (the data is read-only).
        let data = try comm.shareInProcess(loaded, what: "share data") as? DataSplits ?? DataSplits.load(source)
        // A dry run evaluates one batch.
        splits = config.dryRun == true
            ? DataSplits(train: data.train, eval: try data.eval.slice(0..<min(config.evalBatch, data.eval.count), name: data.eval.name),
                         evalName: data.evalName, preprocessing: data.preprocessing, notes: data.notes)
            : data
        maxSteps = config.dryRun == true ? 1 : config.maxSteps
        spec = try config.modelSpec
        let lossKind = try config.lossKind
        task = try Task(space: splits.train.space, loss: lossKind)
        monitor = config.monitor ?? (task.isClassification ? .valAccuracy : .valLoss)
        if monitor == .valAccuracy && !task.isClassification {
            throw UsageError("--monitor val_accuracy needs a classification task; this is regression (use val_loss)")
        }
        let maxBatch = max(config.batchSize, config.evalBatch)
        let optimizerConfig = try config.optimizerConfig
        // The model reserves its memory first; where the parameters live is decided next, with the
        // reducer, and then every layer binds to memory that does not move again.
        let layers: [Layer]
        do {
            layers = try spec.layers(inputShape: splits.train.sampleShape, classes: task.width, logSoftmax: lossKind == .nll)
        } catch {
            throw UsageError("\(error)")
        }
        model = Sequential(layers: layers, maxBatch: maxBatch, gradientShards: try Trainer.shardsPerRank(config, comm: comm))
        try MemoryEstimate.model(model.store, stateBuffers: optimizerConfig.stateBufferCount)
            .check(comm: comm, what: "--model \(spec) with --batch-size \(config.batchSize)")
        let microBatches = config.accumulate ?? 1
        sampler = Sampler(datasetCount: splits.train.count, perRankBatch: config.batchSize * microBatches, rank: comm.rank, world: comm.size,
                          seed: config.seed, shuffle: config.shuffle, dropLast: config.dropLast, shardData: config.shardData)
        guard sampler.batchesPerEpoch > 0 else {
            throw UsageError("--drop-last with a global batch of \(sampler.globalBatch) leaves no batch from \(splits.train.count) samples")
        }
        schedule = try config.schedule
        baseLearningRate = optimizerConfig.resolvedLearningRate
        let wholeRun = sampler.batchesPerEpoch.multipliedReportingOverflow(by: config.epochs)
        totalSteps = min(maxSteps ?? Int.max, wholeRun.overflow ? Int.max : wholeRun.partialValue)
        reducer = try Trainer.makeReducer(config: config, comm: comm, model: model, stateBuffers: optimizerConfig.stateBufferCount)
        replicas = comm.size > 1 ? CommReplicaSum(comm: comm, inTreeOrder: config.invariantShards != nil) : nil
        shards = config.invariantShards != nil ? model.gradientShards : nil
        if config.invariantShards != nil && comm.size > 2 && !(reducer is SharedMemoryReduce) {
            throw UsageError("--invariant-shards with \(comm.size) ranks needs every rank on one machine (the shared-memory reduction sums ranks in the fixed order; --allreduce \(config.allreduce) does not)")
        }
        reducer.clipGradNorm = config.clipGradNorm
        optimizer = try optimizerConfig.make(parameterCount: model.store.count, allocate: reducer.allocateState)
        indices = .allocate(capacity: max(maxBatch, sampler.perRankBatch))
        targets = TargetBuffer(capacity: max(maxBatch, sampler.perRankBatch), width: task.width)
        stallHook = Trainer.testHook("DDP_TEST_STALL")
        killHook = Trainer.killHookArmed(resumed: config.resume != nil) ? Trainer.testHook("DDP_TEST_KILL") : nil
        perturbHook = Trainer.testHook("DDP_TEST_PERTURB")
        if let dir = ProcessInfo.processInfo.environment["DDP_TEST_TRACE_SAMPLES"] {
            let path = dir + "/rank-\(comm.rank).txt"
            _ = FileManager.default.createFile(atPath: path, contents: nil)
            sampleTrace = FileHandle(forWritingAtPath: path)
        }

        // Identical start: rank 0's parameters (its own init, or the file only it reads) go to every rank.
        if let path = config.initWeights {
            try rootDecides(comm, what: "init weights") { try Weights.load(model, from: path) }
        }
        try broadcastParameters()
    }

    /// Opens the `--metrics` file (rank 0) where training starts: a fresh run starts it empty; a run
    /// restored at step S keeps what it holds up to step S, so each step appears once.
    func openMetrics() throws {
        guard let path = config.metricsPath, metrics == nil else { return }
        try rootDecides(comm, what: "metrics file") {
            metrics = try MetricsLog(path: path, keepingThrough: step > 0 ? step : nil)
        }
    }

    /// Opens the `--tensorboard` event file (rank 0): a new file per run or resume, as TensorBoard's
    /// writers do; TensorBoard merges a folder's files by step.
    func openTensorBoard() throws {
        guard let dir = config.tensorboard, board == nil else { return }
        try rootDecides(comm, what: "tensorboard") { board = try TensorBoardWriter(directory: dir) }
    }

    /// `--allreduce auto` takes shared memory when all ranks share a machine, else the hierarchical
    /// reduction when every machine runs as many ranks, else MPI buckets. The
    /// reducer decides where the parameters and gradients live, and the model is allocated there:
    /// with shared memory, one node-wide copy of the parameters (rank 0 initializes it) and each
    /// rank's gradients in its own segment; otherwise private memory on every rank.
    static func makeReducer(config: TrainConfig, comm: Communicator, model: Sequential, stateBuffers: Int) throws -> GradientReducer {
        let mode = config.allreduce
        if comm.size > 1 && (mode == "auto" || mode == "shared"),
           let shared = try SharedMemoryReduce(comm: comm, count: model.store.count, stateBuffers: stateBuffers,
                                               inTreeOrder: config.invariantShards != nil) {
            model.allocate(parameters: shared.parameterMemory, gradients: shared.gradientMemory,
                           initializeParametersWithSeed: comm.isRoot ? config.seed : nil)
            return shared
        }
        if mode == "shared" && comm.size > 1 {
            throw TrainingError("--allreduce shared needs every rank on one machine")
        }
        if comm.size > 1 && (mode == "auto" || mode == "hierarchical") {
            if let layout = try comm.machines(), layout.count > 1 || mode == "hierarchical" {
                let h = try HierarchicalReduce(comm: comm, layout: layout, count: model.store.count, stateBuffers: stateBuffers,
                                               bucketBytes: Int((config.bucketMB ?? 1) * 1024 * 1024), wire: config.gradWire ?? .fp32)
                model.allocate(parameters: h.parameterMemory, gradients: h.gradientMemory,
                               initializeParametersWithSeed: comm.isRoot ? config.seed : nil)
                return h
            }
            if mode == "hierarchical" { throw TrainingError("--allreduce hierarchical needs the same number of ranks on every machine") }
        }
        model.allocate(initializeParametersWithSeed: config.seed)
        return BucketAllreduce(comm: comm, store: model.store, bucketBytes: Int((config.bucketMB ?? 25) * 1024 * 1024))
    }

    /// This rank's shards of each batch under `--invariant-shards Q`: Q / W, for W a power of 2
    /// that divides Q; 1 when off.
    static func shardsPerRank(_ config: TrainConfig, comm: Communicator) throws -> Int {
        guard let q = config.invariantShards else { return 1 }
        let w = comm.size
        guard w & (w - 1) == 0, q % w == 0 else {
            throw UsageError("--invariant-shards \(q) needs a power-of-2 number of ranks that divides \(q), not \(w)")
        }
        return q / w
    }

    deinit {
        indices.deallocate()
    }

    /// Gives every rank rank 0's parameters (a broadcast, or with one node-shared copy a barrier)
    /// and buffers (a broadcast: every rank has its own).
    public func broadcastParameters() throws {
        let store = model.store
        try reducer.shareParameters(store.parameters.pointer, count: store.count)
        if store.bufferCount > 0 {
            try comm.broadcast(store.buffers.pointer, count: store.bufferCount * 4, root: 0, what: "broadcast(buffers)")
        }
    }

    /// Whether this rank writes values loaded into the parameters and optimizer state (a checkpoint
    /// that every rank decodes): each rank its own copy, or rank 0 alone into the node-shared copy,
    /// followed by `loadedStatePublished()`.
    public var writesLoadedState: Bool { reducer.writesLoadedState }

    /// Makes rank 0's writes to the node-shared parameters and state visible to every rank.
    public func loadedStatePublished() throws {
        if reducer.sharesParameters { try comm.sharedSync(what: "shared state loaded") }
    }

    // MARK: - The loop

    /// Trains for `--epochs` (or `--max-steps`), evaluating after each epoch. Returns the last evaluation.
    @discardableResult
    public func run() throws -> EvalResult? {
        try openMetrics()
        try openTensorBoard()
        let batches = sampler.batchesPerEpoch
        var stop = maxSteps.map { step >= $0 } ?? false
        while epoch < config.epochs && !stop {
            sampler.startEpoch(epoch)
            var processed = min(batchInEpoch * sampler.globalBatch, sampler.samplesPerEpoch)
            var windowLoss = 0.0, windowSteps = 0
            let epochStart = monotonicSeconds()
            let epochFirstSample = processed
            while batchInEpoch < batches && !stop {
                comm.currentStep = step
                let t0 = monotonicSeconds()
                let (meanLoss, globalCount) = try advance()
                let dt = monotonicSeconds() - t0
                processed += globalCount
                windowLoss += meanLoss
                windowSteps += 1
                metrics?.step(step: step, epoch: epoch + 1, loss: meanLoss, lr: optimizer.learningRate,
                              samplesPerSecond: Double(globalCount) / max(dt, 1e-9))
                if let board {
                    board.scalar("loss", meanLoss, step: step)
                    board.scalar("lr", Double(optimizer.learningRate), step: step)
                    board.scalar("samples_per_s", Double(globalCount) / max(dt, 1e-9), step: step)
                }
                if config.logEvery > 0 && (batchInEpoch % config.logEvery == 0 || batchInEpoch == batches) {
                    console.line(String(format: "Epoch %d [Batch %d/%d Processed %d/%d (%.0f%%)] Loss: %.4f",
                                        epoch + 1, batchInEpoch, batches, processed, sampler.samplesPerEpoch,
                                        100 * Double(processed) / Double(sampler.samplesPerEpoch), windowLoss / Double(windowSteps)))
                    windowLoss = 0
                    windowSteps = 0
                }
                if console.interactive {
                    let elapsed = monotonicSeconds() - epochStart
                    console.bar(epoch: epoch + 1, epochs: config.epochs, batch: batchInEpoch, batches: batches, elapsed: elapsed,
                                samplesPerSecond: Double(processed - epochFirstSample) / max(elapsed, 1e-9), loss: meanLoss)
                }
                if config.checkSync > 0 && step % config.checkSync == 0 { try checkSync() }
                if let m = maxSteps, step >= m { stop = true }
                if stopAgreed {
                    stoppedBySignal = true
                    console.clearBar()
                    console.line("Stop requested (SIGTERM/SIGINT/SIGUSR1): stopping after step \(step)")
                    return lastEval
                }
                if batchInEpoch < batches {
                    if let n = config.evalEvery, step % n == 0 {
                        console.clearBar()
                        try record(try evaluate(), epoch: epoch + 1)
                        try afterStep?(self, true)
                        if stoppedEarly { stop = true }
                    } else {
                        try afterStep?(self, false)
                    }
                }
            }
            let epochSeconds = monotonicSeconds() - epochStart
            console.clearBar()
            console.line(String(format: "Epoch %d done: %d samples in %.2f s (%.0f samples/s)", epoch + 1,
                                processed - epochFirstSample, epochSeconds, Double(processed - epochFirstSample) / max(epochSeconds, 1e-9)))
            // Before the evaluation's all-reduce: no rank can start the next backward, which
            // overwrites the gradients, until rank 0 has joined it.
            if board != nil && tookStep {
                appliedGradients = [Float](repeating: 0, count: model.store.count)
                appliedGradients.withUnsafeMutableBufferPointer { reducer.appliedGradients(into: $0.baseAddress!) }
            }
            let result = try evaluate()
            let epochNumber = epoch + 1
            if batchInEpoch >= batches {
                epoch += 1
                batchInEpoch = 0
            }
            try record(result, epoch: epochNumber, epochEnd: true)
            try afterStep?(self, true)
            if stoppedEarly { stop = true }
        }
        if stoppedEarly, let patience = config.earlyStop, let best = bestScore {
            console.line(String(format: "Early stopping after step %d (epoch %d): %@ did not improve by more than %g in %d evaluations; best %@ %.6g%@",
                                step, lastEvalEpoch, monitor.rawValue, config.minDelta ?? 0, patience, monitor.rawValue,
                                monitor == .valLoss ? -best : best, config.checkpointDir.map { " (\($0)/best.safetensors)" } ?? ""))
        }
        if config.dryRun == true { console.line("Dry run: 1 training step and 1 evaluation batch done; every output was written") }
        if let result = lastEval, let table = result.details(names: splits.eval.classNames) {
            console.line(table)
        }
        if let path = config.savePath {
            try requireFiniteState(for: "--save")
            try rootDecides(comm, what: "save weights") {
                try Weights.save(model, description: savedDescription, to: path)
            }
            console.line("Saved weights to \(path)")
        }
        metrics?.close()
        board?.close()
        return lastEval
    }

    /// What a weights file records beside the tensors: the model, the task, the data and the
    /// preprocessing fitted on it.
    public var savedDescription: Weights.Description {
        Weights.Description(model: spec.description, task: task.name, loss: config.loss, data: config.data.resolved,
                            preprocessing: splits.preprocessing)
    }

    /// Reports an evaluation (console, metrics file) and updates "best" and early stopping.
    func record(_ result: EvalResult, epoch epochNumber: Int, epochEnd: Bool = false) throws {
        lastEval = result
        lastEvalEpoch = epochNumber
        console.line(result.line(setName: splits.evalName))
        metrics?.eval(step: step, epoch: epochNumber, result: result)
        if let board {
            for (name, value) in result.fields { board.scalar(name, value, step: step) }
            if let confusion = result.confusion { board.image("confusion_matrix", confusion.heatMap(), step: step) }
            if epochEnd {
                let store = model.store
                for e in store.entries {
                    board.histogram("weights/" + e.name, UnsafeBufferPointer(start: store.parameterPointer(e.offset), count: e.count), step: step)
                }
                if !appliedGradients.isEmpty {
                    appliedGradients.withUnsafeBufferPointer { g in
                        for e in store.entries {
                            board.histogram("gradients/" + e.name, UnsafeBufferPointer(rebasing: g[e.offset..<(e.offset + e.count)]), step: step)
                        }
                    }
                    appliedGradients = []
                }
            }
            board.flush()
        }
        let score = monitor.score(result)
        lastEvalImproved = bestScore.map { score > $0 } ?? true
        if lastEvalImproved { bestScore = score }
        if let patience = config.earlyStop {
            if earlyStopState.reference.map({ score > $0 + (config.minDelta ?? 0) }) ?? true {
                earlyStopState = .init(reference: score, stale: 0)
            } else {
                earlyStopState.stale += 1
            }
            stoppedEarly = earlyStopState.stale >= patience
        }
    }

    /// Trains the next batch of the current epoch and moves the position (step, batch) on.
    @discardableResult
    public func advance() throws -> (loss: Double, globalCount: Int) {
        let result = try trainStep(batch: batchInEpoch)
        tookStep = true
        batchInEpoch += 1
        step += 1
        return result
    }

    /// One optimizer step on batch `b` of the current epoch. Returns the global mean loss and the
    /// global batch size. Allocates nothing.
    @discardableResult
    public func trainStep(batch b: Int) throws -> (loss: Double, globalCount: Int) {
        var clock = PhaseClock()

        let (k, global) = sampler.fill(batch: b, into: indices)
        if let trace = sampleTrace { traceSamples(trace, k) }
        reducer.reset()

        // This rank's samples go through in micro-batches of at most --batch-size: one, or with
        // `--accumulate N`, N. Each sample's loss is scaled by 1 / (global batch), so the sum over
        // micro-batches and ranks is the gradient of the global batch's mean loss. The first backward
        // writes the gradients, later ones add to them, and only the last feeds the reducer (DDP's
        // no_sync). Every rank runs every micro-batch, an empty one too: synchronized BatchNorm sums
        // over all ranks in each forward and backward, and an empty batch writes zero gradients.
        let micro = config.batchSize
        let chunks = config.accumulate ?? 1
        var lossSum = 0.0
        var lossRequest = 0
        for m in 0..<chunks {
            let lo = min(m * micro, k), n = min(micro, k - lo)
            let context = StepContext(training: true, seed: config.seed, step: UInt64(step), sampleIDs: indices + lo,
                                      accumulateGradients: m > 0, replicas: replicas, shards: shards, finalBackward: m == chunks - 1)
            splits.train.gather(indices + lo, count: n, into: model.input, targets: targets, offset: lo, epoch: epoch)
            clock.lap(&times.data)
            model.forward(batch: n, context: context)
            lossSum += task.loss(model.output, targets: targets, offset: lo, batch: n, gradScale: 1 / Float(global), grad: model.outputGrad)
            clock.lap(&times.forward)
            let last = m == chunks - 1
            if last {
                // The loss sum and the stop request travel together, overlapped with the last backward.
                lossBuffer[0] = Float(lossSum)
                lossBuffer[1] = stopRequested != 0 ? 1 : 0
                if let s = stallHook, s.rank == comm.rank, s.step == step { testStall() }
                if let s = killHook, s.rank == comm.rank, s.step == step { testKill() }
                lossRequest = try comm.startAllreduceSum(lossBuffer.pointer, count: 2, what: "allreduce(loss)")
                model.backward(batch: n, context: context) { [reducer] offset in reducer.ready(from: offset) }
            } else {
                model.backward(batch: n, context: context)  // an earlier micro-batch: nothing is final yet
            }
            clock.lap(&times.backward)
        }
        try replicas?.throwPending()
        try reducer.finish()
        try comm.wait(lossRequest)
        clock.lap(&times.allreduceWait)
        // Every rank has the same sum, so every rank stops here, before the step touches the weights.
        guard lossBuffer[0].isFinite else { throw diverged("the loss is \(lossBuffer[0].isNaN ? "NaN" : "infinite")") }

        optimizer.learningRate = scheduledRate(step: step, epoch: epoch)
        try reducer.step(optimizer)
        if let s = perturbHook, s.rank == comm.rank, s.step == step { model.store.parameters[0] += 1e-3 }
        clock.lap(&times.optimizer)
        try reducer.publish()
        clock.lap(&times.allreduceWait)
        times.steps += 1
        return (Double(lossBuffer[0]) / Double(global), global)
    }

    /// The learning rate of 0-based step `step`, taken in 0-based epoch `epoch`.
    public func scheduledRate(step: Int, epoch: Int) -> Float {
        schedule.rate(base: baseLearningRate, step: step, epoch: epoch, totalSteps: totalSteps, warmupSteps: config.warmupSteps ?? 0)
    }

    /// A divergence at the current step: says where and what to try.
    func diverged(_ what: String) -> DivergedError {
        DivergedError("training diverged at step \(step + 1) (epoch \(epoch + 1), batch \(batchInEpoch + 1)): \(what); "
                      + "nothing non-finite was written (try a lower --lr, or check --normalize and the data)")
    }

    /// Throws `DivergedError` unless every parameter and optimizer value is finite. Called on every
    /// rank before anything is written: the ranks hold identical values and agree.
    public func requireFiniteState(for what: String) throws {
        let store = model.store
        if !store.parameters.allFinite {
            let name = store.entries.first { e in UnsafeBufferPointer(start: store.parameterPointer(e.offset), count: e.count)
                .contains { !$0.isFinite } }?.name ?? "?"
            throw DivergedError("training diverged by step \(step): parameter '\(name)' holds a non-finite value; nothing was written")
        }
        for (name, buffer) in optimizer.stateBuffers where !buffer.allFinite {
            throw DivergedError("training diverged by step \(step): optimizer state '\(name)' holds a non-finite value; \(what) was not written")
        }
    }

    /// Whether any rank asked to stop during the last step (known to all ranks at once).
    var stopAgreed: Bool { lossBuffer[1] > 0 }

    public func evaluate() throws -> EvalResult {
        try Evaluator.evaluate(model: model, task: task, dataset: splits.eval, comm: comm, indices: indices, targets: targets)
    }

    /// Compares a checksum of the parameters across ranks; they must be bit-identical.
    public func checkSync() throws {
        let sums = try comm.allgather(model.store.checksum(), what: "allgather(parameter checksum)")
        if Set(sums).count > 1 {
            let detail = sums.enumerated().map { String(format: "rank %d: %016llx", $0.offset, $0.element) }.joined(separator: ", ")
            throw TrainingError("parameters diverged across ranks at step \(step) (\(detail))")
        }
    }

    /// Header lines: the run's configuration, as rank 0 prints it at start.
    public func printHeader(extra: [String]) {
        console.line("ddp-train: \(comm.size) rank\(comm.size == 1 ? "" : "s")\(comm.size == 1 ? " (local mode)" : ""), "
            + "per-rank batch \(config.batchSize)\((config.accumulate ?? 1) > 1 ? " x \(config.accumulate!) micro-batches per step" : ""), "
            + "global batch \(sampler.globalBatch)"
            + (config.shardData ? ", sharded data" : ""))
        for line in extra { console.line(line) }
        if comm.size > 1 { console.line("Gradients: \(reducer.description)") }
        console.line("Data: \(config.data.dataset) train \(splits.train.count), \(splits.evalName) \(splits.eval.count), "
            + "\(sampler.batchesPerEpoch) steps/epoch, seed \(config.seed)\(config.shuffle ? "" : ", no shuffle")"
            + (splits.train.augmentation.map { ", augment \($0.description)" } ?? ""))
        for note in splits.notes { console.line("Data: \(note)") }
        let hyper = optimizer.hyperparameters.map { "\($0.0)=\($0.1)" }.joined(separator: ", ")
        console.line("Optimizer: \(optimizer.name)(\(hyper)), \(task.name), loss: \(task.lossName)")
        if let c = config.clipGradNorm { console.line("Gradient clipping: global norm at most \(c) (clip_grad_norm_)") }
        if schedule != .constant || (config.warmupSteps ?? 0) > 0 {
            console.line("Learning rate: \(schedule)\((config.warmupSteps ?? 0) > 0 ? ", linear warm-up over \(config.warmupSteps!) steps" : "") over \(totalSteps) steps")
        }
        console.line(model.summary(title: "Model \(spec)"))
    }

    // MARK: - Test hooks (fault injection for the integration tests)
    // DDP_TEST_STALL=R:S   rank R sleeps forever before step S's all-reduce (the watchdog must fire)
    // DDP_TEST_KILL=R:S    rank R sends itself SIGKILL at step S; not in a resumed run (so a
    //                      supervisor's restart can finish), or with DDP_TEST_KILL_MARK=FILE only
    //                      while FILE does not exist (the kill creates it): once per job, resumed or not
    // DDP_TEST_PERTURB=R:S rank R nudges one parameter after step S (--check-sync must notice; with
    //                      --allreduce mpi, as the shared copy of one machine cannot diverge)
    // DDP_TEST_TRACE_SAMPLES=DIR  each rank writes "epoch index" per sample it trains on

    private static func testHook(_ name: String) -> (rank: Int, step: Int)? {
        guard let v = ProcessInfo.processInfo.environment[name] else { return nil }
        let parts = v.split(separator: ":").compactMap { Int($0) }
        return parts.count == 2 ? (parts[0], parts[1]) : nil
    }

    private func traceSamples(_ trace: FileHandle, _ k: Int) {
        let line = (0..<k).map { "\(epoch) \(indices[$0])" }.joined(separator: "\n")
        if k > 0 { trace.write((line + "\n").data(using: .utf8)!) }
    }

    private func testStall() {
        warn("test hook: rank \(comm.rank) stalls at step \(step)")
        while true { sleep(1000) }
    }

    private static func killHookArmed(resumed: Bool) -> Bool {
        guard let mark = ProcessInfo.processInfo.environment["DDP_TEST_KILL_MARK"] else { return !resumed }
        return !FileManager.default.fileExists(atPath: mark)
    }

    private func testKill() {
        if let mark = ProcessInfo.processInfo.environment["DDP_TEST_KILL_MARK"] { _ = FileManager.default.createFile(atPath: mark, contents: nil) }
        warn("test hook: rank \(comm.rank) kills itself (SIGKILL) at step \(step)")
        Glibc.kill(getpid(), SIGKILL)
    }
}

/// Set from the stop signals' handler; read once per step and agreed on by all ranks.
nonisolated(unsafe) public var stopRequested: Int32 = 0

/// Asks training to stop at the next step boundary, write a checkpoint and exit 75 on SIGTERM or
/// SIGINT (Slurm preemption, Ctrl-C in local mode) and on SIGUSR1. SIGUSR1 is the one mpirun passes on
/// to every rank at once: on SIGTERM or SIGINT mpirun itself sends the ranks SIGTERM only after
/// `odls_base_sigkill_timeout` seconds and SIGKILL after as many again (README, "Signals").
public func installStopSignalHandlers() {
    for s in [SIGTERM, SIGINT, SIGUSR1] { signal(s) { _ in stopRequested = 1 } }
    // A file-size limit turns into a failed write (reported) instead of killing the process.
    signal(SIGXFSZ, SIG_IGN)
}
