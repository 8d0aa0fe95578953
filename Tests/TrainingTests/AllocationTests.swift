import Comm
import Engine
import MallocCounter
import Training
import XCTest

/// A training step allocates nothing: every buffer is made once, for the largest batch, up front.
///
/// OpenBLAS runs with one thread here, as it does on every rank under mpirun. With more threads
/// (local mode), OpenBLAS's threaded GEMM driver (`sgemm_thread_*`) mallocs a job table per call:
/// that is the library's, not ours. Set MALLOC_COUNTER_TRACE=N to print where allocations come from.
final class AllocationTests: XCTestCase {
    func testTrainingStepAllocatesNothing() throws {
        let threads = BLAS.threads
        BLAS.setThreads(1)
        defer { BLAS.setThreads(threads) }
        for optimizer in ["sgd", "adam", "rmsprop", "adagrad", "adadelta", "adam+accumulate+clip"] {
            var c = TrainConfig()
            c.data.dataset = "synthetic:2000"
            c.model = "mlp:512,512:dropout=0.1"
            c.batchSize = 64
            c.optimizer = String(optimizer.prefix { $0 != "+" })
            c.momentum = ["sgd", "rmsprop"].contains(c.optimizer) ? 0.9 : 0
            if optimizer.contains("+") {
                c.batchSize = 16
                c.accumulate = 4
                c.clipGradNorm = 0.5
                c.lrSchedule = "cosine"
                c.warmupSteps = 5
            }
            c.quiet = true
            let trainer = try Trainer(config: c, comm: LocalCommunicator())
            trainer.sampler.startEpoch(0)
            for b in 0..<3 { try trainer.trainStep(batch: b) }  // warm-up: lazy runtime metadata
            malloc_counter_start()
            for b in 3..<13 { try trainer.trainStep(batch: b) }
            let allocations = malloc_counter_stop()
            XCTAssertEqual(allocations, 0, "\(optimizer): heap allocations in 10 training steps")

            // The counter does see allocations, so the zero above means something.
            malloc_counter_start()
            let array = [Int](repeating: 1, count: 1000 + Int(allocations))
            XCTAssertGreaterThan(malloc_counter_stop(), 0, "counter sees an Array of \(array.count)")
        }
    }
}
