import Foundation
import XCTest

/// ddp-train across emulated hosts (cluster/emulate): each host is a network namespace with its own
/// hostname and /dev/shm behind a bridge, so Open MPI starts one orted per host through the launch
/// agent and carries the all-reduce between hosts over TCP, as between real machines.
/// Needs root and `ip netns`; skipped otherwise (CI runs as root, so there it runs).
final class ClusterTests: XCTestCase {
    static let emulate = Harness.packageRoot + "/cluster/emulate"
    /// 784-512-512-10, the default model.
    static let parameters = 669_706
    static var isUp = false

    /// Brought up once for the class (2 hosts, 2 slots each), taken down after the last test.
    override func setUpWithError() throws {
        try super.setUpWithError()
        guard getuid() == 0 else { throw XCTSkip("emulated cluster needs root (network namespaces); running as uid \(getuid())") }
        let probe = Harness.runCommand(["/bin/sh", "-c", "command -v ip >/dev/null && command -v unshare >/dev/null && ip netns list"], timeout: 30)
        guard probe.status == 0 else {
            throw XCTSkip("`ip netns` or unshare unavailable (install iproute2 and util-linux): \(probe.stderr)")
        }
        if !Self.isUp {
            let up = Harness.runCommand([Self.emulate, "up", "2", "--slots", "2"], timeout: 60)
            XCTAssertEqual(up.status, 0, "cluster/emulate up: \(up.stderr)")
            guard up.status == 0 else { throw XCTSkip("cluster/emulate up failed: \(up.stderr)") }
            Self.isUp = true
        }
    }

    override class func tearDown() {
        if isUp {
            _ = Harness.runCommand([emulate, "down"], timeout: 60)
            isUp = false
        }
        super.tearDown()
    }

    /// The mpirun options from `cluster/emulate mpirun-args` (hostfile, agent, --bind-to none, TCP
    /// between hosts), with `-x` for the variables the rsh launcher would not pass on, and
    /// optionally another hostfile.
    func clusterArgs(forward: [String] = [], hostfile: String? = nil, file: StaticString = #filePath, line: UInt = #line) -> [String] {
        let r = Harness.runCommand([Self.emulate, "mpirun-args", "--lines"], timeout: 30)
        XCTAssertEqual(r.status, 0, r.stderr, file: file, line: line)
        var args = r.stdout.split(separator: "\n").map(String.init)
        if let hostfile, let i = args.firstIndex(of: "--hostfile") { args[i + 1] = hostfile }
        for name in ["DDP_DATA_DIR", "OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] + forward where !args.contains(name) {
            args += ["-x", name]
        }
        return args
    }

    /// ddp-train under mpirun on the emulated hosts (no --oversubscribe: slots are the hostfile's).
    func runCluster(np: Int, _ args: [String], mpiArgs: [String] = [], env: [String: String] = [:], forward: [String] = [],
                    hostfile: String? = nil, timeout: Int = 120, file: StaticString = #filePath, line: UInt = #line) -> Harness.Result {
        let argv = ["mpirun"] + clusterArgs(forward: forward, hostfile: hostfile, file: file, line: line) + mpiArgs
            + ["-np", String(np), Harness.binary] + args
        return Harness.runCommand(argv, env: env, timeout: timeout)
    }

