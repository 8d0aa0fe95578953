import ArgumentParser
import Comm
import Data
import Engine
import Foundation
import NN
import Training

struct DDPTrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ddp-train",
        abstract: "Distributed data-parallel training of neural networks over Open MPI and OpenBLAS.",
        discussion: """
        Run alone for local mode, or under Open MPI for data-parallel training:
          ddp-train --epochs 5                      (one process)
          mpirun -np 4 ddp-train --epochs 5         (four ranks, global batch 4 x --batch-size)
        """,
        version: "ddp-train 0.11.0",
        subcommands: [Train.self, Evaluate.self, Predict.self, ReportCommand.self, ExportCommand.self, Download.self, Bench.self],
        defaultSubcommand: Train.self)
}

extension TableSchema.Task: ExpressibleByArgument {}
extension Monitor: ExpressibleByArgument {}
extension GradientWire: ExpressibleByArgument {}

/// Where the data is and how it becomes model input; shared by train, evaluate, predict and bench.
/// Every option is optional: train fills the gaps with the defaults, evaluate and predict with what
/// the weights file recorded.
struct DataOptions: ParsableArguments {
    @Option(help: "mnist, fashion-mnist, synthetic:N (a seeded, learnable task), csv:PATH (a CSV or TSV table), or images:DIR (torchvision's ImageFolder layout: DIR/train/CLASS/*.png, DIR/test/CLASS/*.png).")
    var dataset: String?
    @Option(help: "Folder of the IDX files (default: mnist $DDP_DATA_DIR, else ./data/mnist; fashion-mnist /usr/share/datasets/fashion-mnist when Debian's dataset-fashion-mnist is installed, else ./data/fashion-mnist).")
    var dataDir: String?
    @Option(help: "A separate test set: a table for csv data, a labels CSV for --labels images.")
    var testData: String?
    @Option(help: "Images listed in a CSV of file,label rows (paths relative to the CSV), with --dataset images.")
    var labels: String?
    @Option(help: "The target column(s) of a table: a name or 0-based index, comma-separated for several regression targets (default: the last column).")
    var target: String?
    @Option(help: "classification or regression (default: inferred from the target column, and printed).")
    var task: TableSchema.Task?
    @Flag(inversion: .prefixedNo, help: "Whether the table's first row is a header (default: detected).")
    var header: Bool?
    @Flag(help: "Keep table features as they are instead of standardizing them with the training table's mean and std.")
    var noStandardize = false
    @Flag(inversion: .prefixedNo, help: "Encode a table once into a memory-mapped binary cache beside it (TABLE.ddpcache), for tables larger than memory (default: for tables of 64 MiB or more).")
    var tableCache: Bool?
    @Option(help: "Resize every image to HxW (default: every image must have the first image's size).")
    var imageSize: String?
    @Option(parsing: .unconditional, help: "Normalize image pixels as (x - MEAN) / STD after scaling to [0,1]: MEAN,STD, or M1,...,MC,S1,...,SC per channel, e.g. 0.1307,0.3081.")
    var normalize: String?
    @Option(help: "Augment training images: crop:PADDING (random crop after zero padding) and/or flip (random horizontal flip), e.g. crop:4,flip.")
    var augment: String?
    @Option(parsing: .unconditional, help: "Use a seeded random fraction F of the training data as the validation set (torch's random_split).")
    var valSplit: Double?
    @Flag(help: "Keep the class proportions in the --val-split.")
    var stratify = false
    @Option(parsing: .unconditional, help: "Use the last N training samples as the validation set instead of the test set.")
    var holdout: Int?

    func validate() throws {
        do {
            try source(over: nil).validate()
        } catch {
            throw ValidationError("\(error)")
        }
    }

