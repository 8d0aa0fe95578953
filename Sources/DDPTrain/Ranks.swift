import ArgumentParser
import Comm
import Foundation
import Training

/// How this job's ranks come to be, and what each runs.
///
/// - Under a launcher (mpirun, `srun --mpi=pmix`), this process is one MPI rank.
/// - Alone (local mode), this process runs N ranks as threads (`InProcessRanks`), one per core by
///   default, each with 1/N of `--batch-size` and one BLAS thread: the same per-rank code and the
///   same shared-memory gradient sum as `mpirun -np N`, so results are bitwise those of
///   `mpirun -np N --batch-size B/N`. With one rank, one thread uses every core through BLAS.
///
/// `body` runs once per rank with its communicator, the configuration with that rank's batch, and
/// header lines that say what was chosen.
enum Ranks {
    static func run(_ parallel: ParallelOptions, config: TrainConfig, stallTimeout: Double,
                    _ body: @escaping (Communicator, TrainConfig, _ header: [String]) throws -> Void) throws {
        if MPICommunicator.launchedByMPI {
            if let n = parallel.localRanks, n != 1 {
                throw UsageError("--local-ranks \(n) is for local mode; under mpirun or srun every process is one rank")
            }
            let comm = try mpi(stallTimeout: stallTimeout)
            try body(comm, config, [BLASEnvironment.configureThreads(override: parallel.blasThreads, localSize: comm.localSize,
                                                                          invariant: config.invariantShards != nil)])
            return
        }
        try refusePlainSrun(mpiSize: 1)
        let cores = BLASEnvironment.allowedCPUs()
        let (count, why) = try localRanks(parallel, batchSize: config.batchSize, cores: cores, invariantShards: config.invariantShards)
        let blas = BLASEnvironment.configureThreads(override: parallel.blasThreads, localSize: count,
                                                     invariant: config.invariantShards != nil)
        if count == 1 {
            try body(LocalCommunicator(), config, [blas])
            return
        }
        var perRank = config
        perRank.batchSize = config.batchSize / count
        let header = ["Local mode: \(count) ranks as threads of this process (\(why)), --batch-size \(config.batchSize) split \(count) ways", blas]
        try InProcessRanks.run(count: count, stallTimeout: stallTimeout, cores: cores) { comm in
            try body(comm, perRank, header)
        }
    }

    /// `--local-ranks`, else one rank per core, the most that divide the batch (one with --blas-threads;
    /// with `--invariant-shards Q`, a power of 2 that divides Q too).
    static func localRanks(_ parallel: ParallelOptions, batchSize: Int, cores: Int, invariantShards: Int? = nil) throws -> (Int, String) {
        if let n = parallel.localRanks {
            guard batchSize % n == 0 else {
                throw UsageError("--local-ranks \(n) must divide --batch-size \(batchSize): each rank takes an equal part of the batch")
            }
            return (n, "--local-ranks")
        }
        if parallel.blasThreads != nil { return (1, "--blas-threads") }
        if let q = invariantShards {
            let fits: (Int) -> Bool = { n in batchSize % n == 0 && q % n == 0 && n & (n - 1) == 0 }
            let n = (1...max(1, cores)).reversed().first(where: fits) ?? 1
            return (n, n == cores ? "one per core" : "the most of \(cores) cores that divide --batch-size \(batchSize) and --invariant-shards \(q)")
        }
        let n = (1...max(1, cores)).reversed().first { batchSize % $0 == 0 } ?? 1
        return (n, n == cores ? "one per core" : "the most of \(cores) cores that divide --batch-size \(batchSize)")
    }

    /// One MPI rank.
    static func mpi(stallTimeout: Double) throws -> Communicator {
        let comm = try MPICommunicator(stallTimeout: stallTimeout)
        try refusePlainSrun(mpiSize: comm.size)
        return comm
    }

    /// Plain `srun -n N` without PMI starts N processes that each see one rank (SLURM_STEP_NUM_TASKS
    /// > 1 while MPI sees one, or no MPI at all): they would train N separate runs into the same
    /// files, so that is refused.
    static func refusePlainSrun(mpiSize: Int) throws {
        if let tasks = ProcessInfo.processInfo.environment["SLURM_STEP_NUM_TASKS"].flatMap({ Int($0) }), tasks > 1, mpiSize == 1 {
            throw UsageError("srun started \(tasks) tasks, but MPI sees 1 rank in each: they would train \(tasks) separate runs into the same files; "
                             + "launch with 'srun --mpi=pmix' (Open MPI with PMIx) or with mpirun inside the allocation")
        }
    }
}

/// One process's communicator for the commands that are not data-parallel training (evaluate):
/// MPI's under a launcher, else a world of one.
func makeCommunicator(stallTimeout: Double) throws -> Communicator {
    if MPICommunicator.launchedByMPI { return try Ranks.mpi(stallTimeout: stallTimeout) }
    try Ranks.refusePlainSrun(mpiSize: 1)
    return LocalCommunicator()
}
