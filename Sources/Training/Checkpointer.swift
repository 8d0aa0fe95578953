import Comm
import Data
import Foundation
import Glibc

/// When and where checkpoints are written, which ones are pruned, and which one a resume reads.
///
/// - **A run owns its checkpoints.** Each run has an 8-hex-digit identity, made at a fresh start and
///   kept across resumes; its files are `DIR/ckpt-STEP-RUN.ckpt`. Pruning (`--keep K`) looks only at
///   this run's files, so another run's checkpoints in the same folder are never touched.
/// - **Writing.** Rank 0 alone writes, atomically (temporary file, fsync, rename, fsync of the
///   directory), every `--checkpoint-every` steps and at every epoch end, then reads the file back
///   and checks its CRC. Only a verified new checkpoint lets older ones go: the run's files are
///   ranked by when they were written and all but the newest K are removed. So the file a run resumed
///   from stays until a newer one is on disk, and the newest readable one is never removed; a
///   checkpoint "from the future" of an abandoned timeline (say a corrupt newest file a resume skipped)
///   ranks as old. A failed write (a full disk) is reported on stderr, training goes on, and nothing
///   is pruned.
/// - **A lock.** While a job runs, rank 0 holds `flock` on `DIR/.ddp-train.lock`, which names the
///   holder; a second job using the folder fails at start with one line naming it. The kernel drops
///   the lock when its process dies, so a dead job never blocks. Temporary files that dead writers
///   left (`.NAME.tmp.PID`) are removed once the lock is taken.
/// - `best.safetensors` holds the weights with the best evaluation of `--monitor` so far.
/// - **Resume.** Rank 0 reads and verifies the chosen checkpoint ("latest": the most recently written
///   readable one, falling back to older ones) and broadcasts its bytes, so the other ranks need no
///   shared filesystem.
/// - Nothing non-finite is written: before any write every rank checks the state, and a diverged run
///   stops with `DivergedError` at the same step on all ranks.
public final class Checkpointer {
    public let directory: String
    public let every: Int
    public let keep: Int
    let comm: Communicator
    /// The lock file's descriptor (rank 0), held open for the life of the process.
    private var lockDescriptor: Int32 = -1

    public static let lockName = ".ddp-train.lock"

