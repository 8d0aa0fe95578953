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
        subcommands: [Train.self, Evaluate.self, Predict.self, Download.self, Bench.self],
        defaultSubcommand: Train.self)
}

/// Where the data is and how to read it; shared by train, evaluate, predict and bench.
struct DataOptions: ParsableArguments {
    @Option(help: "Dataset folder in the standard MNIST layout (default: $DDP_DATA_DIR, else ./data/mnist).")
    var dataDir: String?

    @Option(help: "mnist, fashion-mnist, or synthetic:N (a seeded, learnable task of N samples).")
    var dataset = "mnist"

    @Option(parsing: .unconditional, help: "Normalize pixels as (x - MEAN) / STD after scaling to [0,1], e.g. 0.1307,0.3081.")
    var normalize: String?

    @Option(parsing: .unconditional, help: "Use the last N training samples as the validation set instead of the test files.")
    var holdout = 0

    func validate() throws {
        _ = try parsedNormalize()
        guard holdout >= 0 else { throw ValidationError("invalid --holdout \(holdout): must be >= 0") }
    }

    var resolvedDataDir: String {
        dataDir ?? ProcessInfo.processInfo.environment["DDP_DATA_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "./data/mnist"
    }

    func parsedNormalize() throws -> [Float]? {
        guard let normalize else { return nil }
        let parts = normalize.split(separator: ",").map { Float($0.trimmingCharacters(in: .whitespaces)) }
        guard parts.count == 2, let m = parts[0], let s = parts[1], m.isFinite, s.isFinite, s > 0 else {
            throw ValidationError("invalid --normalize '\(normalize)': expected MEAN,STD, finite numbers with STD > 0, e.g. 0.1307,0.3081")
        }
        return [m, s]
    }

    func apply(to c: inout TrainConfig) throws {
        c.dataDir = resolvedDataDir
        c.dataset = dataset
        c.normalize = try parsedNormalize()
        c.holdout = holdout
    }

    /// The train and evaluation sets these options describe.
    func load() throws -> DataSplits {
        var c = TrainConfig()
        try apply(to: &c)
        return try DataSplits.load(kind: try c.datasetKind, dataDir: c.dataDir, holdout: c.holdout, seed: c.seed, normalize: c.normalize)
    }
}

/// How the ranks sum gradients and how many BLAS threads each uses; shared by train and bench.
struct ParallelOptions: ParsableArguments {
    @Option(help: "How gradients are summed: auto (shared memory when all ranks share a machine, else MPI), mpi, or shared.")
    var allreduce = "auto"
    @Option(parsing: .unconditional, help: "Gradient all-reduce bucket size in MiB (MPI path).")
    var bucketMb: Double = 25
    @Option(parsing: .unconditional, help: "OpenBLAS threads per rank (default: 1 when ranks share a node, else all cores).")
    var blasThreads: Int?

    func validate() throws {
        if let n = blasThreads, n < 1 { throw ValidationError("invalid --blas-threads \(n): must be at least 1") }
    }

    func apply(to c: inout TrainConfig) {
        c.allreduce = allreduce
        c.bucketMB = bucketMb
    }
}

/// Saved weights to evaluate or predict with; shared by evaluate and predict.
struct WeightsOptions: ParsableArguments {
    @Option(help: "Weights file (safetensors) written by --save.")
    var weights: String
    @Option(help: "The model the weights are for (default: the one recorded in the file).")
    var model: String?