    /// These options over `base`: the defaults when nil (train), else a weights file's record.
    func source(over base: DataSource?, seed: UInt64 = 1) throws -> DataSource {
        var d = base ?? DataSource()
        if let dataset { d.dataset = dataset }
        if base == nil {
            d.dataDir = ((try? d.kind) ?? .mnist).defaultDirectory(environment: ProcessInfo.processInfo.environment)
            d.seed = seed
        }
        if let dataDir { d.dataDir = dataDir }
        if let testData { d.testData = testData }
        if let labels { d.labels = labels }
        if let target { d.target = target }
        if let task { d.task = task }
        if let header { d.header = header }
        if noStandardize { d.standardize = false }
        if let tableCache { d.tableCache = tableCache }
        if let imageSize {
            let parts = imageSize.lowercased().split(separator: "x", omittingEmptySubsequences: false).map { Int($0) }
            guard (parts.count == 2 || parts.count == 1), parts.allSatisfy({ $0 != nil }) else {
                throw ValidationError("invalid --image-size '\(imageSize)': expected HxW, e.g. 28x28")
            }
            d.imageSize = parts.count == 1 ? [parts[0]!, parts[0]!] : parts.map { $0! }
        }
        if let normalize { d.normalize = try Normalization(parsing: normalize) }
        if let augment { d.augment = try Augmentation(parsing: augment, seed: d.seed) }
        if let valSplit { d.valSplit = valSplit; d.holdout = 0 }
        if stratify { d.stratify = true }
        if let holdout { d.holdout = holdout; if holdout > 0 { d.valSplit = nil } }
        return d
    }
}

/// How the ranks sum gradients and how many BLAS threads each uses; shared by train and bench.
struct ParallelOptions: ParsableArguments {
    @Option(help: "How gradients are summed: auto (shared memory when all ranks share a machine, else hierarchical when machines hold equal numbers of ranks, else MPI), mpi, shared or hierarchical.")
    var allreduce = "auto"
    @Option(parsing: .unconditional, help: "Bucket size in MiB for summing gradients between machines (default: 25 for mpi, 1 for hierarchical).")
    var bucketMb: Double?
    @Option(help: "How gradients travel between machines (hierarchical): fp32, or bf16 for half the bytes (added in FP32, rounded to bfloat16).")
    var gradWire: GradientWire?
    @Option(parsing: .unconditional, help: "OpenBLAS threads per rank (default: 1 when ranks share a node, else all cores).")
    var blasThreads: Int?
    @Option(parsing: .unconditional, help: "Local mode: ranks run as threads of this process, each with 1/N of --batch-size and one BLAS thread (default: one per core, the most that divide --batch-size; 1 with --blas-threads).")
    var localRanks: Int?

    func validate() throws {
        if let n = blasThreads, n < 1 { throw ValidationError("invalid --blas-threads \(n): must be at least 1") }
        if let n = localRanks, n < 1 { throw ValidationError("invalid --local-ranks \(n): must be at least 1") }
    }

    func apply(to c: inout TrainConfig) {
        c.allreduce = allreduce
        c.bucketMB = bucketMb
        c.gradWire = gradWire
    }
}

/// Saved weights to evaluate or predict with; shared by evaluate and predict.
struct WeightsOptions: ParsableArguments {
    @Option(help: "Weights file (safetensors) written by --save; it records the model, the data and the preprocessing.")
    var weights: String
    @Option(help: "The model the weights are for (default: the one recorded in the file).")
    var model: String?

    /// What the file records about itself.
    func description() throws -> Weights.Description { try Weights.description(in: weights) }

    /// Builds the model the file needs (`--model`, else the spec saved in it) for `task` and loads the weights.
    func load(inputShape: Shape, task: Task, recorded: Weights.Description, maxBatch: Int) throws -> (Sequential, ModelSpec) {
        try Weights.loadModel(weights, recorded: recorded, spec: model, inputShape: inputShape, outputs: task.width, maxBatch: maxBatch)
    }
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Train a model (the default command).")

    @OptionGroup var data: DataOptions