    func ok(_ r: Harness.Result, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, 0, "\(what): \(r.stderr)", file: file, line: line)
    }

    /// (tx, rx) bytes per host, as the host sees its link.
    func counters(file: StaticString = #filePath, line: UInt = #line) -> [String: (tx: Int, rx: Int)] {
        let r = Harness.runCommand([Self.emulate, "counters"], timeout: 30)
        XCTAssertEqual(r.status, 0, r.stderr, file: file, line: line)
        var out: [String: (Int, Int)] = [:]
        for row in r.stdout.split(separator: "\n").dropFirst() {
            let f = row.split(separator: " ")
            if f.count == 3, let tx = Int(f[1]), let rx = Int(f[2]) { out[String(f[0])] = (tx, rx) }
        }
        return out
    }

    let common = ["--max-steps", "20", "--lr", "0.05", "--momentum", "0.9", "--log-every", "0"]

    /// Every emulated host is its own machine to Open MPI: its own name, its own /dev/shm.
    func testHostsAreSeparateMachines() {
        let r = Harness.runCommand(["mpirun"] + clusterArgs() + ["-np", "4", "/bin/sh", "-c", "echo $(hostname) $(ls /dev/shm | wc -l)"], timeout: 60)
        ok(r, "mpirun hostname")
        let names = r.stdout.split(separator: "\n").map { String($0.split(separator: " ")[0]) }.sorted()
        XCTAssertEqual(names, ["ddpemu-host1", "ddpemu-host1", "ddpemu-host2", "ddpemu-host2"], r.stdout)
        // Each host's /dev/shm is a fresh tmpfs, whatever the machine's holds.
        XCTAssertEqual(r.stdout.split(separator: "\n").map { $0.split(separator: " ").last ?? "" }, ["0", "0", "0", "0"], r.stdout)
    }

    /// 2 hosts x 2 ranks at batch 16 follow one process at batch 64.
    func testTwoHostsTwoRanksMatchOneProcess() throws {
        let dir = temporaryDirectory()
        ok(Harness.run(common + ["--batch-size", "64", "--save", dir + "/local.safetensors"]), "local")
        let r = runCluster(np: 4, common + ["--batch-size", "16", "--save", dir + "/cluster.safetensors"])
        ok(r, "2 hosts x 2 ranks")
        XCTAssertTrue(r.stdout.contains("4 ranks, per-rank batch 16, global batch 64"), r.stdout)
        XCTAssertTrue(r.stdout.contains("2 ranks share this machine"), "two ranks per host, not four: \(r.stdout)")
        XCTAssertTrue(r.stdout.contains("Gradients: hierarchical: shared memory (MPI-3 shared windows) inside each of 2 machines of 2 ranks"), r.stdout)
        let d = Harness.maxAbsDifference(try Harness.weights(dir + "/local.safetensors"), try Harness.weights(dir + "/cluster.safetensors"))
        print("2 hosts x 2 ranks vs one process: max |dw| = \(d)")
        XCTAssertLessThan(d, 1e-5)
    }

    /// A rank killed on the second host ends the job within 10 s of its death. The killed run's total
    /// time minus the time of a normal run to the same step (start-up, 20 steps, evaluation, exit)
    /// bounds the time from the kill to mpirun's exit from above.
    func testKilledRankOnOneHostEndsJob() {
        let args = ["--dataset", "synthetic:20000", "--model", "mlp:256", "--epochs", "50", "--log-every", "0"]
        let normal = runCluster(np: 4, args + ["--max-steps", "20"])
        ok(normal, "run to step 20")
        // Rank 2 is host 2's first rank (ranks fill host 1's two slots first).
        let killed = runCluster(np: 4, args, env: ["DDP_TEST_KILL": "2:20"], forward: ["DDP_TEST_KILL"], timeout: 90)
        XCTAssertNotEqual(killed.status, 0)
        XCTAssertTrue(killed.stderr.contains("rank 2 kills itself"), "the hook reached host 2: \(killed.stderr)")
        XCTAssertTrue(killed.stderr.contains("ddpemu-host2"), "mpirun names the host: \(killed.stderr)")
        let afterKill = killed.seconds - normal.seconds
        print("killed rank: job ended \(String(format: "%.2f", killed.seconds)) s after start, a normal run to step 20 takes " +
              "\(String(format: "%.2f", normal.seconds)) s: at most \(String(format: "%.2f", afterKill)) s after the kill")
        XCTAssertLessThan(afterKill, 10, "mpirun should end the job within seconds of a rank's death on another host")
        XCTAssertLessThan(killed.seconds, 60)
    }

    /// Checkpointed on 2 hosts x 1 rank, resumed on 1 host x 2 ranks and in local mode: both equal an
    /// uninterrupted run.
    func testResumeOnAnotherHostCount() throws {
        let dir = temporaryDirectory()
        let args = ["--lr", "0.05", "--momentum", "0.9", "--log-every", "0"]
        ok(Harness.run(args + ["--batch-size", "64", "--max-steps", "40", "--save", dir + "/full.safetensors"]), "uninterrupted")
        let first = runCluster(np: 2, args + ["--batch-size", "32", "--max-steps", "20", "--checkpoint-dir", dir + "/ck"],
                               mpiArgs: ["--map-by", "node"])
        ok(first, "2 hosts x 1 rank to step 20")
        XCTAssertTrue(FileManager.default.fileExists(atPath: Harness.checkpoint(dir + "/ck", step: 20)), Harness.checkpoints(dir + "/ck").description)
        try FileManager.default.copyItem(atPath: dir + "/ck", toPath: dir + "/ck-local")

        let oneHost = dir + "/one-host"
        try "ddpemu-host1 slots=2\n".write(toFile: oneHost, atomically: true, encoding: .utf8)
        let resumed = runCluster(np: 2, args + ["--batch-size", "32", "--max-steps", "40", "--checkpoint-dir", dir + "/ck", "--resume",
                                                "--save", dir + "/onehost.safetensors"], hostfile: oneHost)
        ok(resumed, "1 host x 2 ranks, resumed")
        XCTAssertTrue(resumed.stdout.contains("at step 20"), resumed.stdout)
        XCTAssertTrue(resumed.stdout.contains("2 ranks share this machine"), resumed.stdout)
        let local = Harness.run(args + ["--batch-size", "64", "--max-steps", "40", "--checkpoint-dir", dir + "/ck-local", "--resume",
                                        "--save", dir + "/local.safetensors"])
        ok(local, "local, resumed")
        let full = try Harness.weights(dir + "/full.safetensors")
        let d1 = Harness.maxAbsDifference(full, try Harness.weights(dir + "/onehost.safetensors"))
        let d2 = Harness.maxAbsDifference(full, try Harness.weights(dir + "/local.safetensors"))
        print("resume from 2 hosts x 1 rank: max |dw| 1 host x 2 ranks \(d1), local \(d2)")
        XCTAssertLessThan(d1, 1e-5)
        XCTAssertLessThan(d2, 1e-5)
    }

    /// 2 hosts x 1 rank: the gradients cross the veth links (each host sends and receives at least one
    /// gradient's bytes per step), and the weights equal one process's.
    func testTCPBetweenHostsCarriesGradients() throws {
        let dir = temporaryDirectory()
        let steps = 30
        let args = ["--max-steps", String(steps), "--lr", "0.05", "--momentum", "0.9", "--log-every", "0"]
        ok(Harness.run(args + ["--batch-size", "64", "--save", dir + "/local.safetensors"]), "local")
        let before = counters()
        let r = runCluster(np: 2, args + ["--batch-size", "32", "--save", dir + "/cluster.safetensors"], mpiArgs: ["--map-by", "node"])
        let after = counters()
        ok(r, "2 hosts x 1 rank")
        XCTAssertTrue(r.stdout.contains("2 ranks, per-rank batch 32"), r.stdout)
        let gradientBytes = Self.parameters * MemoryLayout<Float>.size * steps
        for host in ["ddpemu-host1", "ddpemu-host2"] {
            guard let b = before[host], let a = after[host] else { XCTFail("no counters for \(host)"); continue }
            let tx = a.tx - b.tx, rx = a.rx - b.rx
            print("\(host): sent \(tx) bytes, received \(rx) bytes over \(steps) steps (gradients: \(gradientBytes) bytes)")
            XCTAssertGreaterThanOrEqual(tx, gradientBytes, "\(host) sent")
            XCTAssertGreaterThanOrEqual(rx, gradientBytes, "\(host) received")
        }
        let d = Harness.maxAbsDifference(try Harness.weights(dir + "/local.safetensors"), try Harness.weights(dir + "/cluster.safetensors"))
        XCTAssertLessThan(d, 1e-5)
    }

    /// Bytes each host sends per step, from the link counters: the difference between a run of
    /// `steps + 40` and one of `steps` steps, over 40 (start-up, the parameter broadcast and the
    /// evaluation cancel out).
    func bytesPerStep(np: Int, batch: Int, extra: [String] = [], mpiArgs: [String] = [], file: StaticString = #filePath, line: UInt = #line) -> [Double] {
        var sent: [[Int]] = []
        for steps in [10, 50] {
            let before = counters(file: file, line: line)
            ok(runCluster(np: np, ["--max-steps", String(steps), "--batch-size", String(batch), "--log-every", "0"] + extra, mpiArgs: mpiArgs,
                          file: file, line: line), "np \(np), \(steps) steps", file: file, line: line)
            let after = counters(file: file, line: line)
            sent.append(["ddpemu-host1", "ddpemu-host2"].map { (after[$0]?.tx ?? 0) - (before[$0]?.tx ?? 0) })
        }
        return (0..<2).map { Double(sent[1][$0] - sent[0][$0]) / 40 }
    }

    /// Hierarchical reduction: each host sends 2(H-1)/H of the gradient bytes per step (H = 2: one
    /// gradient), whether it runs 1 or 2 ranks; `--grad-wire bf16` halves that.
    func testHierarchicalBytesBetweenHosts() {
        let gradient = Double(Self.parameters * 4)
        let oneRank = bytesPerStep(np: 2, batch: 32, mpiArgs: ["--map-by", "node"])
        let twoRanks = bytesPerStep(np: 4, batch: 16)
        let bf16 = bytesPerStep(np: 4, batch: 16, extra: ["--grad-wire", "bf16"])
        print("bytes sent per host per step: 2x1 \(oneRank), 2x2 \(twoRanks), 2x2 bf16 \(bf16); 2(H-1)/H x gradient = \(gradient)")
        for (name, sent, expected) in [("2x1", oneRank, gradient), ("2x2", twoRanks, gradient), ("2x2 bf16", bf16, gradient / 2)] {
            for (h, b) in sent.enumerated() {
                // TCP/IP headers add up to about 3% (fewer with segmentation offload). The two runs'
                // fixed traffic (start-up, broadcast, evaluation, retransmits on a busy VM) cancels only
                // roughly: one run here measured 0.13% under the payload (2,675,339 bytes for 2,678,824).
                // So: within 2% below and 10% above: one gradient, not half or two.
                XCTAssertGreaterThanOrEqual(b, expected * 0.98, "\(name) host \(h + 1)")
                XCTAssertLessThan(b, expected * 1.1, "\(name) host \(h + 1)")
            }
        }
    }

    /// Hierarchical with Adam and gradient clipping equals one machine's 4 ranks; a checkpoint taken
    /// on 2 hosts x 2 ranks (each host's first rank loads its host's copy) resumes bitwise; bf16 on
    /// the wire stays close.
    func testHierarchicalClippingResumeAndBF16() throws {
        let dir = temporaryDirectory()
        let args = ["--optimizer", "adam", "--clip-grad-norm", "0.5", "--batch-size", "16", "--log-every", "0"]
        ok(Harness.run(args + ["--max-steps", "40", "--save", dir + "/one.safetensors"], np: 4), "one machine, 4 ranks")
        ok(runCluster(np: 4, args + ["--max-steps", "40", "--save", dir + "/full.safetensors"]), "2 hosts x 2 ranks")
        ok(runCluster(np: 4, args + ["--max-steps", "20", "--checkpoint-dir", dir + "/ck"]), "to step 20")
        let resumed = runCluster(np: 4, args + ["--max-steps", "40", "--checkpoint-dir", dir + "/ck", "--resume", "--save", dir + "/resumed.safetensors"])
        ok(resumed, "resumed")
        XCTAssertTrue(resumed.stdout.contains("at step 20"), resumed.stdout)
        // bf16 against fp32 with SGD (Adam divides by the gradients' size, so rounding moves the
        // weights whose gradients are near zero by up to lr per step either way).
        let sgd = ["--lr", "0.05", "--momentum", "0.9", "--batch-size", "16", "--max-steps", "40", "--log-every", "0"]
        ok(runCluster(np: 4, sgd + ["--save", dir + "/fp32.safetensors"]), "fp32")
        ok(runCluster(np: 4, sgd + ["--grad-wire", "bf16", "--save", dir + "/bf16.safetensors"]), "bf16")
        let full = try Harness.weights(dir + "/full.safetensors")
        let dOne = Harness.maxAbsDifference(full, try Harness.weights(dir + "/one.safetensors"))
        let dResume = Harness.maxAbsDifference(full, try Harness.weights(dir + "/resumed.safetensors"))
        let dBF16 = Harness.maxAbsDifference(try Harness.weights(dir + "/fp32.safetensors"), try Harness.weights(dir + "/bf16.safetensors"))
        print("hierarchical, adam + clipping: vs one machine \(dOne), resumed \(dResume); sgd, bf16 wire vs fp32: \(dBF16)")
        XCTAssertLessThan(dOne, 1e-5)
        XCTAssertEqual(dResume, 0)
        XCTAssertGreaterThan(dBF16, 0, "bf16 rounds the sums")
        XCTAssertLessThan(dBF16, 1e-2, "bf16 keeps 8 bits: each sum is off by up to 2^-9 of itself (measured 2.5e-3 after 40 steps at lr 0.05, momentum 0.9)")
    }
}
