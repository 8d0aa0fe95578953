import Data
import Foundation
import XCTest

/// The command line as a user meets it: bad input, saved weights read by Python, evaluate, predict
/// and download.
final class CLITests: XCTestCase {
    func testBadInputGivesOneClearLine() throws {
        assertCleanFailure(["--data-dir", "/nonexistent/mnist"], mentions: "does not exist")
        let truncated = try fixtureFolder { dir in
            let data = FileManager.default.contents(atPath: dir + "/train-images-idx3-ubyte.gz")!
            try data.prefix(data.count / 3).write(to: URL(fileURLWithPath: dir + "/train-images-idx3-ubyte.gz"))
        }
        assertCleanFailure(["--data-dir", truncated], mentions: "truncated gzip")
        let magic = try fixtureFolder { dir in
            try FileManager.default.removeItem(atPath: dir + "/train-labels-idx1-ubyte.gz")
            try Data(IDXFile.encode(dims: [8000, 1, 1], bytes: [UInt8](repeating: 1, count: 8000)))
                .write(to: URL(fileURLWithPath: dir + "/train-labels-idx1-ubyte"))
        }
        assertCleanFailure(["--data-dir", magic], mentions: "wrong magic number")
        let counts = try fixtureFolder { dir in
            try FileManager.default.removeItem(atPath: dir + "/train-labels-idx1-ubyte.gz")
            try Data(IDXFile.encode(dims: [7999], bytes: [UInt8](repeating: 1, count: 7999)))
                .write(to: URL(fileURLWithPath: dir + "/train-labels-idx1-ubyte"))
        }
        assertCleanFailure(["--data-dir", counts], mentions: "has 8000 images but train-labels-idx1-ubyte has 7999 labels")
        let empty = try fixtureFolder { dir in
            try FileManager.default.removeItem(atPath: dir + "/t10k-labels-idx1-ubyte.gz")
            FileManager.default.createFile(atPath: dir + "/t10k-labels-idx1-ubyte", contents: Data())
        }
        assertCleanFailure(["--data-dir", empty], mentions: "empty file")
        assertCleanFailure(["--model", "mlp:abc"], mentions: "invalid --model 'mlp:abc'")
        assertCleanFailure(["--lr", "-1"], mentions: "invalid learning rate -1")
        assertCleanFailure(["--batch-size", "0"], mentions: "invalid --batch-size 0")
        assertCleanFailure(["--optimizer", "lbfgs"], mentions: "invalid --optimizer 'lbfgs'")
        assertCleanFailure(["--epochs", "two"], mentions: "--epochs")
        assertCleanFailure(["--dataset", "cifar10"], mentions: "invalid --dataset 'cifar10'")

        let dir = temporaryDirectory()
        let notSafetensors = dir + "/notes.safetensors"
        try "just some text, not tensors".write(toFile: notSafetensors, atomically: true, encoding: .utf8)
        assertCleanFailure(["--init-weights", notSafetensors], mentions: "not a valid safetensors file")
        let small = dir + "/small.safetensors"
        let ok = Harness.run(["--dataset", "synthetic:200", "--model", "mlp:16", "--max-steps", "1", "--save", small, "--log-every", "0"])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        assertCleanFailure(["--dataset", "synthetic:200", "--model", "mlp:32", "--init-weights", small],
                           mentions: "tensor '0.weight' has shape [16, 784], the model needs [32, 784]")
        // Under mpirun: rank 0 alone reads the file; every rank stops, and only rank 0 prints.
        assertCleanFailure(["--dataset", "synthetic:200", "--model", "mlp:32", "--init-weights", small],
                           mentions: "the model needs [32, 784]", np: 2)
    }

    func testHelp() {
        for args in [["--help"], ["help"], ["train", "--help"], ["bench", "--help"]] {
            let r = Harness.run(args)
            XCTAssertEqual(r.status, 0, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stdout.contains("USAGE: ddp-train"), "\(args): \(r.stdout)")
            XCTAssertEqual(r.stderr, "")
        }
        XCTAssertTrue(Harness.run(["--help"]).stdout.contains("evaluate"), "subcommands listed")
    }