    @Option(help: "mlp:H1,H2,...[:relu|sigmoid|tanh][:dropout=P], a preset (linear, cnn, lenet5, resnet8), or a layer list (docs/models.md).")
    var model = "mlp:512,512"
    @Option(help: "Classification: cross-entropy (default, on logits), nll (adds LogSoftmax) or mse (against one-hot targets). Regression: mse (default), l1 or huber.")
    var loss: String?
    @Option(parsing: .unconditional, help: "Passes over the training set.")
    var epochs = 1
    @Option(parsing: .unconditional, help: "Stop after N optimizer steps.")
    var maxSteps: Int?
    @Option(parsing: .unconditional, help: "Samples per rank per step under mpirun (the global batch is this times the ranks); in local mode, per step, split over the local ranks.")
    var batchSize = 64
    @Option(help: "sgd, adam, adamw, rmsprop, adagrad or adadelta.")
    var optimizer = "sgd"
    @Option(parsing: .unconditional, help: "Learning rate (default: torch's, 0.01 for sgd and rmsprop, 0.001 for adam and adamw).")
    var lr: Float?
    @Option(help: "constant, step:SIZE[:GAMMA], multistep:M1,M2,...[:GAMMA], exponential:GAMMA (epochs), cosine[:MIN_LR] or onecycle[:PCT_START] (steps), as torch.optim.lr_scheduler.")
    var lrSchedule: String?
    @Option(parsing: .unconditional, help: "Linear learning-rate warm-up over the first N steps.")
    var warmupSteps: Int?
    @Option(parsing: .unconditional, help: "Micro-batches of --batch-size per optimizer step, with gradients summed over ranks only after the last (DDP's no_sync).")
    var accumulate: Int?
    @Option(parsing: .unconditional, help: "Scale the summed gradients so their global L2 norm is at most X (torch's clip_grad_norm_).")
    var clipGradNorm: Float?
    @Option(parsing: .unconditional, help: "Sum gradients and BatchNorm statistics over Q fixed shards of each global batch in a fixed order (Q a power of 2, at most 64), so that 1, 2, 4, ... Q ranks on one machine train to bitwise the same weights.")
    var invariantShards: Int?
    @Option(parsing: .unconditional, help: "Momentum (sgd, rmsprop).")
    var momentum: Float = 0
    @Flag(help: "Nesterov momentum (sgd).")
    var nesterov = false
    @Option(parsing: .unconditional, help: "Weight decay (default: 0, AdamW 0.01).")
    var weightDecay: Float?
    @Option(parsing: .unconditional, help: "Seed for initialization, shuffling and dropout.")
    var seed: UInt64 = 1
    @Flag(help: "Keep the file order instead of shuffling each epoch.")
    var noShuffle = false
    @Flag(help: "Drop the last partial global batch of each epoch.")
    var dropLast = false
    @Option(help: "Write the final weights as safetensors (PyTorch state_dict names).")
    var save: String?
    @Option(help: "Start from weights in a safetensors file.")
    var initWeights: String?
    @Option(help: "Write one JSON object per step and per evaluation to this file.")
    var metrics: String?
    @Option(parsing: .unconditional, help: "Print a progress line every N batches (0: never).")
    var logEvery = 10

    @OptionGroup var parallel: ParallelOptions
    @Option(parsing: .unconditional, help: "Compare a parameter checksum across ranks every N steps (0: never).")
    var checkSync = 0
    @Flag(help: "Each rank keeps only a contiguous 1/W of the training set (results then depend on the number of ranks).")
    var shardData = false
    @Option(parsing: .unconditional, help: "Abort the job if a collective waits longer than this many seconds.")
    var stallTimeout: Double = 300
    @Option(help: "Directory for checkpoints (with --checkpoint-every and --resume).")
    var checkpointDir: String?
    @Option(parsing: .unconditional, help: "Write a checkpoint every N steps (and at every epoch end); 0: epoch ends only.")
    var checkpointEvery = 0
    @Option(parsing: .unconditional, help: "Keep the newest K checkpoints.")
    var keep = 3
    @Option(help: "Resume from PATH, or with no value from the newest readable checkpoint in --checkpoint-dir.")
    var resume: String?
    @Flag(help: "Print nothing but errors.")
    var quiet = false
    @Option(parsing: .unconditional, help: "Also evaluate every N optimizer steps, besides each epoch's end.")
    var evalEvery: Int?
    @Option(parsing: .unconditional, help: "Stop when --monitor has not improved by more than --min-delta for PATIENCE evaluations (best.safetensors in --checkpoint-dir holds the best model).")
    var earlyStop: Int?
    @Option(help: "val_loss or val_accuracy: the metric for --early-stop and for best.safetensors (default: val_accuracy, or val_loss for regression).")
    var monitor: Monitor?
    @Option(parsing: .unconditional, help: "The least change of --monitor that counts as an improvement for --early-stop.")
    var minDelta: Double?
    @Flag(help: "One training step and one evaluation batch, writing every output (--save, --metrics, checkpoints): a quick check of a command line.")
    var dryRun = false
    @Option(help: "Write TensorBoard event files here: loss, lr, samples/s, validation metrics, weight histograms per epoch, the confusion matrix.")
    var tensorboard: String?
    @Option(help: "Read training flags from a YAML file (flag: value, without the dashes); the command line overrides them.")
    var config: String?
    @Flag(help: "Print the resolved configuration (every training flag and its value) as YAML, and exit.")
    var printConfig = false

