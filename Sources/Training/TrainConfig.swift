import Comm
import Data
import NN
import Optim

/// Everything that defines a training run, resolved from the command line. It is Codable so a
/// checkpoint can record the exact configuration it was made with.
public struct TrainConfig: Codable, Equatable, Sendable {
    /// Which data, and how it becomes model input (every data flag, parsed).
    public var data = DataSource()
    public var model = "mlp:512,512"
    /// `--loss` (nil: the task's default, cross-entropy or mse).
    public var loss: String?
    public var epochs = 1
    public var maxSteps: Int?
    public var batchSize = 64
    public var optimizer = "sgd"
    public var lr: Float?
    /// `--lr-schedule` (nil: constant) and `--warmup-steps` (nil: 0); optional so that checkpoints
    /// written before they existed still decode.
    public var lrSchedule: String?
    public var warmupSteps: Int?
    /// `--accumulate N` micro-batches per optimizer step (nil: 1).
    public var accumulate: Int?
    /// `--clip-grad-norm` (nil: no clipping).
    public var clipGradNorm: Float?
    /// `--invariant-shards Q` (nil: off): sums over the batch in a fixed tree of Q shards, the same on
    /// any power-of-2 number of ranks that divides Q (`GradientShards`).
    public var invariantShards: Int?
    public var momentum: Float = 0
    public var nesterov = false
    public var weightDecay: Float?
    public var seed: UInt64 = 1 { didSet { data.seed = seed } }
    public var shuffle = true
    public var dropLast = false
    public var savePath: String?
    public var initWeights: String?
    public var metricsPath: String?
    public var logEvery = 10
    /// Bucket size for summing gradients between machines (nil: 25 MiB for `mpi`, 1 MiB for `hierarchical`).
    public var bucketMB: Double?
    /// auto: shared memory when every rank is on one machine, else hierarchical (shared memory inside
    /// each machine, MPI between) when machines hold equal numbers of ranks, else MPI; or force one.
    public var allreduce = "auto"
    /// How gradients travel between machines (hierarchical reduction); nil: fp32. (Optional, so
    /// that checkpoints written before it existed still decode.)
    public var gradWire: GradientWire?
    public var checkSync = 0
    public var shardData = false
    public var stallTimeout: Double = 300
    public var checkpointDir: String?
    public var checkpointEvery = 0
    public var keep = 3
    public var resume: String?
    public var evalBatch = 1000
    /// `--eval-every N` steps, besides each epoch's end (nil: epoch ends only).
    public var evalEvery: Int?
    /// `--early-stop PATIENCE` evaluations without improvement of `--monitor` by more than `--min-delta`.
    public var earlyStop: Int?
    /// `--monitor val_loss|val_accuracy` (nil: val_accuracy for classification, val_loss for regression).
    public var monitor: Monitor?
    public var minDelta: Double?
    /// `--dry-run`: one training step and one evaluation batch, every output written.
    public var dryRun: Bool?
    /// `--tensorboard DIR`: TensorBoard event files (rank 0).
    public var tensorboard: String?
    public var quiet = false

    public init() {}

    public var modelSpec: ModelSpec { get throws { try ModelSpec(parsing: model) } }
    public var schedule: LRSchedule { get throws { try lrSchedule.map { try LRSchedule(parsing: $0) } ?? .constant } }
    public var lossKind: LossKind? { get throws {
        guard let loss else { return nil }
        guard let k = LossKind(name: loss) else {
            throw TrainingError("invalid --loss '\(loss)': expected cross-entropy, nll or mse (classification), or mse, l1 or huber (regression)")
        }
        return k
    } }

    public var optimizerConfig: OptimizerConfig { get throws {
        guard let kind = OptimizerConfig.Kind(rawValue: optimizer.lowercased()) else {
            throw TrainingError("invalid --optimizer '\(optimizer)': expected sgd, adam, adamw, rmsprop, adagrad or adadelta")
        }
        var c = OptimizerConfig(kind: kind, learningRate: lr)
        c.momentum = momentum
        c.nesterov = nesterov
        c.weightDecay = weightDecay
        return c
    } }