    /// Builds the model the file needs (`--model`, else the spec saved in it) and loads the weights.
    func load(for data: Dataset, maxBatch: Int) throws -> (Sequential, ModelSpec) {
        let spec = try ModelSpec(parsing: try model ?? Weights.modelSpec(in: weights) ?? "mlp:512,512")
        let net = try spec.build(inputShape: data.sampleShape, classes: data.classes, maxBatch: maxBatch, seed: 0)
        try Weights.load(net, from: weights)
        return (net, spec)
    }
}

func makeCommunicator(stallTimeout: Double) throws -> Communicator {
    MPICommunicator.launchedByMPI ? try MPICommunicator(stallTimeout: stallTimeout) : LocalCommunicator()
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Train a model (the default command).")

    @OptionGroup var data: DataOptions

    @Option(help: "mlp:H1,H2,...[:relu|sigmoid|tanh][:dropout=P]")
    var model = "mlp:512,512"
    @Option(help: "cross-entropy (on logits), nll (adds LogSoftmax), or mse (against one-hot targets).")
    var loss = "cross-entropy"
    @Option(parsing: .unconditional, help: "Passes over the training set.")
    var epochs = 1
    @Option(parsing: .unconditional, help: "Stop after N optimizer steps.")
    var maxSteps: Int?
    @Option(parsing: .unconditional, help: "Samples per rank per step; the global batch is this times the number of ranks.")
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

    /// The run these flags describe.
    func makeConfig() throws -> TrainConfig {
        var c = TrainConfig()
        try data.apply(to: &c)
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
        let comm = try makeCommunicator(stallTimeout: c.stallTimeout)
        let blas = BLASEnvironment.configureThreads(override: parallel.blasThreads, localSize: comm.localSize)
        installStopSignalHandlers()
        // The checkpoint folder is locked (and checked writable) before anything else is done.
        let checkpointer = try c.checkpointDir.map { try Checkpointer(directory: $0, every: c.checkpointEvery, keep: c.keep, comm: comm) }
        let trainer = try Trainer(config: c, comm: comm)
        if let checkpointer { trainer.afterStep = { try checkpointer.afterStep($0, evaluated: $1) } }
        var resumed: String?
        if let choice = c.resume, let cp = checkpointer {
            resumed = try cp.resume(choice, into: trainer)
        }
        trainer.printHeader(extra: [blas])
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
    static let configuration = CommandConfiguration(abstract: "Print loss, accuracy and the confusion matrix of saved weights.")

    @OptionGroup var data: DataOptions
    @OptionGroup var saved: WeightsOptions
    @Option(help: "cross-entropy, nll or mse.")
    var loss = "cross-entropy"

    func run() throws {
        guard let lossKind = LossKind(name: loss) else { throw ValidationError("invalid --loss '\(loss)': expected cross-entropy, nll or mse") }
        let splits = try data.load()
        let comm = try makeCommunicator(stallTimeout: 300)
        _ = BLASEnvironment.configureThreads(override: nil, localSize: comm.localSize)
        let (net, spec) = try saved.load(for: splits.eval, maxBatch: 1000)
        let loss: Loss = lossKind == .nll ? CrossEntropyLoss() : lossKind.make()  // NLL on log_softmax(logits) is cross-entropy
        var indices = [Int32](repeating: 0, count: 1000), labels = [Int32](repeating: 0, count: 1000)
        let result = try Evaluator.evaluate(model: net, loss: loss, dataset: splits.eval, comm: comm, indices: &indices, labels: &labels)
        if comm.isRoot {
            print("Model \(spec) from \(saved.weights)")
            print(result.line(setName: splits.evalName))
            print(result.confusion.render(classNames: splits.eval.classNames))
        }
        comm.finalize()
    }
}

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Classify one test sample and print the class probabilities.")

    @OptionGroup var data: DataOptions
    @OptionGroup var saved: WeightsOptions
    @Option(help: "Index of the sample in the test (or --holdout validation) set.")
    var index: Int

    func run() throws {
        let splits = try data.load()
        guard index >= 0 && index < splits.eval.count else {
            throw ValidationError("invalid --index \(index): the \(splits.evalName) set has samples 0..<\(splits.eval.count)")
        }
        _ = BLASEnvironment.configureThreads(override: 1, localSize: 1)
        let (net, _) = try saved.load(for: splits.eval, maxBatch: 1)
        var idx = Int32(index)
        var label: Int32 = 0
        splits.eval.gather(&idx, count: 1, into: net.input, labels: &label)
        net.forward(batch: 1, context: .eval)
        var probs = [Float](repeating: 0, count: net.classes)
        probs.withUnsafeMutableBufferPointer { softmaxRow(net.output, $0.baseAddress!, net.classes) }
        let predicted = probs.indices.max { probs[$0] < probs[$1] }!
        let names = splits.eval.classNames
        print(asciiArt(splits.eval.image(index), side: splits.eval.sampleShape.dims.last ?? 28))
        print("Sample \(index) of the \(splits.evalName) set: true class \(names[Int(label)])")
        print(String(format: "Predicted: %@ (probability %.4f)%@", names[predicted], probs[predicted],
                     predicted == Int(label) ? "" : "  [wrong]"))
        print("Class probabilities:")
        for (i, p) in probs.enumerated() {
            let bar = String(repeating: "#", count: Int((p * 40).rounded()))
            print(String(format: "  %@ %.4f %@", names[i].padding(toLength: max(11, names.map(\.count).max()!), withPad: " ", startingAt: 0), p, bar))
        }
    }

    func asciiArt(_ pixels: ArraySlice<UInt8>, side: Int) -> String {
        let ramp = Array(" .:-=+*#%@")
        var rows: [String] = []
        let px = Array(pixels)
        for r in stride(from: 0, to: px.count / side, by: 2) {
            var line = ""
            for c in 0..<side { line.append(ramp[Int(px[r * side + c]) * (ramp.count - 1) / 255]) }
            rows.append(line)
        }
        return rows.joined(separator: "\n")
    }
}

struct Download: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fetch MNIST or Fashion-MNIST from the public mirrors and verify their checksums.")

    @Option(help: "mnist or fashion-mnist.")
    var dataset = "mnist"
    @Option(help: "Where to store the four files (default: $DDP_DATA_DIR, else ./data/mnist).")
    var dir: String?
    @Option(help: "Base URL to fetch from instead of the standard mirrors.")
    var mirror: String?
    @Option(help: "Seconds before a request gives up.")
    var timeout: Double = 30

    func run() throws {
        let kind = try DatasetKind(parsing: dataset)
        let target = dir ?? ProcessInfo.processInfo.environment["DDP_DATA_DIR"] ?? (kind == .fashionMNIST ? "./data/fashion-mnist" : "./data/mnist")
        try Downloader.download(kind: kind, into: target, mirror: mirror, timeout: timeout) { print($0) }
        print("\(kind) is in \(target)")
    }
}
