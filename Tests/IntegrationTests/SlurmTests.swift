import Foundation
import XCTest

/// cluster/slurm.sbatch on a real one-node Slurm cluster (cluster/slurm-local up): a job told to
/// stop checkpoints, requeues itself and resumes to the same weights as an uninterrupted run; plain
/// srun without PMI is refused. Needs root and Debian's slurm-wlm (`cluster/slurm-local install`);
/// skipped without them, or where the machine has a slurm.conf of its own, unless DDP_REQUIRE_SLURM=1.
/// The cluster is taken down after the tests.
final class SlurmTests: XCTestCase {
    static let slurmLocal = Harness.packageRoot + "/cluster/slurm-local"
    static let sbatchScript = Harness.packageRoot + "/cluster/slurm.sbatch"
    /// The result of `slurm-local up`, once for the class: nil when the cluster is up.
    static var upFailure: String??
    /// Upper bound on every wait for Slurm, so that a broken cluster fails the test instead of hanging it.
    let jobTimeout: Double = 300

    override func setUpWithError() throws {
        let required = ProcessInfo.processInfo.environment["DDP_REQUIRE_SLURM"] == "1"
        var missing: String?
        if geteuid() != 0 {
            missing = "needs root (cluster/slurm-local starts munged, slurmctld and slurmd)"
        } else if let tool = ["/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/bin/sbatch", "/usr/sbin/munged"]
                    .first(where: { !FileManager.default.isExecutableFile(atPath: $0) }) {
            missing = "slurm-wlm or munge is not installed (\(tool) missing): run cluster/slurm-local install"
        } else if let conf = try? String(contentsOfFile: "/etc/slurm/slurm.conf", encoding: .utf8),
                  !conf.hasPrefix("# Written by cluster/slurm-local up") {
            missing = "this machine has a Slurm configuration of its own (/etc/slurm/slurm.conf), which cluster/slurm-local leaves alone"
        }
        if let missing {
            if required { throw SlurmError("DDP_REQUIRE_SLURM=1, but: \(missing)") }
            throw XCTSkip(missing)
        }
        if Self.upFailure == nil {
            let r = Harness.runCommand([Self.slurmLocal, "up"], env: ["SLURM_LOCAL_TIMEOUT": "60"], timeout: 180)
            Self.upFailure = .some(r.status == 0 ? nil : "cluster/slurm-local up: status \(r.status)\n\(r.stdout)\(r.stderr)")
        }
        if let failure = Self.upFailure! { throw SlurmError(failure) }
    }

    override class func tearDown() {
        if upFailure != nil { _ = Harness.runCommand([slurmLocal, "down"], timeout: 120) }
        super.tearDown()
    }

