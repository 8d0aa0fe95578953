import ArgumentParser
import Comm
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
    @Option(parsing: .unconditional, help: "Time training with --invariant-shards Q (see train --help).")
    var invariantShards: Int?
    @OptionGroup var parallel: ParallelOptions
    @Option(parsing: .unconditional, help: "Instead of training, time an all-reduce of each size (MiB, comma-separated) over all ranks: one JSON object per size (for the scaling model).")
    var commSizes: String?

    func run() throws {
        if let commSizes {
            let sizes = commSizes.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard !sizes.isEmpty, sizes.allSatisfy({ $0 != nil && $0! > 0 }) else {
                throw ValidationError("invalid --comm-sizes '\(commSizes)': expected sizes in MiB, such as 0.5,1,4")
            }
            try timeAllreduce(sizes.map { $0! })
            return
        }
        var c = TrainConfig()
        c.data.dataset = "synthetic:\(max(20_000, batchSize * 64))"
        c.model = model
        c.batchSize = batchSize
        c.optimizer = optimizer
        c.momentum = optimizer == "sgd" ? 0.9 : 0
        c.lr = 0.01
        c.invariantShards = invariantShards
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

extension Bench {
    /// `--comm-sizes`: the median and best time of `--steps` in-place float all-reduces of each
    /// size over every rank (the MPI path the gradients take between machines), after `--warmup`.
    func timeAllreduce(_ sizes: [Double]) throws {
        let comm = try makeCommunicator(stallTimeout: 300)
        let machines = try comm.machines()
        for mib in sizes {
            let count = max(1, Int(mib * 1024 * 1024 / 4))
            let buffer = UnsafeMutablePointer<Float>.allocate(capacity: count)
            defer { buffer.deallocate() }
            buffer.initialize(repeating: 1e-3, count: count)
            for _ in 0..<min(warmup, 10) { try comm.allreduceSum(buffer, count: count, what: "allreduce(bench)") }
            var times: [Double] = []
            for _ in 0..<max(1, min(steps, 200)) {
                try comm.barrier(what: "barrier(bench)")
                let t0 = monotonicSeconds()
                try comm.allreduceSum(buffer, count: count, what: "allreduce(bench)")
                times.append(monotonicSeconds() - t0)
            }
            times.sort()
            let median = times[times.count / 2], best = times[0]
            // The ranks' mean median and best.
            var both = [median, best]
            try comm.allreduceSum(&both, what: "allreduce(bench times)")
            if comm.isRoot {
                let n = Double(comm.size)
                let bytes = Double(count * 4)
                let line = String(format: "{\"bytes\":%.0f,\"machines\":%d,\"mib\":%g,\"ms_best\":%.4f,\"ms_median\":%.4f,\"ranks\":%d,\"ring_gbit_per_s\":%.3f}",
                                  bytes, machines?.count ?? 0, mib, 1000 * both[1] / n, 1000 * both[0] / n, comm.size,
                                  2 * (n - 1) / n * bytes * 8 / (both[0] / n) / 1e9)
                print(line)
            }
        }
        comm.finalize()
    }
}