    /// Checks everything that can be checked before touching data, with one clear message. Every
    /// failure is a `UsageError` (exit status 2).
    public func validate() throws {
        do {
            try data.validate()
            _ = try modelSpec
            _ = try lossKind
            _ = try schedule
            try optimizerConfig.validate()
        } catch {
            throw UsageError("\(error)")
        }
        func bad(_ s: String) -> UsageError { UsageError(s) }
        guard batchSize > 0 else { throw bad("invalid --batch-size \(batchSize): must be at least 1") }
        guard epochs > 0 else { throw bad("invalid --epochs \(epochs): must be at least 1") }
        if let m = maxSteps, m <= 0 { throw bad("invalid --max-steps \(m): must be at least 1") }
        if let w = warmupSteps, w < 0 { throw bad("invalid --warmup-steps \(w): must be >= 0") }
        if let a = accumulate, a < 1 { throw bad("invalid --accumulate \(a): must be at least 1") }
        if let c = clipGradNorm, !(c.isFinite && c > 0) { throw bad("invalid --clip-grad-norm \(c): must be > 0") }
        if let q = invariantShards, !(1...64).contains(q) || q & (q - 1) != 0 {
            throw bad("invalid --invariant-shards \(q): must be a power of 2 from 1 to 64")
        }
        if invariantShards != nil && shardData {
            throw bad("--invariant-shards needs the global sampler: with --shard-data the batches depend on the number of ranks")
        }
        guard logEvery >= 0 else { throw bad("invalid --log-every \(logEvery): must be >= 0") }
        guard ["auto", "mpi", "shared", "hierarchical"].contains(allreduce) else {
            throw bad("invalid --allreduce '\(allreduce)': expected auto, mpi, shared or hierarchical")
        }
        if let b = bucketMB, !(b.isFinite && b > 0) { throw bad("invalid --bucket-mb \(b): must be > 0") }
        if let gradWire, gradWire != .fp32, allreduce != "auto" && allreduce != "hierarchical" {
            throw bad("--grad-wire \(gradWire.rawValue) applies to the hierarchical reduction between machines, not --allreduce \(allreduce)")
        }
        guard stallTimeout.isFinite, stallTimeout > 0 else { throw bad("invalid --stall-timeout \(stallTimeout): must be > 0") }
        guard checkSync >= 0 else { throw bad("invalid --check-sync \(checkSync): must be >= 0") }
        guard checkpointEvery >= 0 else { throw bad("invalid --checkpoint-every \(checkpointEvery): must be >= 0") }
        guard keep >= 1 else { throw bad("invalid --keep \(keep): must be at least 1") }
        if let n = evalEvery, n < 1 { throw bad("invalid --eval-every \(n): must be at least 1") }
        if let p = earlyStop, p < 1 { throw bad("invalid --early-stop \(p): the patience must be at least 1 evaluation") }
        if let d = minDelta, !(d.isFinite && d >= 0) { throw bad("invalid --min-delta \(d): must be >= 0") }
        if minDelta != nil && earlyStop == nil { throw bad("--min-delta applies to --early-stop") }
        if (checkpointEvery > 0 || resume != nil) && checkpointDir == nil {
            throw bad("--checkpoint-every and --resume need --checkpoint-dir")
        }
    }

    /// The flags that decide the training trajectory, as (flag, value) with defaults resolved: a
    /// resumed run must give the same values as the run that wrote the checkpoint.
    public var trajectoryFlags: [(flag: String, value: String)] {
        let o = try? optimizerConfig
        let s = try? schedule
        // A schedule over the whole run changes with its length; otherwise the length is free ("*").
        let fixedLength = s?.dependsOnLength == true
        return [
            ("--epochs", fixedLength ? String(epochs) : "*"), ("--max-steps", fixedLength ? maxSteps.map(String.init) ?? "none" : "*"),
            ("--lr-schedule", s?.description ?? "?"), ("--warmup-steps", String(warmupSteps ?? 0)),
            ("--clip-grad-norm", clipGradNorm.map { "\($0)" } ?? "none"),
            ("--invariant-shards", invariantShards.map(String.init) ?? "none"),
            ("--dataset", data.dataset), ("--holdout", String(data.holdout)),
            ("--normalize", data.normalize?.description ?? "none"),
            ("--test-data", data.testData ?? "none"), ("--labels", data.labels ?? "none"), ("--target", data.target ?? "last"),
            ("--task", data.task?.rawValue ?? "inferred"), ("--header", data.header.map { "\($0)" } ?? "detected"),
            ("--no-standardize", "\(!data.standardize)"), ("--image-size", data.imageSize.map { "\($0)" } ?? "none"),
            ("--augment", data.augment?.description ?? "none"), ("--val-split", data.valSplit.map { "\($0)" } ?? "none"),
            ("--stratify", "\(data.stratify)"),
            ("--loss", loss ?? "default"), ("--optimizer", optimizer.lowercased()),
            ("--lr", o.map { "\($0.resolvedLearningRate)" } ?? "?"), ("--momentum", "\(momentum)"),
            ("--nesterov", "\(nesterov)"), ("--weight-decay", o.map { "\($0.resolvedWeightDecay)" } ?? "?"),
            ("--seed", String(seed)), ("--no-shuffle", "\(!shuffle)"), ("--drop-last", "\(dropLast)"),
            ("--shard-data", "\(shardData)"), ("--eval-every", evalEvery.map(String.init) ?? "none"),
            ("--early-stop", earlyStop.map(String.init) ?? "none"), ("--monitor", monitor?.rawValue ?? "default"),
            ("--min-delta", minDelta.map { "\($0)" } ?? "0"),
        ]
    }

    /// What differs between this command line and `saved` (a checkpoint's configuration), as
    /// "--lr 0.5 (the checkpoint has 0.05)".
    public func trajectoryDifferences(from saved: TrainConfig) -> [String] {
        zip(trajectoryFlags, saved.trajectoryFlags).compactMap { mine, theirs in
            mine.value == theirs.value || mine.value == "*" || theirs.value == "*" ? nil
                : "\(mine.flag) \(mine.value) (the checkpoint has \(theirs.value))"
        }
    }
}

/// The metric that decides "best" (best.safetensors) and early stopping.
public enum Monitor: String, Codable, CaseIterable, Sendable {
    case valLoss = "val_loss"
    case valAccuracy = "val_accuracy"

    /// What is maximized: the accuracy, or minus the loss.
    public func score(_ r: EvalResult) -> Double { self == .valLoss ? -r.loss : r.accuracy }
    /// The value as it reads (the loss, not its negative).
    public func value(_ r: EvalResult) -> Double { self == .valLoss ? r.loss : r.accuracy }
}