    /// The job is told to stop (as `--signal=B:TERM` does before the time limit): the ranks write a
    /// checkpoint and exit 75, the script requeues the job, and its second run resumes from that
    /// checkpoint and finishes with the weights of an uninterrupted run, bit for bit.
    func testStoppedJobCheckpointsRequeuesAndResumesBitwise() throws {
        let dir = temporaryDirectory()
        let ck = dir + "/ck"
        // 125 steps per epoch at global batch 64 (8,000 MNIST training images): 1,250 steps, 2 s on an
        // idle machine, 30 s on a busy one.
        let train = ["--epochs", "10", "--batch-size", "32", "--log-every", "0"]
        let reference = Harness.run(["--data-dir", Harness.mnist] + train + ["--save", dir + "/reference.safetensors"], np: 2)
        XCTAssertEqual(reference.status, 0, reference.stderr)

        let job = try submit(dir: dir, env: [
            "DDP_TRAIN_BIN": Harness.binary, "DDP_DATA_DIR": Harness.mnist, "DDP_CHECKPOINT_DIR": ck,
            "DDP_RUN_NAME": dir + "/slurm", "DDP_TRAIN_ARGS": (train + ["--checkpoint-every", "20"]).joined(separator: " "),
        ])
        defer { _ = Harness.runCommand(["scancel", job], timeout: 30) }
        let output = dir + "/job-\(job).out"

        // Stop it as soon as it has written its first checkpoint (step 20): the stop reaches the ranks
        // some hundred steps later at most, well before step 1,250.
        // (A job that ends first, say because its job step failed to launch, ends the wait.)
        var polls = 0
        let started = waitFor(jobTimeout, every: 0.05) {
            polls += 1
            if polls % 20 == 0, state(job).finished { return true }
            return FileManager.default.fileExists(atPath: Harness.checkpoint(ck, step: 20))
        }
        guard started, FileManager.default.fileExists(atPath: Harness.checkpoint(ck, step: 20)) else {
            return XCTFail("no checkpoint at step 20 (within \(jobTimeout) s): \(state(job))\n\(read(output))\(slurmdErrors())")
        }
        XCTAssertEqual(state(job).state, "RUNNING", "still running when stopped: \(read(output))\(slurmdErrors())")
        let signal = Harness.runCommand(["scancel", "--signal=TERM", "--batch", job], timeout: 30)
        XCTAssertEqual(signal.status, 0, signal.stderr)

        let finished = waitFor(jobTimeout, every: 0.5) { self.state(job).finished }
        let final = state(job)
        let out = read(output)
        XCTAssertTrue(finished, "job \(job) not finished within \(jobTimeout) s: \(final)\n\(out)")
        XCTAssertEqual(final.state, "COMPLETED", out + slurmdErrors())
        XCTAssertEqual(final.exitCode, "0:0", out)
        XCTAssertEqual(final.restarts, 1, "requeued once: \(final)")

        // The first run: the script got SIGTERM, the ranks stopped with a checkpoint, the job was requeued.
        XCTAssertTrue(out.contains("slurm.sbatch: job \(job), run 1, 2 tasks"), out)
        XCTAssertTrue(out.contains("slurm.sbatch: SIGTERM: the ranks checkpoint and stop"), out)
        let stopLine = try XCTUnwrap(out.split(separator: "\n").first { $0.hasPrefix("Stopped by signal at step ") }, out)
        let step = try XCTUnwrap(Int(stopLine.split(separator: " ")[5].dropLast()), String(stopLine))
        XCTAssertTrue(step >= 20 && step < 1250, "stopped mid-run: \(stopLine)")
        XCTAssertTrue(stopLine.hasSuffix("exit status 75. Resume with --resume."), String(stopLine))
        XCTAssertTrue(out.contains("slurm.sbatch: stopped with a checkpoint (exit 75); requeueing job \(job)"), out)
        // The second run resumed from the stop checkpoint and finished.
        XCTAssertTrue(out.contains("slurm.sbatch: job \(job), run 2, 2 tasks"), out)
        // (The stop checkpoint itself is gone by now: --keep 3 keeps the newest three.)
        let stopCheckpoint = ck + "/" + String(format: "ckpt-%08d-", step)
        let resumeLine = out.split(separator: "\n").first { $0.hasPrefix("Resumed from ") } ?? "no 'Resumed from' line"
        XCTAssertTrue(resumeLine.hasPrefix("Resumed from \(stopCheckpoint)") && resumeLine.contains(".ckpt at step \(step) "),
                      "resumed at step \(step) from \(stopCheckpoint)*.ckpt: \(resumeLine)")
        XCTAssertTrue(out.contains("Saved weights to \(dir)/slurm.safetensors"), out)
        XCTAssertEqual(out.components(separatedBy: "Saved weights to").count - 1, 1, "only the second run finishes")

        let resumed = try XCTUnwrap(FileManager.default.contents(atPath: dir + "/slurm.safetensors"), out)
        XCTAssertEqual(resumed, FileManager.default.contents(atPath: dir + "/reference.safetensors"),
                       "bitwise identical to the uninterrupted mpirun run (max |diff| "
                       + "\((try? Harness.maxAbsDifference(Harness.weights(dir + "/slurm.safetensors"), Harness.weights(dir + "/reference.safetensors"))) ?? .nan))")
    }

