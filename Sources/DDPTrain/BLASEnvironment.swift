import Engine
import Foundation
import Glibc

/// Chooses OpenBLAS's core type and thread count for this process.
///
/// OpenBLAS 0.3.21 misdetects some AVX-512 CPUs as Haswell (about half the sgemm speed). The core
/// type is read once, when the library loads, so if the CPU has AVX-512, OpenBLAS chose a kernel
/// without it, and neither OPENBLAS_CORETYPE nor DDP_BLAS_CORETYPE says otherwise, the process sets
/// OPENBLAS_CORETYPE=SkylakeX and re-executes itself before doing anything else (before MPI_Init).
/// `DDP_BLAS_CORETYPE=NAME` forces a core type; `DDP_BLAS_CORETYPE=native` keeps OpenBLAS's own choice.
///
/// Threads: one per rank when several ranks share the node (Open MPI's OMPI_COMM_WORLD_LOCAL_SIZE),
/// all cores in local mode; `--blas-threads N` or DDP_BLAS_THREADS overrides.
enum BLASEnvironment {
    /// OpenBLAS kernels that use AVX-512.
    static let avx512Cores: Set<String> = ["skylakex", "cooperlake", "sapphirerapids"]

    static func prepareCoreType() {
        let env = ProcessInfo.processInfo.environment
        if env["DDP_BLAS_REEXEC"] != nil { return }
        var wanted: String?
        var reason = ""
        if let forced = env["DDP_BLAS_CORETYPE"], !forced.isEmpty {
            if forced.lowercased() != "native" && env["OPENBLAS_CORETYPE"] != forced {
                wanted = forced
                reason = "DDP_BLAS_CORETYPE"
            }
        } else if env["OPENBLAS_CORETYPE"] == nil && cpuHasAVX512() && !avx512Cores.contains(BLAS.coreName.lowercased()) {
            // The library is loaded by now: its own choice is known, and it missed AVX-512.
            wanted = "SkylakeX"
            reason = "auto: OpenBLAS chose \(BLAS.coreName) on an AVX-512 CPU"
        }
        // In local mode OpenBLAS's worker threads share the cores with the main thread; left to spin
        // (the default), they made one run in two about half as fast here. A short spin fixes that.
        let localSize = env["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init) ?? 1
        let shortSpin = localSize == 1 && env["OPENBLAS_THREAD_TIMEOUT"] == nil
        guard wanted != nil || shortSpin else { return }
        if let core = wanted { setenv("OPENBLAS_CORETYPE", core, 1) }
        if shortSpin { setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1) }
        setenv("DDP_BLAS_REEXEC", wanted != nil ? reason : "", 1)
        // One thread per rank from the start when ranks share a node, so no idle pools are created.
        if localSize > 1 && env["OPENBLAS_NUM_THREADS"] == nil { setenv("OPENBLAS_NUM_THREADS", "1", 1) }
        var argv = CommandLine.arguments.map { strdup($0) } + [nil]
        execv("/proc/self/exe", &argv)
        // exec failed: carry on with OpenBLAS's own choice.
        unsetenv("DDP_BLAS_REEXEC")
    }

    /// CPUs this process may run on: mpirun binds a rank to a core, so all of the machine's cores
    /// may not be ours. From /proc/self/status, e.g. "Cpus_allowed_list:\t0-3,8".
    static func allowedCPUs() -> Int {
        let online = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") }),
              let list = line.split(separator: ":").last?.trimmingCharacters(in: .whitespaces) else { return online }
        var n = 0
        for part in list.split(separator: ",") {
            let ends = part.split(separator: "-").compactMap { Int($0) }
            n += ends.count == 2 ? ends[1] - ends[0] + 1 : 1
        }
        return max(1, min(n, online))
    }

    static func cpuHasAVX512() -> Bool {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return false }
        return info.split(separator: "\n").first { $0.hasPrefix("flags") }?.split(separator: " ").contains("avx512f") ?? false
    }

    /// Sets the thread count and returns the header line describing both choices. `invariant`
    /// (`--invariant-shards`): one thread, as every rank of a larger world has; OpenBLAS's sums can
    /// differ in the last bit between thread counts.
    static func configureThreads(override: Int?, localSize: Int, invariant: Bool = false) -> String {
        let env = ProcessInfo.processInfo.environment
        let cores = allowedCPUs()
        var threads: Int
        var why: String
        if let n = override {
            threads = n; why = "--blas-threads"
        } else if let n = env["DDP_BLAS_THREADS"].flatMap(Int.init), n > 0 {
            threads = n; why = "DDP_BLAS_THREADS"
        } else if invariant {
            threads = 1; why = "--invariant-shards: the rounding of one thread, as every rank count has it"
        } else if localSize > 1 {
            threads = 1; why = "\(localSize) ranks share this machine"
        } else {
            threads = cores; why = "\(cores) core\(cores == 1 ? "" : "s") available to this process"
        }
        BLAS.setThreads(threads)
        var coreSource = env["OPENBLAS_CORETYPE"] != nil ? "OPENBLAS_CORETYPE" : "OpenBLAS's detection"
        if let r = env["DDP_BLAS_REEXEC"], !r.isEmpty { coreSource = r }
        return "OpenBLAS: core \(BLAS.coreName) (\(coreSource)), \(BLAS.threads) thread\(BLAS.threads == 1 ? "" : "s") per rank (\(why))"
    }
}
