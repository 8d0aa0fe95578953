import ArgumentParser
import Foundation
import Training

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure training speed: samples/s, time per phase, and efficiency against the sgemm bound.",
        discussion: "Prints one JSON object (rank 0). Example: mpirun -np 2 ddp-train bench --batch-size 64")

    @Option(help: "Model to train.")
    var model = "mlp:512,512"
    @Option(help: "Samples per rank per step (local mode: per step, split over the local ranks).")
    var batchSize = 64
    @Option(help: "Timed steps.")
    var steps = 1000
    @Option(help: "Untimed steps first.")
    var warmup = 100
    @Option(help: "sgd, adam, adamw, rmsprop, adagrad or adadelta.")
    var optimizer = "sgd"
    @OptionGroup var parallel: ParallelOptions

    func run() throws {
        var c = TrainConfig()
        c.data.dataset = "synthetic:\(max(20_000, batchSize * 64))"
        c.model = model
        c.batchSize = batchSize
        c.optimizer = optimizer
        c.momentum = optimizer == "sgd" ? 0.9 : 0
        c.lr = 0.01
        parallel.apply(to: &c)
        c.quiet = true
        c.evalBatch = 1
        try c.validate()
        try Ranks.run(parallel, config: c, stallTimeout: 300) { comm, c, _ in
            let trainer = try Trainer(config: c, comm: comm)
            let report = try Benchmark.run(trainer: trainer, steps: steps, warmup: warmup)
            if comm.isRoot {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                print(String(decoding: try encoder.encode(report), as: UTF8.self))
            }
            comm.finalize()
        }
    }
}