    /// `srun -n 2` without PMI starts two processes that each see one rank: each refuses with one
    /// line that names `srun --mpi=pmix`, and exits 2.
    func testSrunWithoutPMIIsRefused() throws {
        let dir = temporaryDirectory()
        let args = ["--data-dir", Harness.mnist, "--epochs", "1", "--save", dir + "/w.safetensors"]
        let r = Harness.runCommand(["srun", "--mpi=none", "--nodes=1", "--ntasks=2", "--time=2", "--chdir=" + dir,
                                    "--output=" + dir + "/task-%t.out", "--error=" + dir + "/task-%t.err", Harness.binary] + args,
                                   timeout: Int(jobTimeout))
        XCTAssertEqual(r.status, 2, "srun passes the tasks' status on: \(r.stderr)\(slurmdErrors())")
        for task in 0..<2 {
            let taskResult = Harness.Result(status: r.status, stdout: read(dir + "/task-\(task).out"), stderr: read(dir + "/task-\(task).err"), seconds: r.seconds)
            assertCleanFailure(taskResult, args: ["srun -n 2 task \(task)"] + args, mentions: "launch with 'srun --mpi=pmix'", status: 2)
            XCTAssertTrue(taskResult.stderr.contains("srun started 2 tasks, but MPI sees 1 rank in each"), taskResult.stderr)
            XCTAssertEqual(taskResult.stdout, "", "no training output")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/w.safetensors"), "nothing trained")
    }

    // MARK: - Slurm helpers

    struct SlurmError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// Submits cluster/slurm.sbatch for 2 tasks on the one node, output in `dir`; returns the job id.
    /// sbatch passes its environment (`env` included) on to the job.
    func submit(dir: String, env: [String: String]) throws -> String {
        let r = Harness.runCommand(["sbatch", "--parsable", "--nodes=1", "--ntasks-per-node=2", "--time=10", "--chdir=" + dir,
                                    "--output=" + dir + "/job-%j.out", Self.sbatchScript], env: env, timeout: 60)
        XCTAssertEqual(r.status, 0, r.stderr)
        let id = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ";").first.map(String.init) ?? ""
        guard !id.isEmpty, id.allSatisfy(\.isNumber) else {
            throw SlurmError("sbatch gave no job id: \(r.stdout) \(r.stderr)")
        }
        return id
    }

    struct JobState: CustomStringConvertible {
        var state = "UNKNOWN", restarts = -1, exitCode = "", reason = ""
        /// Done for good: neither pending (a requeued job is PENDING), running nor on its way.
        var finished: Bool { !["PENDING", "RUNNING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "CONFIGURING", "COMPLETING",
                               "RESIZING", "SUSPENDED", "STOPPED", "SIGNALING", "UNKNOWN"].contains(state) }
        var description: String { "JobState=\(state) Reason=\(reason) Restarts=\(restarts) ExitCode=\(exitCode)" }
    }

    /// The job as `scontrol show job -o` describes it.
    func state(_ job: String) -> JobState {
        let r = Harness.runCommand(["scontrol", "show", "job", "-o", job], timeout: 30)
        var s = JobState()
        for field in r.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            let kv = field.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { continue }
            switch kv[0] {
            case "JobState": s.state = kv[1]
            case "Restarts": s.restarts = Int(kv[1]) ?? -1
            case "ExitCode": s.exitCode = kv[1]
            case "Reason": s.reason = kv[1]
            default: break
            }
        }
        return s
    }

    /// Polls `condition` every `interval` seconds for at most `seconds`; whether it became true.
    func waitFor(_ seconds: Double, every interval: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            Thread.sleep(forTimeInterval: interval)
        }
        return condition()
    }

    func read(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    /// The error lines of slurmd's log (cluster/slurm-local keeps it in its state folder), which say
    /// why a job step failed to launch; srun itself only reports "Unspecified error".
    func slurmdErrors() -> String {
        let errors = read("/var/spool/slurm-local/slurmd.log").split(separator: "\n").filter { $0.contains("error") }.suffix(20)
        return errors.isEmpty ? "" : "\nslurmd.log:\n" + errors.joined(separator: "\n")
    }
}
