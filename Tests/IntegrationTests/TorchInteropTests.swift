import Data
import Foundation
import XCTest

/// Our saved weights in PyTorch: each preset trains a little, torch 1.13 (the system /usr/bin/python3)
/// builds the module that docs/models.md gives for it, loads our safetensors file with
/// `load_state_dict(strict=True)`, runs the first 500 MNIST test images in eval mode, and must predict
/// the classes that `ddp-train predict` does for every one of them (at most one disagreement, for float
/// rounding near a tie), with the same class probabilities, and the loss, accuracy and confusion
/// matrix that `ddp-train evaluate` prints for those images.
///
/// The python has no safetensors package, so the script reads the file itself. Without torch the
/// tests are skipped, unless DDP_REQUIRE_TORCH=1.
final class TorchInteropTests: XCTestCase {
    static let python = "/usr/bin/python3"
    static let samples = 500

    // The modules exactly as docs/models.md writes them (the tests check that it still does).
    static let residualClass = """
    class Residual(nn.Module):
        def __init__(self, body, shortcut=None):
            super().__init__(); self.body = body; self.shortcut = shortcut
        def forward(self, x):
            return self.body(x) + (x if self.shortcut is None else self.shortcut(x))
    """

    static let modules: [String: String] = [
        "cnn": """
    def cnn(classes=10):
        return nn.Sequential(
            nn.Conv2d(1, 32, 3),        # 0.weight [32, 1, 3, 3], 0.bias
            nn.ReLU(),
            nn.Conv2d(32, 64, 3),       # 2.weight [64, 32, 3, 3], 2.bias
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(0.25),
            nn.Flatten(),
            nn.Linear(9216, 128),       # 7.weight [128, 9216], 7.bias
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(128, classes),    # 10.weight [10, 128], 10.bias
        )
    """,
        "lenet5": """
    def lenet5(classes=10):
        return nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2),  # 0.weight [6, 1, 5, 5], 0.bias
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),            # 3.weight [16, 6, 5, 5], 3.bias
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(400, 120),            # 7.weight [120, 400], 7.bias
            nn.ReLU(),
            nn.Linear(120, 84),             # 9.weight [84, 120], 9.bias
            nn.ReLU(),
            nn.Linear(84, classes),         # 11.weight [10, 84], 11.bias
        )
    """,
        "resnet8": """
    def resnet8(classes=10):
        def block(c_in, c, stride):
            body = nn.Sequential(
                nn.Conv2d(c_in, c, 3, stride=stride, padding=1, bias=False),  # i.body.0.weight
                nn.BatchNorm2d(c),                                            # i.body.1.*
                nn.ReLU(),
                nn.Conv2d(c, c, 3, padding=1, bias=False),                    # i.body.3.weight
                nn.BatchNorm2d(c),                                            # i.body.4.*
            )
            shortcut = None if c_in == c and stride == 1 else nn.Conv2d(c_in, c, 1, stride=stride)  # i.shortcut.*
            return Residual(body, shortcut)
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False),  # 0.weight [16, 1, 3, 3]
            nn.BatchNorm2d(16),                          # 1.weight, 1.bias, 1.running_mean, 1.running_var, 1.num_batches_tracked
            nn.ReLU(),
            block(16, 16, 1),                            # 3.body.*, no shortcut (28x28 -> 28x28)
            nn.ReLU(),
            block(16, 32, 2),                            # 5.body.*, 5.shortcut.weight [32, 16, 1, 1], 5.shortcut.bias (-> 14x14)
            nn.ReLU(),
            block(32, 64, 2),                            # 7.body.*, 7.shortcut.* (-> 7x7)
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(64, classes),                      # 11.weight [10, 64], 11.bias
        )
    """,
    ]

