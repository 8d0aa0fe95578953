import Comm
import Engine
import Foundation
import NN

/// `ddp-train bench`: steady-state training speed, the time per step split by phase, and the sgemm
/// bound: the samples/s the step would reach if each of its GEMMs ran at the rate measured, in this
/// run and with this run's BLAS threads, for that GEMM's shape. With the shared-memory reducer,
/// `ms_optimizer` is this rank's slice of the sum and of the update; the barriers are the wait.
/// Where a convolution runs as Winograd (fewer multiplications than its definition), the bound is
/// that of the GEMMs that run; `direct_sgemm_bound_samples_per_s` and `direct_efficiency` measure
/// against the GEMMs of the model's definition instead (convolutions as im2col, as PyTorch counts
/// a model's flops).
public enum Benchmark {
    public struct Report: Codable {
        public var model: String
        public var allreduce: String
        public var ranks: Int
        public var per_rank_batch: Int
        public var blas_threads: Int
        public var blas_core: String
        public var steps: Int
        public var samples_per_s: Double
        public var ms_per_step: Double
        public var ms_forward: Double
        public var ms_backward: Double
        public var ms_allreduce_wait: Double
        public var ms_optimizer: Double
        public var ms_data: Double
        public var gemm_ms_per_step: Double
        public var sgemm_gflops: Double
        public var sgemm_bound_samples_per_s: Double
        public var efficiency: Double
        public var direct_sgemm_bound_samples_per_s: Double
        public var direct_efficiency: Double
    }

    /// Milliseconds for one step's GEMMs, each shape timed in isolation at steady state.
    static func gemmTime(_ shapes: [GEMMShape]) -> (ms: Double, gflops: Double) {
        var total = 0.0, flops = 0.0
        for shape in shapes {
            let (m, n, k, ta, tb) = (shape.m, shape.n, shape.k, shape.transA, shape.transB)
            let a = FloatBuffer(count: m * k), b = FloatBuffer(count: k * n), c = FloatBuffer(count: m * n)
            for i in 0..<a.count { a[i] = Float(i % 7) * 0.01 }
            for i in 0..<b.count { b[i] = Float(i % 5) * 0.01 }
            func once() {
                Kernels.gemm(transA: ta, transB: tb, m: m, n: n, k: k, a: a.pointer, lda: ta ? m : k,
                             b: b.pointer, ldb: tb ? k : n, beta: 0, c: c.pointer, ldc: n)
            }
            for _ in 0..<10 { once() }
            var best = Double.infinity
            for _ in 0..<5 {
                let reps = 20
                let t0 = monotonicSeconds()
                for _ in 0..<reps { once() }
                best = min(best, (monotonicSeconds() - t0) / Double(reps))
            }
            total += best * Double(shape.repeats)
            flops += shape.flops
        }
        return (total * 1000, flops / total / 1e9)
    }

    public static func run(trainer: Trainer, steps: Int, warmup: Int) throws -> Report {
        let comm = trainer.comm
        // Epochs roll over without evaluation: only training steps are measured.
        func step() throws {
            if trainer.batchInEpoch == trainer.sampler.batchesPerEpoch {
                trainer.epoch += 1
                trainer.batchInEpoch = 0
            }
            trainer.sampler.startEpoch(trainer.epoch)  // no-op within an epoch
            try trainer.advance()
        }
        for _ in 0..<warmup { try step() }
        try comm.barrier(what: "barrier(bench start)")
        trainer.times.reset()
        let t0 = monotonicSeconds()
        for _ in 0..<steps { try step() }
        try comm.barrier(what: "barrier(bench end)")
        let seconds = monotonicSeconds() - t0
        let t = trainer.times

        // Every rank times its GEMMs at once, as they run in training: cores and memory are shared.
        let shapes = trainer.model.gemms(batch: trainer.config.batchSize)
        let directShapes = trainer.model.gemms(batch: trainer.config.batchSize, direct: true)
        let gemm = gemmTime(shapes)
        let direct = directShapes == shapes ? gemm : gemmTime(directShapes)
        var sums = [gemm.ms, gemm.gflops, direct.ms]
        try comm.allreduceSum(&sums, what: "allreduce(bench gemm)")
        let gemmMs = sums[0] / Double(comm.size), gflops = sums[1] / Double(comm.size), directMs = sums[2] / Double(comm.size)
        let global = Double(trainer.sampler.globalBatch)
        let samples = global * Double(steps) / seconds
        let bound = global / (gemmMs / 1000), directBound = global / (directMs / 1000)
        let n = Double(max(t.steps, 1))
        return Report(model: trainer.spec.description, allreduce: trainer.reducer.description, ranks: comm.size, per_rank_batch: trainer.config.batchSize,
                      blas_threads: BLAS.threads, blas_core: BLAS.coreName, steps: steps,
                      samples_per_s: samples.rounded(), ms_per_step: seconds * 1000 / Double(steps),
                      ms_forward: t.forward / n, ms_backward: t.backward / n, ms_allreduce_wait: t.allreduceWait / n,
                      ms_optimizer: t.optimizer / n, ms_data: t.data / n, gemm_ms_per_step: gemmMs,
                      sgemm_gflops: gflops, sgemm_bound_samples_per_s: bound.rounded(), efficiency: samples / bound,
                      direct_sgemm_bound_samples_per_s: directBound.rounded(), direct_efficiency: samples / directBound)
    }
}
