import ArgumentParser
import Comm
import Foundation
import Glibc
import Training

/// An error ends the command with one line on stderr and the exit status of `ExitStatus`: 2 for
/// usage errors, 3 for a diverged run, 1 for anything else. Under mpirun, rank 0 prints; other ranks
/// print only communication errors, which are theirs alone.
enum ErrorReport {
    static var rank: Int { ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"].flatMap(Int.init) ?? 0 }

    static func fail(_ error: Error, usage: Bool) -> Never {
        var message = "\(error)"
        if usage {
            message = DDPTrainCommand.message(for: error)
        }
        let line = message.split(separator: "\n").first.map(String.init) ?? "unknown error"
        if rank == 0 || error is CommError {
            let prefix = rank == 0 ? "ddp-train: error: " : "ddp-train: rank \(rank): error: "
            fputs(prefix + line.replacingOccurrences(of: "Error: ", with: "") + "\n", stderr)
        }
        fflush(stdout)
        fflush(stderr)
        // An error every rank finds (a usage error after the ranks have met) is rank 0's to print: a
        // rank that exits first makes mpirun kill the others, sometimes before rank 0 has written its
        // line. The others give it a second; mpirun ends them when rank 0 exits.
        if rank != 0 && !(error is CommError) { usleep(1_000_000) }
        _exit(usage ? ExitStatus.usage : error.exitStatus)
    }
}