    /// `bench` prints one JSON object with both bounds. With Winograd convolutions (the CNN
    /// preset's second one) they time different GEMMs (which is faster depends on the BLAS kernels
    /// and threads: at batch 8 on 2 threads with the Haswell kernels, the 144-tile products are not;
    /// ModelSpecTests checks the flops); for an MLP the two are the same figure.
    func testBenchReportsBothBounds() throws {
        for (model, winograd) in [("cnn", true), ("mlp:64", false)] {
            let r = Harness.run(["bench", "--model", model, "--batch-size", "8", "--steps", "3", "--warmup", "1", "--local-ranks", "1"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let line = try XCTUnwrap(r.stdout.split(separator: "\n").last(where: { $0.hasPrefix("{") }), r.stdout)
            let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], String(line))
            let bound = try XCTUnwrap(json["sgemm_bound_samples_per_s"] as? Double), direct = try XCTUnwrap(json["direct_sgemm_bound_samples_per_s"] as? Double)
            let samples = try XCTUnwrap(json["samples_per_s"] as? Double)
            XCTAssertGreaterThan(samples, 0, model)
            if winograd {
                XCTAssertNotEqual(bound, direct, "\(model): \(line)")
            } else {
                XCTAssertEqual(bound, direct, "\(model): \(line)")
            }
            XCTAssertEqual(try XCTUnwrap(json["direct_efficiency"] as? Double), samples / direct, accuracy: 0.01 * samples / direct)
        }
    }

