import Data
import NN
import Optim

/// Everything that defines a training run, resolved from the command line. It is Codable so a
/// checkpoint can record the exact configuration it was made with.
public struct TrainConfig: Codable, Equatable, Sendable {
    public var dataset = "mnist"
    public var dataDir = "./data/mnist"
    public var model = "mlp:512,512"
    public var loss = "cross-entropy"
    public var epochs = 1
    public var maxSteps: Int?
    public var batchSize = 64
    public var optimizer = "sgd"
    public var lr: Float?
    public var momentum: Float = 0
    public var nesterov = false
    public var weightDecay: Float?
    public var seed: UInt64 = 1
    public var shuffle = true
    public var dropLast = false
    public var holdout = 0
    public var normalize: [Float]?
    public var savePath: String?
    public var initWeights: String?
    public var metricsPath: String?
    public var logEvery = 10
    public var bucketMB: Double = 25
    /// auto: shared memory when every rank is on one machine, else MPI; or force "mpi" / "shared".
    public var allreduce = "auto"
    public var checkSync = 0
    public var shardData = false
    public var stallTimeout: Double = 300
    public var checkpointDir: String?
    public var checkpointEvery = 0
    public var keep = 3
    public var resume: String?
    public var evalBatch = 1000
    public var quiet = false

    public init() {}

    public var datasetKind: DatasetKind { get throws { try DatasetKind(parsing: dataset) } }
    public var modelSpec: ModelSpec { get throws { try ModelSpec(parsing: model) } }
    public var lossKind: LossKind { get throws {
        guard let k = LossKind(name: loss) else { throw TrainingError("invalid --loss '\(loss)': expected cross-entropy, nll or mse") }
        return k
    } }

    public var optimizerConfig: OptimizerConfig { get throws {
        guard let kind = OptimizerConfig.Kind(rawValue: optimizer.lowercased()) else {
            throw TrainingError("invalid --optimizer '\(optimizer)': expected sgd, adam, adamw or rmsprop")
        }
        var c = OptimizerConfig(kind: kind, learningRate: lr)
        c.momentum = momentum
        c.nesterov = nesterov
        c.weightDecay = weightDecay
        return c
    } }

    /// Checks everything that can be checked before touching data, with one clear message.
    public func validate() throws {
        _ = try datasetKind
        _ = try modelSpec
        _ = try lossKind
        try optimizerConfig.validate()
        guard batchSize > 0 else { throw TrainingError("invalid --batch-size \(batchSize): must be at least 1") }
        guard epochs > 0 else { throw TrainingError("invalid --epochs \(epochs): must be at least 1") }
        if let m = maxSteps, m <= 0 { throw TrainingError("invalid --max-steps \(m): must be at least 1") }
        guard holdout >= 0 else { throw TrainingError("invalid --holdout \(holdout): must be >= 0") }
        guard logEvery >= 0 else { throw TrainingError("invalid --log-every \(logEvery): must be >= 0") }
        guard ["auto", "mpi", "shared"].contains(allreduce) else {
            throw TrainingError("invalid --allreduce '\(allreduce)': expected auto, mpi or shared")
        }
        guard bucketMB > 0 else { throw TrainingError("invalid --bucket-mb \(bucketMB): must be > 0") }
        guard stallTimeout > 0 else { throw TrainingError("invalid --stall-timeout \(stallTimeout): must be > 0") }
        guard checkSync >= 0 else { throw TrainingError("invalid --check-sync \(checkSync): must be >= 0") }
        guard checkpointEvery >= 0 else { throw TrainingError("invalid --checkpoint-every \(checkpointEvery): must be >= 0") }
        guard keep >= 1 else { throw TrainingError("invalid --keep \(keep): must be at least 1") }
        if let n = normalize {
            guard n.count == 2, n[1] > 0 else { throw TrainingError("invalid --normalize: expected MEAN,STD with STD > 0") }
        }
        if (checkpointEvery > 0 || resume != nil) && checkpointDir == nil {
            throw TrainingError("--checkpoint-every and --resume need --checkpoint-dir")
        }
    }
}
