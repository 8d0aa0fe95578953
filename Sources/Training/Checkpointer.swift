import Comm
import Data
import Foundation

/// When and where checkpoints are written, and which one a resume reads.
///
/// - Rank 0 alone writes `DIR/ckpt-STEP.ckpt` every `--checkpoint-every` steps and at every epoch
///   end, atomically (temporary file, fsync, rename, fsync of the directory). Only then are
///   checkpoints beyond the newest `--keep` removed, so a good one always exists on disk.
/// - `best.safetensors` holds the weights with the best evaluation accuracy so far.
/// - A failed write (a full disk) is reported on stderr and training goes on; the previous
///   checkpoints are untouched.
/// - Resume: rank 0 reads and verifies the chosen checkpoint (the newest, falling back to older ones
///   if it is unreadable) and broadcasts its bytes, so the other ranks need no shared filesystem.
public final class Checkpointer {
    public let directory: String
    public let every: Int
    public let keep: Int
    let comm: Communicator

    public init(directory: String, every: Int, keep: Int, comm: Communicator) throws {
        self.directory = directory
        self.every = every
        self.keep = keep
        self.comm = comm
        try rootDecides(comm, what: "checkpoint directory") {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            } catch {
                throw DataError("cannot create checkpoint directory \(directory): \(error.localizedDescription)")
            }
        }
    }

    public static func fileName(step: Int) -> String { String(format: "ckpt-%08d.ckpt", step) }

    /// Checkpoints in the directory, newest first.
    public func existing() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasPrefix("ckpt-") && $0.hasSuffix(".ckpt") }.sorted(by: >).map { directory + "/" + $0 }
    }

    /// The trainer's hook: a checkpoint every `every` steps and at each epoch end.
    public func afterStep(_ trainer: Trainer, evaluated: Bool) throws {
        if evaluated && trainer.lastEvalImproved && comm.isRoot {
            report { try Weights.save(trainer.model, spec: trainer.spec.description, to: self.directory + "/best.safetensors") }
        }
        if evaluated || (every > 0 && trainer.step % every == 0) { write(trainer) }
    }

    /// Writes a checkpoint now (rank 0; the others return at once). Never throws: a failure is reported.
    public func write(_ trainer: Trainer) {
        guard comm.isRoot else { return }
        let path = directory + "/" + Checkpointer.fileName(step: trainer.step)
        let ok = report {
            try AtomicFile.write(Checkpoint.encode(trainer: trainer), to: path)
        }
        guard ok else { return }
        trainer.console.line("Checkpoint: \(path)")
        for old in existing().dropFirst(keep) { try? FileManager.default.removeItem(atPath: old) }
    }

    @discardableResult
    private func report(_ body: () throws -> Void) -> Bool {
        do {
            try body()
            return true
        } catch {
            warn("warning: checkpoint write failed, previous checkpoints kept: \(error)")
            return false
        }
    }

    /// Restores `path`, or with "latest" the newest readable checkpoint. Returns a description of what
    /// was resumed, or nil when "latest" found no checkpoint at all (a fresh start).
    public func resume(_ choice: String, into trainer: Trainer) throws -> String? {
        var body: [UInt8] = []
        var chosen = ""
        var warnings: [String] = []
        try rootDecides(comm, what: "resume") {
            if choice != "latest" {
                body = try Checkpoint.read(path: choice)
                chosen = choice
                return
            }
            let candidates = existing()
            for path in candidates {
                do {
                    body = try Checkpoint.read(path: path)
                    chosen = path
                    return
                } catch {
                    warnings.append("\(error); falling back to the previous checkpoint")
                }
            }
            if !candidates.isEmpty {
                throw DataError("no readable checkpoint in \(directory): \(warnings.joined(separator: "; "))")
            }
        }
        for w in warnings { warn("warning: \(w)") }
        try comm.broadcast(bytes: &body, root: 0, what: "broadcast(checkpoint)")
        guard !body.isEmpty else { return nil }
        // Every rank has the same bytes, so every rank reaches the same verdict; only rank 0, which
        // knows the file's name, prints it.
        let name = comm.isRoot ? chosen : "checkpoint"
        try Checkpoint.restore(body, into: trainer, name: name)
        return name
    }
}