    /// Python's safetensors package (numpy) reads what --save writes, with PyTorch's names.
    func testPythonSafetensorsReadsOurFile() throws {
        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        python.arguments = ["python3", "-c", "import safetensors.numpy"]
        python.standardError = FileHandle.nullDevice
        try python.run()
        python.waitUntilExit()
        if python.terminationStatus != 0 {
            if ProcessInfo.processInfo.environment["DDP_REQUIRE_PYTHON"] == "1" {
                XCTFail("python3 cannot import safetensors.numpy (Scripts/test.sh installs it)")
            }
            throw XCTSkip("python3 has no safetensors package; Scripts/test.sh installs it")
        }
        let dir = temporaryDirectory()
        let path = dir + "/mlp.safetensors"
        let r = Harness.run(["--dataset", "synthetic:300", "--model", "mlp:512,512", "--max-steps", "2", "--save", path, "--log-every", "0"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let script = """
        import sys
        from safetensors.numpy import load_file
        d = load_file(sys.argv[1])
        for k in sorted(d):
            v = d[k]
            print(k, v.dtype, list(v.shape), repr(float(v.reshape(-1)[1])))
        """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", script, path]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        let lines = out.split(separator: "\n").map { $0.split(separator: " ") }
        XCTAssertEqual(lines.map { String($0[0]) }, ["0.bias", "0.weight", "2.bias", "2.weight", "4.bias", "4.weight"])
        XCTAssert(lines.allSatisfy { $0[1] == "float32" })
        XCTAssertEqual(lines.map { $0[2...].dropLast().joined(separator: " ") },
                       ["[512]", "[512, 784]", "[512]", "[512, 512]", "[10]", "[10, 512]"])
        let ours = try Harness.weights(path)
        XCTAssertEqual(Float(lines[1].last!)!, ours["0.weight"]![1], "Python reads the same values")
    }

    func testEvaluateAndPredictSavedWeights() throws {
        let dir = temporaryDirectory()
        let path = dir + "/w.safetensors"
        let r = Harness.run(["--model", "mlp:64", "--epochs", "1", "--lr", "0.05", "--momentum", "0.9", "--save", path, "--log-every", "0"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let e = Harness.run(["evaluate", "--weights", path])
        XCTAssertEqual(e.status, 0, e.stderr)
        XCTAssertEqual(Harness.accuracy(e.stdout), Harness.accuracy(r.stdout), "evaluate reproduces the training run's final result")
        XCTAssertTrue(e.stdout.contains("Confusion matrix"))
        let p = Harness.run(["predict", "--weights", path, "--index", "0"])
        XCTAssertEqual(p.status, 0, p.stderr)
        XCTAssertTrue(p.stdout.contains("Predicted: "), p.stdout)
        XCTAssertEqual(p.stdout.split(separator: "\n").filter { $0.hasPrefix("  ") && $0.contains("0.") }.count, 10, p.stdout)
        let bad = Harness.run(["predict", "--weights", path, "--index", "5000"])
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.contains("invalid --index 5000"), bad.stderr)
        // Fashion-MNIST shows class names wherever classes are shown.
        let f = Harness.run(["predict", "--weights", path, "--index", "3", "--dataset", "fashion-mnist"])
        XCTAssertTrue(f.stdout.contains("Ankle boot"), f.stdout)
    }

    /// `download` against a local HTTP server serving ../shared/data (these machines are offline).
    func testDownloadVerifiesChecksumsFromLocalMirror() throws {
        let served = temporaryDirectory()
        // The published t10k files (byte-identical to the official ones), plus a corrupted train file.
        let t10k = (Harness.mnist as NSString).deletingLastPathComponent + "/mnist-t10k"
        for f in ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
            try FileManager.default.copyItem(atPath: t10k + "/" + f, toPath: served + "/" + f)
        }
        try Data("corrupt".utf8).write(to: URL(fileURLWithPath: served + "/train-images-idx3-ubyte.gz"))
        let port = 18_000 + Int.random(in: 0..<2000)
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        server.arguments = ["python3", "-m", "http.server", String(port), "--bind", "127.0.0.1", "--directory", served]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer { server.terminate() }
        Thread.sleep(forTimeInterval: 1.0)

        let target = temporaryDirectory() + "/mnist"
        let r = Harness.run(["download", "--dir", target, "--mirror", "http://127.0.0.1:\(port)/", "--timeout", "5"], timeout: 60)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("train-images-idx3-ubyte.gz") && r.stderr.contains("checksum mismatch"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: target + "/train-images-idx3-ubyte.gz"), "a bad file is never stored")

        // The t10k files are the published ones: they verify and are stored; the train files fail.
        for f in ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
            XCTAssertEqual(FileManager.default.contents(atPath: target + "/" + f), FileManager.default.contents(atPath: t10k + "/" + f))
        }
        XCTAssertTrue(r.stdout.contains("t10k-images-idx3-ubyte.gz: downloaded"), r.stdout)
        XCTAssertTrue(r.stderr.contains("could not download 2 of 4 files") && r.stderr.contains("train-images-idx3-ubyte.gz"), r.stderr)
        XCTAssertEqual(r.stderrLines.count, 1, r.stderr)
        // Run again: what is present and valid is kept, not fetched again.
        let again = Harness.run(["download", "--dir", target, "--mirror", "http://127.0.0.1:\(port)/", "--timeout", "5"], timeout: 60)
        XCTAssertTrue(again.stdout.contains("t10k-labels-idx1-ubyte.gz: present, checksum ok"), again.stdout)

        let offline = Harness.run(["download", "--dir", target, "--mirror", "http://127.0.0.1:9/", "--timeout", "3"], timeout: 60)
        XCTAssertEqual(offline.status, 1)
        XCTAssertTrue(offline.stderr.contains("DDP_DATA_DIR"), "offline failure names DDP_DATA_DIR: \(offline.stderr)")
        XCTAssertEqual(offline.stderrLines.count, 1, offline.stderr)
    }

    /// Plain `srun -n 2` without PMI: each task sees one rank. Simulated with Slurm's step variable
    /// (no Slurm runs here); under `srun --mpi=pmix` MPI sees every task and nothing is refused.
    func testSrunWithoutPMIIsRefused() {
        assertCleanFailure(["--max-steps", "1"], mentions: "srun --mpi=pmix", status: 2,
                           env: ["SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "0"])
        XCTAssertEqual(Harness.run(["--max-steps", "1", "--log-every", "0"], np: 2, env: ["SLURM_STEP_NUM_TASKS": "2"]).status, 0,
                       "two MPI ranks in a two-task step are fine")
    }
}