    static let loader = #"""
    def load_safetensors(path):
        raw = open(path, "rb").read()
        n = struct.unpack("<Q", raw[:8])[0]
        header = json.loads(raw[8:8 + n])
        header.pop("__metadata__", None)
        dtypes = {"F32": np.dtype("<f4"), "I64": np.dtype("<i8")}
        tensors = {}
        for name, t in header.items():
            if t["dtype"] not in dtypes:
                sys.exit(f"{name}: unexpected dtype {t['dtype']}")
            dt = dtypes[t["dtype"]]
            lo, hi = t["data_offsets"]
            a = np.frombuffer(raw, dtype=dt, count=(hi - lo) // dt.itemsize, offset=8 + n + lo)
            tensors[name] = torch.from_numpy(a.reshape(t["shape"]).copy())
        return tensors
    """#

    /// argv: preset, weights file, data folder, number of test images. Prints one JSON object.
    static var script: String {
        let presets = ["cnn", "lenet5", "resnet8"].map { modules[$0]! }.joined(separator: "\n\n")
        return ["import gzip, json, os, struct, sys", "import numpy as np", "import torch", "import torch.nn as nn",
                residualClass, presets, loader, driver].joined(separator: "\n\n") + "\n"
    }

    static let driver = #"""
    def idx(path, header):
        raw = gzip.open(path).read() if path.endswith(".gz") else open(path, "rb").read()
        return np.frombuffer(raw, dtype=np.uint8, offset=header)

    def data_file(data_dir, base):
        return next(p for p in (f"{data_dir}/{base}", f"{data_dir}/{base}.gz") if os.path.exists(p))

    preset, weights, data_dir, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    model = {"cnn": cnn, "lenet5": lenet5, "resnet8": resnet8}[preset]()
    state = load_safetensors(weights)
    model.load_state_dict(state, strict=True)              # raises on a missing, unexpected or misshapen tensor
    model.eval()
    x = idx(data_file(data_dir, "t10k-images-idx3-ubyte"), 16).reshape(-1, 1, 28, 28)[:count]
    y = idx(data_file(data_dir, "t10k-labels-idx1-ubyte"), 8)[:count].astype(np.int64)
    x = torch.from_numpy(x.astype(np.float32) / np.float32(255))   # ToTensor: pixel / 255
    with torch.no_grad():
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, torch.from_numpy(y)).item()
        probs = torch.softmax(logits, dim=1)
    pred = logits.argmax(dim=1)
    print(json.dumps({"tensors": len(state), "loss": loss, "correct": int((pred == torch.from_numpy(y)).sum()),
                      "labels": y.tolist(), "predicted": pred.tolist(), "probabilities": probs.tolist()}))
    """#

    struct TorchResult: Decodable {
        let tensors: Int
        let loss: Double
        let correct: Int
        let labels: [Int]
        let predicted: [Int]
        let probabilities: [[Double]]
    }

    func testCNNWeightsLoadIntoTorch() throws { try checkPreset("cnn") }
    func testLeNet5WeightsLoadIntoTorch() throws { try checkPreset("lenet5") }
    func testResNet8WeightsLoadIntoTorch() throws { try checkPreset("resnet8") }

    /// docs/models.md shows the very modules the script builds.
    func testDocumentationShowsTheTestedModules() throws {
        let doc = try String(contentsOfFile: Harness.packageRoot + "/docs/models.md", encoding: .utf8)
        XCTAssertTrue(doc.contains(Self.residualClass), "docs/models.md should contain the Residual class:\n\(Self.residualClass)")
        for (name, code) in Self.modules.sorted(by: { $0.key < $1.key }) {
            XCTAssertTrue(doc.contains(code), "docs/models.md should contain the \(name) module:\n\(code)")
        }
    }

    /// Whether /usr/bin/python3 has torch: skips without it, or fails with DDP_REQUIRE_TORCH=1.
    private func haveTorch() throws -> Bool {
        let r = Harness.runCommand([Self.python, "-c", "import torch, numpy"], timeout: 120)
        guard r.status != 0 else { return true }
        let why = "\(Self.python) cannot import torch and numpy: \(r.stderr.split(separator: "\n").last ?? "")"
        guard ProcessInfo.processInfo.environment["DDP_REQUIRE_TORCH"] == "1" else { throw XCTSkip(why) }
        XCTFail(why + " (DDP_REQUIRE_TORCH=1)")
        return false
    }

    /// A data folder whose test set is the first `samples` test images and whose training set is
    /// 10 images (evaluate and predict read the training files too), raw IDX.
    private func firstTestImages(_ samples: Int) throws -> String {
        let dir = temporaryDirectory()
        for (base, rank, count) in [("t10k-images-idx3-ubyte", 3, samples), ("t10k-labels-idx1-ubyte", 1, samples),
                                    ("train-images-idx3-ubyte", 3, 10), ("train-labels-idx1-ubyte", 1, 10)] {
            let file = try IDXFile.load(path: Harness.mnist + "/" + base + ".gz", expectedRank: rank)
            XCTAssertGreaterThanOrEqual(file.dims[0], count, base)
            let per = file.dims.dropFirst().reduce(1, *)
            let bytes = IDXFile.encode(dims: [count] + file.dims.dropFirst(), bytes: Array(file.bytes.prefix(count * per)))
            try Data(bytes).write(to: URL(fileURLWithPath: dir + "/" + base))
        }
        return dir
    }

    private func checkPreset(_ preset: String, file: StaticString = #filePath, line: UInt = #line) throws {
        guard try haveTorch() else { return }
        let dir = temporaryDirectory()
        let weights = dir + "/w.safetensors"
        let train = Harness.run(["--model", preset, "--max-steps", "100", "--batch-size", "32", "--lr", "0.05", "--momentum", "0.9",
                                 "--save", weights, "--log-every", "0"])
        XCTAssertEqual(train.status, 0, "training \(preset): \(train.stderr)", file: file, line: line)
        guard train.status == 0 else { return }
        let data = try firstTestImages(Self.samples)

        // PyTorch's view of the file.
        let py = Harness.runCommand([Self.python, "-c", Self.script, preset, weights, data, String(Self.samples)], timeout: 300)
        XCTAssertEqual(py.status, 0, "torch could not load or run the \(preset) weights:\n\(py.stderr)", file: file, line: line)
        guard py.status == 0 else { return }
        let torch = try JSONDecoder().decode(TorchResult.self, from: Data(py.stdout.utf8))
        let fileTensors = try SafeTensors.read(path: weights).tensors.count
        XCTAssertEqual(torch.tensors, fileTensors, "every tensor of the file is in torch's state_dict", file: file, line: line)
        XCTAssertEqual(torch.predicted.count, Self.samples, file: file, line: line)
        guard torch.predicted.count == Self.samples else { return }

        // ddp-train's: evaluate for loss, accuracy and the confusion matrix, predict per image.
        let eval = Harness.run(["evaluate", "--weights", weights, "--data-dir", data])
        XCTAssertEqual(eval.status, 0, "evaluate: \(eval.stderr)", file: file, line: line)
        let ours = predictions(weights: weights, data: data)

        var disagree: [Int] = []
        var maxProbDiff = 0.0
        for i in 0..<Self.samples {
            guard let (cls, probs) = ours[i].map({ ($0.0, $0.1) }) else {
                XCTFail("predict --index \(i) printed no prediction", file: file, line: line); return
            }
            if cls != torch.predicted[i] { disagree.append(i) }
            XCTAssertEqual(probs.count, torch.probabilities[i].count, "classes of sample \(i)", file: file, line: line)
            for (a, b) in zip(probs, torch.probabilities[i]) { maxProbDiff = max(maxProbDiff, abs(a - b)) }
        }
        let torchAccuracy = Double(torch.correct) / Double(Self.samples)
        let ourAccuracy = Harness.accuracy(eval.stdout) ?? -1
        let ourLoss = averageLoss(eval.stdout) ?? .nan
        print("\(preset): torch \(torch.correct)/\(Self.samples) (\(String(format: "%.1f", 100 * torchAccuracy))%), loss "
              + String(format: "%.4f", torch.loss) + "; ddp-train \(eval.stdout.split(separator: "\n").first { $0.contains("Accuracy: ") } ?? "?"); "
              + "\(disagree.count) predicted classes differ \(disagree); probabilities differ by at most \(String(format: "%.2g", maxProbDiff))")

        XCTAssertLessThanOrEqual(disagree.count, 1, "\(preset): torch and ddp-train predict differently for test images \(disagree)",
                                 file: file, line: line)
        XCTAssertLessThan(maxProbDiff, 2e-3, "\(preset): class probabilities (printed to 4 decimals)", file: file, line: line)
        XCTAssertEqual(ourAccuracy, torchAccuracy, accuracy: 1.0 / Double(Self.samples) + 1e-9, "\(preset): accuracy", file: file, line: line)
        XCTAssertEqual(ourLoss, torch.loss, accuracy: 1e-3, "\(preset): average loss", file: file, line: line)
        if let matrix = confusion(eval.stdout) {
            var theirs = [[Int]](repeating: [Int](repeating: 0, count: 10), count: 10)
            for (y, p) in zip(torch.labels, torch.predicted) { theirs[y][p] += 1 }
            let diff = zip(matrix.joined(), theirs.joined()).reduce(0) { $0 + abs($1.0 - $1.1) }
            XCTAssertLessThanOrEqual(diff, 2, "\(preset): confusion matrices\nddp-train: \(matrix)\ntorch: \(theirs)", file: file, line: line)
        } else {
            XCTFail("no 10x10 confusion matrix in evaluate's output:\n\(eval.stdout)", file: file, line: line)
        }
        // Not a trivial agreement: the model has learned something and predicts many classes.
        XCTAssertGreaterThan(torchAccuracy, 0.5, "\(preset) after 100 steps", file: file, line: line)
        XCTAssertGreaterThanOrEqual(Set(torch.predicted).count, 8, "\(preset) predicts most classes", file: file, line: line)
    }

    /// `ddp-train predict --index I` for every sample, two at a time: the class and probabilities.
    private func predictions(weights: String, data: String) -> [(Int, [Double])?] {
        let lock = NSLock()
        var results = [(Int, [Double])?](repeating: nil, count: Self.samples)
        DispatchQueue.concurrentPerform(iterations: 2) { worker in
            for i in stride(from: worker, to: Self.samples, by: 2) {
                let r = Harness.run(["predict", "--weights", weights, "--data-dir", data, "--index", String(i)], timeout: 120)
                let parsed = r.status == 0 ? parsePrediction(r.stdout) : nil
                lock.lock()
                results[i] = parsed
                lock.unlock()
            }
        }
        return results
    }

    /// "Predicted: 7 (probability 0.9638)" and the lines after "Class probabilities:", "  7  0.9638 ###".
    private func parsePrediction(_ stdout: String) -> (Int, [Double])? {
        let lines = stdout.split(separator: "\n")
        guard let p = lines.first(where: { $0.hasPrefix("Predicted: ") }),
              let cls = Int(p.dropFirst("Predicted: ".count).prefix { $0 != " " }),
              let start = lines.firstIndex(where: { $0.hasPrefix("Class probabilities:") }) else { return nil }
        let probs = lines[(start + 1)...].compactMap { l -> Double? in
            let f = l.split(separator: " ")
            return f.count >= 2 ? Double(f[1]) : nil
        }
        return (cls, probs)
    }

    /// "Test set: Average loss: 0.3146, Accuracy: 453/500 (90.6%)" -> 0.3146
    private func averageLoss(_ stdout: String) -> Double? {
        guard let l = stdout.split(separator: "\n").first(where: { $0.contains("Average loss: ") }),
              let r = l.range(of: "Average loss: ") else { return nil }
        return Double(l[r.upperBound...].prefix { $0 != "," })
    }

    /// The 10 rows "3    0  1  0 207 ... 100.0%" under "Confusion matrix".
    private func confusion(_ stdout: String) -> [[Int]]? {
        let lines = stdout.split(separator: "\n")
        guard let head = lines.firstIndex(where: { $0.hasPrefix("Confusion matrix") }), lines.count > head + 11 else { return nil }
        let rows = lines[(head + 2)..<(head + 12)].map { $0.split(separator: " ").dropFirst().prefix(10).compactMap { Int($0) } }
        return rows.allSatisfy { $0.count == 10 } ? rows : nil
    }
}

/// The README's PyTorch snippet, run as written: with torch, it loads a saved `mlp:512,512` and the
/// model predicts what `ddp-train predict` does; without torch, the names it relies on are checked
/// in the file. /usr/bin/python3 has no safetensors package, so a stand-in `safetensors.torch` with
/// the same `load_file` goes on PYTHONPATH.
final class ReadmeSnippetTests: XCTestCase {
    func snippet() throws -> String {
        let readme = try String(contentsOfFile: Harness.packageRoot + "/README.md", encoding: .utf8)
        let weights = try XCTUnwrap(readme.range(of: "### Weights"), "README has a Weights section")
        let rest = readme[weights.upperBound...]
        let start = try XCTUnwrap(rest.range(of: "```python\n"))
        let end = try XCTUnwrap(rest[start.upperBound...].range(of: "```"))
        return String(rest[start.upperBound..<end.lowerBound])
    }

    func testReadmeSnippetLoadsOurWeights() throws {
        let code = try snippet()
        XCTAssertTrue(code.contains("load_file(\"mlp.safetensors\")"), code)
        let dir = temporaryDirectory()
        XCTAssertEqual(Harness.run(["--max-steps", "20", "--log-every", "0", "--save", dir + "/mlp.safetensors"]).status, 0)
        let names = Set(try Harness.weights(dir + "/mlp.safetensors").keys)
        XCTAssertEqual(names, ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"], "the names the snippet's Sequential has")
        let torch = Harness.runCommand([TorchInteropTests.python, "-c", "import torch, numpy"], timeout: 120)
        guard torch.status == 0 else {
            if ProcessInfo.processInfo.environment["DDP_REQUIRE_TORCH"] == "1" { XCTFail("DDP_REQUIRE_TORCH=1 but no torch") }
            throw XCTSkip("no torch: the names were checked, the snippet not run")
        }
        try FileManager.default.createDirectory(atPath: dir + "/safetensors", withIntermediateDirectories: true)
        try "".write(toFile: dir + "/safetensors/__init__.py", atomically: true, encoding: .utf8)
        try ("import json, struct, sys\nimport numpy as np\nimport torch\n\n" + TorchInteropTests.loader + "\nload_file = load_safetensors\n")
            .write(toFile: dir + "/safetensors/torch.py", atomically: true, encoding: .utf8)
        // The snippet, then the first test image through the model.
        let images = try IDXFile.load(path: Harness.mnist + "/t10k-images-idx3-ubyte.gz", expectedRank: 3)
        let pixels = images.bytes.prefix(784).map { String(Double($0) / 255) }.joined(separator: ",")
        let script = code + """

            import torch
            x = torch.tensor([\(pixels)], dtype=torch.float32).reshape(1, 1, 28, 28)
            with torch.no_grad():
                p = torch.softmax(model(x), dim=1)[0]
            print(int(p.argmax()), "%.4f" % float(p.max()))
            """
        let r = Harness.runCommand(["/usr/bin/env", "PYTHONPATH=" + dir, TorchInteropTests.python, "-c", script], timeout: 300, cwd: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        let ours = Harness.run(["predict", "--weights", dir + "/mlp.safetensors", "--index", "0"])
        XCTAssertEqual(ours.status, 0, ours.stderr)
        let fields = r.stdout.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        XCTAssertEqual(fields.count, 2, r.stdout)
        XCTAssertTrue(ours.stdout.contains("Predicted: \(fields.first ?? "?") (probability \(fields.last ?? "?"))"), ours.stdout + "\ntorch: " + r.stdout)
    }
}