    public init(directory: String, every: Int, keep: Int, comm: Communicator) throws {
        self.directory = directory
        self.every = every
        self.keep = keep
        self.comm = comm
        try rootDecides(comm, what: "checkpoint directory") {
            var isDir: ObjCBool = false
            if !FileManager.default.fileExists(atPath: directory, isDirectory: &isDir) {
                // Foundation creates missing parents but its message hides errno; when it fails, mkdir of
                // the last component either succeeds after all or names the reason.
                if (try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)) == nil,
                   mkdir(directory, 0o755) != 0 {
                    let parent = (directory as NSString).deletingLastPathComponent
                    throw UsageError("cannot create --checkpoint-dir \(directory)\(parent.isEmpty ? "" : " in \(parent)"): \(errnoString())")
                }
            } else if !isDir.boolValue {
                throw UsageError("--checkpoint-dir \(directory) is a file, not a folder")
            }
            try lock()
            removeStaleTemporaryFiles()
        }
    }

    deinit {
        if lockDescriptor >= 0 { close(lockDescriptor) }
    }

    /// Takes the folder's lock or fails naming its holder; the lock file doubles as the check that
    /// the folder is writable.
    private func lock() throws {
        let path = directory + "/" + Checkpointer.lockName
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw UsageError("cannot write to --checkpoint-dir \(directory): \(errnoString())") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let holder = (FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) } ?? "")
                .trimmingCharacters(in: .whitespacesAndNewlines)
            close(fd)
            throw TrainingError("--checkpoint-dir \(directory) is in use by another job (\(holder.isEmpty ? "holder unknown" : holder)); "
                                + "wait for it to end or choose another folder")
        }
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, host.count - 1)
        let since = ISO8601DateFormatter().string(from: Date())
        let text = "pid \(getpid()) on \(String(cString: host)) since \(since)\n"
        // The bytes stay valid for the whole write (a String passed as a pointer would not).
        let written = ftruncate(fd, 0) == 0 && (try? Array(text.utf8).withUnsafeBytes { try AtomicFile.writeAll(fd, $0, path: path) }) != nil
        guard written else {
            let reason = errnoString()
            close(fd)
            throw UsageError("cannot write to --checkpoint-dir \(directory): \(reason)")
        }
        lockDescriptor = fd
    }

    /// `.NAME.tmp.PID` files are what an interrupted atomic write leaves; with the lock held, no
    /// live writer owns one.
    private func removeStaleTemporaryFiles() {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where AtomicFile.isTemporaryName(name) {
            try? FileManager.default.removeItem(atPath: directory + "/" + name)
        }
    }

    /// Checkpoint files in the directory (any run), most recently written first.
    public func existing() -> [(path: String, step: Int, runID: String?)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        var found: [(path: String, step: Int, runID: String?, written: Double)] = []
        for name in names {
            guard let (step, run) = CheckpointFile.parseName(name) else { continue }
            let path = directory + "/" + name
            var st = stat()
            guard stat(path, &st) == 0 else { continue }
            found.append((path, step, run, Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) * 1e-9))
        }
        found.sort { ($0.written, $0.step, $0.path) > ($1.written, $1.step, $1.path) }
        return found.map { ($0.path, $0.step, $0.runID) }
    }

    /// The trainer's hook, on every rank: a checkpoint every `every` steps and at each epoch end.
    public func afterStep(_ trainer: Trainer, evaluated: Bool) throws {
        guard evaluated || (every > 0 && trainer.step % every == 0) else { return }
        try write(trainer, bestToo: evaluated && trainer.lastEvalImproved)
    }

    /// Writes a checkpoint now (and `best.safetensors` with `bestToo`). Every rank first checks that
    /// the state is finite (the ranks hold identical values, so they agree: a diverged run stops
    /// with `DivergedError` on all of them). Rank 0 then writes, verifies the file on disk and prunes
    /// this run's older checkpoints; a failed write is reported and nothing is pruned.
    public func write(_ trainer: Trainer, bestToo: Bool = false) throws {
        try trainer.requireFiniteState(for: "a checkpoint")
        guard comm.isRoot else { return }
        if bestToo {
            report { try Weights.save(trainer.model, description: trainer.savedDescription, to: self.directory + "/best.safetensors") }
        }
        let path = directory + "/" + CheckpointFile.fileName(step: trainer.step, runID: trainer.runID)
        let ok = report {
            try CheckpointFile.write(body: Checkpoint.encodeBody(trainer: trainer), to: path)
            _ = try CheckpointFile.read(path: path)
        }
        guard ok else { return }
        trainer.console.line("Checkpoint: \(path)")
        let older = existing().filter { $0.runID == trainer.runID && $0.path != path }
        for old in older.dropFirst(keep - 1) { try? FileManager.default.removeItem(atPath: old.path) }
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

    /// Restores `path`, or with "latest" the most recently written readable checkpoint. Returns a
    /// description of what was resumed, or nil when "latest" found no checkpoint at all (a fresh start).
    public func resume(_ choice: String, into trainer: Trainer) throws -> String? {
        var file: [UInt8] = []
        var chosen = ""
        var warnings: [String] = []
        try rootDecides(comm, what: "resume") {
            if choice != "latest" {
                file = try CheckpointFile.read(path: choice)
                chosen = choice
                return
            }
            let candidates = existing()
            for candidate in candidates {
                do {
                    file = try CheckpointFile.read(path: candidate.path)
                    chosen = candidate.path
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
        try comm.broadcast(bytes: &file, root: 0, what: "broadcast(checkpoint)")
        guard !file.isEmpty else { return nil }
        // Every rank has the same bytes, so every rank reaches the same verdict; only rank 0, which
        // knows the file's name, prints it.
        let name = comm.isRoot ? chosen : "checkpoint"
        try Checkpoint.restore(file, into: trainer, name: name)
        return name
    }
}