    /// The run these flags describe.
    func makeConfig() throws -> TrainConfig {
        var c = TrainConfig()
        c.data = try data.source(over: nil, seed: seed)
        c.model = model
        c.loss = loss
        c.epochs = epochs
        c.maxSteps = maxSteps
        c.batchSize = batchSize
        c.optimizer = optimizer
        c.lr = lr
        c.lrSchedule = lrSchedule
        c.warmupSteps = warmupSteps
        c.clipGradNorm = clipGradNorm
        c.accumulate = accumulate
        c.invariantShards = invariantShards
        c.momentum = momentum
        c.nesterov = nesterov
        c.weightDecay = weightDecay
        c.seed = seed
        c.shuffle = !noShuffle
        c.dropLast = dropLast
        c.savePath = save
        c.initWeights = initWeights
        c.metricsPath = metrics
        c.logEvery = logEvery
        parallel.apply(to: &c)
        c.checkSync = checkSync
        c.shardData = shardData
        c.stallTimeout = stallTimeout
        c.quiet = quiet
        c.checkpointDir = checkpointDir
        c.checkpointEvery = checkpointEvery
        c.keep = keep
        c.resume = resume
        c.evalEvery = evalEvery
        c.earlyStop = earlyStop
        c.monitor = monitor
        c.minDelta = minDelta
        c.dryRun = dryRun ? true : nil
        c.tensorboard = tensorboard
        return c
    }

    /// Every value and combination is checked while parsing, so a bad one exits 2 before anything starts.
    func validate() throws {
        do {
            try makeConfig().validate()
        } catch {
            throw ValidationError("\(error)")
        }
    }

    func run() throws {
        let c = try makeConfig()
        // The data flags' defaults are decided here (DDP_DATA_DIR, Debian's Fashion-MNIST): recorded as decided.
        let filled = ["dataset": c.data.dataset, "data-dir": c.data.dataDir]
        if printConfig {
            print(try RunConfig.yaml(arguments, filled: filled), terminator: "")
            return
        }
        installStopSignalHandlers()
        try Ranks.run(parallel, config: c, stallTimeout: c.stallTimeout) { comm, c, header in
            try Train.train(c, comm: comm, header: header, filled: filled)
        }
    }

