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
        _exit(usage ? ExitStatus.usage : error.exitStatus)
    }
}
