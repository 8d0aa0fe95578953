import Comm
import Data
import Foundation

/// How every ddp-train command ends (README, "Exit status"):
///
///     0   done
///     1   a runtime failure: a bad or unreadable file, an I/O error, a lost rank, not enough memory
///     2   a usage error: a bad flag value, a bad combination, an output path that cannot be written,
///         a command line that contradicts the checkpoint it resumes
///     3   the run diverged: a non-finite loss or parameter; nothing non-finite was written
///     75  stopped cleanly on SIGTERM or SIGINT after writing a checkpoint (EX_TEMPFAIL)
///
/// `Scripts/ddp-run` restarts only after 1 (what a retry can fix).
public enum ExitStatus {
    public static let runtime: Int32 = 1
    public static let usage: Int32 = 2
    public static let diverged: Int32 = 3
    public static let stopped: Int32 = 75
}

/// A runtime failure of training (exit status 1).
public struct TrainingError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A flag value or combination that cannot work, found after parsing (exit status 2).
public struct UsageError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A non-finite loss or parameter (exit status 3).
public struct DivergedError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension Error {
    /// The exit status this error ends the process with.
    public var exitStatus: Int32 {
        switch self {
        case is UsageError: return ExitStatus.usage
        case is DivergedError: return ExitStatus.diverged
        default: return ExitStatus.runtime
        }
    }
}

/// Runs `body` on rank 0 only and tells every rank whether it failed, and how, so that an error only
/// rank 0 can see (a bad file it alone reads) stops every rank with the same message and exit
/// status instead of a hang.
public func rootDecides(_ comm: Communicator, what: String, _ body: () throws -> Void) throws {
    var message: [UInt8] = []
    if comm.isRoot {
        do { try body() } catch { message = [UInt8(error.exitStatus)] + Array("\(error)".utf8) }
    }
    if comm.size > 1 { try comm.broadcast(bytes: &message, root: 0, what: "broadcast(\(what) status)") }
    guard let status = message.first else { return }
    let text = String(decoding: message.dropFirst(), as: UTF8.self)
    switch Int32(status) {
    case ExitStatus.usage: throw UsageError(text)
    case ExitStatus.diverged: throw DivergedError(text)
    default: throw TrainingError(text)
    }
}