    /// One rank's part of the run.
    static func train(_ c: TrainConfig, comm: Communicator, header: [String], filled: [String: String]) throws {
        // The checkpoint folder is locked (and checked writable) before anything else is done.
        let checkpointer = try c.checkpointDir.map { try Checkpointer(directory: $0, every: c.checkpointEvery, keep: c.keep, comm: comm) }
        let trainer = try Trainer(config: c, comm: comm)
        if let checkpointer { trainer.afterStep = { try checkpointer.afterStep($0, evaluated: $1) } }
        var resumed: String?
        if let choice = c.resume, let cp = checkpointer {
            resumed = try cp.resume(choice, into: trainer)
        }
        // The resolved configuration beside the checkpoints and the weights: --config of it repeats the run.
        try rootDecides(comm, what: "configuration") {
            for path in [c.checkpointDir.map { $0 + "/config.yaml" }, c.savePath.map(RunConfig.path(besideWeights:))].compactMap({ $0 }) {
                do { try RunConfig.write(arguments, filled: filled, to: path) } catch { throw TrainingError("cannot write the configuration \(path): \(error)") }
            }
        }
        trainer.printHeader(extra: header)
        if c.resume != nil {
            trainer.console.line(resumed.map { "Resumed from \($0) at step \(trainer.step) (epoch \(trainer.epoch + 1), batch \(trainer.batchInEpoch))" }
                                 ?? "No checkpoint in \(c.checkpointDir ?? "?"): starting from scratch")
        }
        try trainer.run()
        if trainer.stoppedBySignal {
            try checkpointer?.write(trainer)
            trainer.console.line("Stopped by signal at step \(trainer.step); exit status \(ExitStatus.stopped). Resume with --resume.")
            comm.finalize()
            throw ExitCode(ExitStatus.stopped)
        }
        comm.finalize()
    }
}

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate saved weights: loss and accuracy with the confusion matrix, or MSE, MAE and R².",
        discussion: "With only --weights, the training run's data, split and preprocessing (recorded in the file) are used; data options override them.")

    @OptionGroup var data: DataOptions
    @OptionGroup var saved: WeightsOptions
    @Option(help: "The loss to report (default: the one the weights were trained with).")
    var loss: String?

    func run() throws {
        let recorded = try saved.description()
        let source = try data.source(over: recorded.data)
        let splits = try DataSplits.load(source, fitted: recorded.preprocessing)
        let lossKind: LossKind? = try (loss ?? recorded.loss).map { name in
            guard let k = LossKind(name: name) else { throw ValidationError("invalid --loss '\(name)'") }
            return k
        }
        try evaluate(splits: splits, recorded: recorded, lossKind: lossKind)
    }

    func evaluate(splits: DataSplits, recorded: Weights.Description, lossKind: LossKind?) throws {
        let task = try Task(evaluating: splits.eval.space, loss: lossKind)
        let comm = try makeCommunicator(stallTimeout: 300)
        _ = BLASEnvironment.configureThreads(override: nil, localSize: comm.localSize)
        let (net, spec) = try saved.load(inputShape: splits.eval.sampleShape, task: task, recorded: recorded, maxBatch: 1000)
        let indices = UnsafeMutablePointer<Int32>.allocate(capacity: 1000)
        defer { indices.deallocate() }
        let targets = TargetBuffer(capacity: 1000, width: task.width)
        let result = try Evaluator.evaluate(model: net, task: task, dataset: splits.eval, comm: comm, indices: indices, targets: targets)
        if comm.isRoot {
            print("Model \(spec) from \(saved.weights); data \(splits.evalName == "test" ? "test set" : "validation split") of \(data.dataset ?? recorded.data?.dataset ?? "?")")
            print(result.line(setName: splits.evalName))
            if let table = result.details(names: splits.eval.classNames) { print(table) }
        }
        comm.finalize()
    }
}

struct Download: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fetch MNIST or Fashion-MNIST from the public mirrors and verify their checksums.")

    @Option(help: "mnist or fashion-mnist.")
    var dataset = "mnist"
    @Option(help: "Where to store the four files (default: mnist $DDP_DATA_DIR, else ./data/mnist; fashion-mnist ./data/fashion-mnist).")
    var dir: String?
    @Option(help: "Base URL to fetch from instead of the standard mirrors.")
    var mirror: String?
    @Option(help: "Seconds before a request gives up.")
    var timeout: Double = 30

    func run() throws {
        let kind = try DatasetKind(parsing: dataset)
        guard kind == .mnist || kind == .fashionMNIST else {
            throw ValidationError("invalid --dataset '\(dataset)': download fetches mnist or fashion-mnist")
        }
        let target = dir ?? (kind == .fashionMNIST ? "./data/fashion-mnist" : kind.defaultDirectory(environment: ProcessInfo.processInfo.environment))
        try Downloader.download(kind: kind, into: target, mirror: mirror, timeout: timeout) { print($0) }
        print("\(kind) is in \(target)")
    }
}
