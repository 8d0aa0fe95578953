import Data
import Foundation
import XCTest

/// Users' own data end to end: CSV tables (classification with string labels and a categorical
/// feature, regression with several targets), image folders and labels CSVs of PNG files. Results
/// must not depend on the number of ranks (augmentation included), the PNG path must equal the IDX
/// path on the same images, and evaluate and predict must reproduce the training run from the
/// weights file alone.
final class OwnDataTests: XCTestCase {
    static let shared = (Harness.packageRoot as NSString).deletingLastPathComponent + "/shared/data"

    func ok(_ r: Harness.Result, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, 0, r.stderr + r.stdout.suffix(2000), file: file, line: line)
    }

    /// A seeded table: two numeric features, a categorical one, a string class (from a rule on the
    /// features, so it is learnable) and two regression targets.
    func writeTable(_ path: String, rows: Int, seed: UInt64, header: Bool = true) {
        var rng = SplitMix(seed)
        var lines = header ? ["x1,x2,color,label,y1,y2"] : []
        let colors = ["red", "green", "blue"]
        for _ in 0..<rows {
            let x1 = rng.unit() * 10 - 5, x2 = rng.unit() * 4
            let color = colors[Int(rng.next() % 3)]
            let c = color == "red" ? 1.0 : (color == "green" ? -1.0 : 0.0)
            let label = x1 + c * 2 > 0.5 ? (x2 > 2 ? "cat" : "dog") : "bird"
            let y1 = 3 * x1 - 2 * x2 + c + 0.1 * rng.unit(), y2 = x1 * x2
            lines.append(String(format: "%.4f,%.4f,%@,%@,%.4f,%.4f", x1, x2, color, label, y1, y2))
        }
        try! (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// Weights after `args` at 1, 2 and 4 ranks with the same global batch (24) agree within 1e-5.
    func assertWorldSizeInvariant(_ args: [String], _ what: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let dir = temporaryDirectory()
        for (np, batch) in [(1, 24), (2, 12), (4, 6)] {
            ok(Harness.run(args + ["--batch-size", String(batch), "--log-every", "0", "--save", dir + "/w\(np).safetensors"], np: np),
               file: file, line: line)
        }
        let w1 = try Harness.weights(dir + "/w1.safetensors")
        for np in [2, 4] {
            let d = Harness.maxAbsDifference(w1, try Harness.weights(dir + "/w\(np).safetensors"))
            print("\(what) world-size invariance: max |w(np\(np)) - w(np1)| = \(d)")
            XCTAssertLessThan(d, 1e-5, "\(what): np \(np) vs np 1", file: file, line: line)
        }
    }

    func testTablesAreWorldSizeInvariant() throws {
        let dir = temporaryDirectory()
        writeTable(dir + "/t.csv", rows: 300, seed: 7)
        // Every column but the target is a feature: the classification run sees y1 and y2 too.
        try assertWorldSizeInvariant(["--dataset", "csv:" + dir + "/t.csv", "--target", "label", "--model", "mlp:16",
                                      "--val-split", "0.2", "--stratify", "--max-steps", "40", "--lr", "0.05", "--momentum", "0.9"], "csv classification")
        try assertWorldSizeInvariant(["--dataset", "csv:" + dir + "/t.csv", "--target", "y1,y2", "--model", "mlp:16",
                                      "--val-split", "0.2", "--max-steps", "40", "--optimizer", "adam"], "csv regression")
    }

    func testImagesAreWorldSizeInvariantWithAugmentation() throws {
        let png = Self.shared + "/mnist-png"
        try XCTSkipUnless(FileManager.default.fileExists(atPath: png), "no \(png)")
        try assertWorldSizeInvariant(["--dataset", "images:" + png, "--augment", "crop:2,flip", "--normalize", "0.1307,0.3081",
                                      "--model", "mlp:32", "--max-steps", "30", "--lr", "0.05"], "image folder with augmentation")
    }

    /// The same 2,000 + 500 digits as PNG files (listed in order by the labels CSVs) and as IDX
    /// files give bitwise the same weights and the same accuracy.
    func testPNGPathEqualsIDXPath() throws {
        let png = Self.shared + "/mnist-png"
        try XCTSkipUnless(FileManager.default.fileExists(atPath: png), "no \(png)")
        let idx = temporaryDirectory()
        for (split, count) in [("train", 2000), ("t10k", 500)] {
            let images = try IDXFile.load(path: Harness.mnist + "/\(split)-images-idx3-ubyte.gz", expectedRank: 3)
            let labels = try IDXFile.load(path: Harness.mnist + "/\(split)-labels-idx1-ubyte.gz", expectedRank: 1)
            try Data(IDXFile.encode(dims: [count, 28, 28], bytes: Array(images.bytes.prefix(count * 784))))
                .write(to: URL(fileURLWithPath: idx + "/\(split)-images-idx3-ubyte"))
            try Data(IDXFile.encode(dims: [count], bytes: Array(labels.bytes.prefix(count))))
                .write(to: URL(fileURLWithPath: idx + "/\(split)-labels-idx1-ubyte"))
        }
        let dir = temporaryDirectory()
        let common = ["--model", "mlp:64", "--epochs", "2", "--lr", "0.05", "--momentum", "0.9", "--normalize", "0.1307,0.3081", "--log-every", "0"]
        let a = Harness.run(common + ["--data-dir", idx, "--save", dir + "/idx.safetensors"], np: 2)
        let b = Harness.run(common + ["--dataset", "images", "--labels", png + "/train-labels.csv", "--test-data", png + "/test-labels.csv",
                                      "--save", dir + "/png.safetensors"], np: 2)
        ok(a)
        ok(b)
        XCTAssertEqual(Harness.maxAbsDifference(try Harness.weights(dir + "/idx.safetensors"), try Harness.weights(dir + "/png.safetensors")), 0)
        let accA = Harness.accuracy(a.stdout), accB = Harness.accuracy(b.stdout)
        print("mnist-png: IDX path \(accA ?? -1), PNG path \(accB ?? -1)")
        XCTAssertNotNil(accA)
        XCTAssertEqual(accA, accB)
    }

    /// The last evaluation line of a training run's output.
    func lastEvalLine(_ stdout: String) -> String? {
        stdout.split(separator: "\n").last { $0.hasPrefix("Test set:") || $0.hasPrefix("Validation set:") }.map(String.init)
    }

    func testEvaluateAndPredictFromTheWeightsFileAlone() throws {
        let dir = temporaryDirectory()
        writeTable(dir + "/train.csv", rows: 400, seed: 1)
        writeTable(dir + "/test.csv", rows: 100, seed: 2)
        let weights = dir + "/w.safetensors"
        // Classification with a separate test table; evaluate from another folder, with no flags.
        let train = Harness.run(["--dataset", "csv:train.csv", "--test-data", "test.csv", "--target", "label", "--model", "mlp:32",
                                 "--epochs", "8", "--optimizer", "adam", "--lr", "0.01", "--log-every", "0", "--save", weights],
                                cwd: dir)
        ok(train)
        XCTAssertTrue(train.stdout.contains("task: classification (inferred"), train.stdout)
        XCTAssertTrue(train.stdout.contains("classes: bird, cat, dog"), train.stdout)
        let evaluated = Harness.run(["evaluate", "--weights", weights])
        ok(evaluated)
        XCTAssertNotNil(lastEvalLine(train.stdout))
        XCTAssertEqual(lastEvalLine(evaluated.stdout), lastEvalLine(train.stdout))
        // predict on the test table (its label column is ignored): the same accuracy as evaluate.
        let predicted = Harness.run(["predict", "--weights", weights, dir + "/test.csv", "--out", dir + "/p.csv"])
        ok(predicted)
        let rows = try String(contentsOfFile: dir + "/p.csv", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(rows.first, "input,predicted,p_bird,p_cat,p_dog")
        XCTAssertEqual(rows.count, 101)
        let truth = try String(contentsOfFile: dir + "/test.csv", encoding: .utf8).split(separator: "\n").dropFirst().map { $0.split(separator: ",")[3] }
        let correct = zip(rows.dropFirst(), truth).filter { $0.0.split(separator: ",")[1] == $0.1 }.count
        XCTAssertEqual(Harness.accuracy(evaluated.stdout), Double(correct) / 100)
        for row in rows.dropFirst() {
            let p = row.split(separator: ",").dropFirst(2).compactMap { Double($0) }
            XCTAssertEqual(p.reduce(0, +), 1, accuracy: 1e-4)
        }

        // Regression with a random validation split: evaluate repeats the split from the file.
        let reg = dir + "/r.safetensors"
        let r = Harness.run(["--dataset", "csv:" + dir + "/train.csv", "--target", "y1", "--model", "linear", "--val-split", "0.25",
                             "--epochs", "100", "--optimizer", "adam", "--lr", "0.1", "--log-every", "0", "--save", reg])
        ok(r)
        XCTAssertTrue(r.stdout.contains("task: regression (inferred"), r.stdout)
        let line = try XCTUnwrap(lastEvalLine(r.stdout))
        XCTAssertTrue(line.contains("R²"), line)
        XCTAssertEqual(lastEvalLine(Harness.run(["evaluate", "--weights", reg]).stdout), line)
        // y1 is linear in the features: a linear model explains almost all of it.
        XCTAssertGreaterThan(r2(line) ?? 0, 0.99, line)
        let values = Harness.run(["predict", "--weights", reg, dir + "/test.csv"])
        ok(values)
        XCTAssertEqual(values.stdout.split(separator: "\n").first, "input,y1")
        XCTAssertEqual(values.stdout.split(separator: "\n").count, 101)
    }

    func testImageModelEvaluatesAndPredictsFromTheWeightsFile() throws {
        let png = Self.shared + "/mnist-png"
        try XCTSkipUnless(FileManager.default.fileExists(atPath: png), "no \(png)")
        let dir = temporaryDirectory()
        let train = Harness.run(["--dataset", "images:" + png, "--normalize", "0.1307,0.3081", "--model", "mlp:64", "--epochs", "2",
                                 "--lr", "0.05", "--momentum", "0.9", "--log-every", "0", "--save", dir + "/w.safetensors"], np: 2)
        ok(train)
        let evaluated = Harness.run(["evaluate", "--weights", dir + "/w.safetensors"])
        ok(evaluated)
        XCTAssertEqual(lastEvalLine(evaluated.stdout), lastEvalLine(train.stdout))
        // Files in, predictions out, with the preprocessing (normalization) read from the weights
        // file: the same class and probability as `predict --index` on the same test images.
        let fm = FileManager.default
        let classes = try fm.contentsOfDirectory(atPath: png + "/test").sorted()
        var files: [String] = [], indices: [Int] = []
        var offset = 0
        for c in classes {
            let names = try fm.contentsOfDirectory(atPath: png + "/test/" + c).sorted()
            if c == "3" || c == "7" {
                files.append(png + "/test/\(c)/" + names[0])
                indices.append(offset)
            }
            offset += names.count
        }
        let p = Harness.run(["predict", "--weights", dir + "/w.safetensors"] + files)
        ok(p)
        let lines = p.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 3, p.stdout)
        for (row, index) in zip(lines.dropFirst(), indices) {
            let shown = Harness.run(["predict", "--weights", dir + "/w.safetensors", "--index", String(index)])
            ok(shown)
            let fields = row.split(separator: ",")
            let predicted = String(fields[1]), probability = Double(fields[2 + Int(predicted)!])!
            XCTAssertTrue(shown.stdout.contains(String(format: "Predicted: %@ (probability %.4f)", predicted, probability)), shown.stdout + "\n" + row)
        }
    }

    /// The R² in a regression evaluation line.
    func r2(_ line: String) -> Double? { Double(line.components(separatedBy: "R²: ").last?.split(separator: " ").first ?? "") }

    /// diabetes.csv, rows 1-342 to train and 343-442 to test: `--model linear` trained full-batch
    /// reaches the least-squares solution (numpy's lstsq on the same split: the test R² and MSE that
    /// scikit-learn's LinearRegression gives, 0.5552 and 2693.9), and an MLP learns something.
    func testDiabetesLinearRegressionReachesLeastSquares() throws {
        let source = Self.shared + "/diabetes/diabetes.csv"
        try XCTSkipUnless(FileManager.default.fileExists(atPath: source), "no \(source)")
        let dir = temporaryDirectory()
        let lines = try String(contentsOfFile: source, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 443)
        try (lines[0...342].joined(separator: "\n") + "\n").write(toFile: dir + "/train.csv", atomically: true, encoding: .utf8)
        try ([lines[0]] + lines[343...]).joined(separator: "\n").appending("\n").write(toFile: dir + "/test.csv", atomically: true, encoding: .utf8)
        let numpy = Harness.runCommand(["/usr/bin/python3", "-c", """
            import numpy as np
            tr = np.loadtxt('\(dir)/train.csv', delimiter=',', skiprows=1); te = np.loadtxt('\(dir)/test.csv', delimiter=',', skiprows=1)
            A = np.column_stack([tr[:, :10], np.ones(len(tr))]); w = np.linalg.lstsq(A, tr[:, 10], rcond=None)[0]
            p = np.column_stack([te[:, :10], np.ones(len(te))]) @ w; y = te[:, 10]
            print(1 - ((p - y) ** 2).sum() / ((y - y.mean()) ** 2).sum(), ((p - y) ** 2).mean())
            """])
        if numpy.status != 0 && ProcessInfo.processInfo.environment["DDP_REQUIRE_PYTHON"] != "1" { throw XCTSkip("no numpy: \(numpy.stderr)") }
        let reference = numpy.stdout.split(separator: " ").compactMap { Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        XCTAssertEqual(reference.count, 2, numpy.stdout + numpy.stderr)
        let common = ["--dataset", "csv:" + dir + "/train.csv", "--test-data", dir + "/test.csv", "--optimizer", "adam", "--log-every", "0"]
        let linear = Harness.run(common + ["--model", "linear", "--lr", "1", "--lr-schedule", "cosine", "--epochs", "3000", "--batch-size", "342"])
        ok(linear)
        let line = try XCTUnwrap(lastEvalLine(linear.stdout))
        print("diabetes linear: \(line); numpy least squares: R² \(reference.first ?? -1), MSE \(reference.last ?? -1)")
        XCTAssertEqual(try XCTUnwrap(r2(line)), reference.first ?? 0, accuracy: 1e-3, line)
        let mlp = Harness.run(common + ["--model", "mlp:32", "--lr", "0.01", "--epochs", "200", "--batch-size", "32"])
        ok(mlp)
        let mlpLine = try XCTUnwrap(lastEvalLine(mlp.stdout))
        print("diabetes mlp:32: \(mlpLine)")
        XCTAssertGreaterThan(try XCTUnwrap(r2(mlpLine)), 0.4, mlpLine)
    }

    /// optdigits (64 features 0..16, class in the last column, '#' comment line, no header): an MLP
    /// on the 2,999 training rows reaches 95% on the 1,797 test rows.
    func testOptdigitsMLP() throws {
        let dir = Self.shared + "/optdigits"
        try XCTSkipUnless(FileManager.default.fileExists(atPath: dir), "no \(dir)")
        let r = Harness.run(["--dataset", "csv:" + dir + "/optdigits.tra", "--test-data", dir + "/optdigits.tes", "--model", "mlp:128",
                             "--optimizer", "adam", "--epochs", "20", "--batch-size", "16", "--log-every", "0"], np: 2)
        ok(r)
        XCTAssertTrue(r.stdout.contains("64 inputs from 64 feature columns; classes: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9"), r.stdout)
        let accuracy = try XCTUnwrap(Harness.accuracy(r.stdout))
        print("optdigits mlp:128: test accuracy \(accuracy)")
        XCTAssertGreaterThan(accuracy, 0.95)
    }

    func testBadOwnDataIsOneClearLine() throws {
        let dir = temporaryDirectory()
        try "a,b,y\n1,2,0\n3,4\n".write(toFile: dir + "/ragged.csv", atomically: true, encoding: .utf8)
        assertCleanFailure(["--dataset", "csv:" + dir + "/ragged.csv"], mentions: "row 3", status: 1)
        try "a,b,y\n1,2,0\n3,x,1\n".write(toFile: dir + "/nan.csv", atomically: true, encoding: .utf8)
        writeTable(dir + "/t.csv", rows: 50, seed: 3)
        assertCleanFailure(["--dataset", "csv:" + dir + "/t.csv", "--target", "nope"], mentions: "nope")
        assertCleanFailure(["--dataset", "csv:" + dir + "/t.csv", "--augment", "flip"], mentions: "--augment", status: 2)
        assertCleanFailure(["--dataset", "csv:" + dir + "/t.csv", "--stratify"], mentions: "--stratify", status: 2)
        assertCleanFailure(["--dataset", "csv:" + dir + "/t.csv", "--target", "label", "--loss", "huber"], mentions: "regression loss", status: 2)
        assertCleanFailure(["--dataset", "csv:" + dir + "/missing.csv"], mentions: "missing.csv", status: 1)
        // An image folder with a corrupt PNG and one of another size.
        let images = dir + "/img"
        for c in ["a", "b"] { try FileManager.default.createDirectory(atPath: images + "/" + c, withIntermediateDirectories: true) }
        let small = DecodedImage(width: 4, height: 4, channels: 1, pixels: [UInt8](repeating: 9, count: 16))
        try Data(ImageFile.encodePNG(small)).write(to: URL(fileURLWithPath: images + "/a/1.png"))
        try Data(ImageFile.encodePNG(DecodedImage(width: 5, height: 4, channels: 1, pixels: [UInt8](repeating: 9, count: 20))))
            .write(to: URL(fileURLWithPath: images + "/b/2.png"))
        assertCleanFailure(["--dataset", "images:" + images], mentions: "b/2.png: image is 4x5", status: 1)
        XCTAssertEqual(Harness.run(["--dataset", "images:" + images, "--image-size", "4x4", "--max-steps", "1", "--log-every", "0"]).status, 0)
        try Data([0x89, 0x50, 0x4E, 0x47, 1, 2, 3]).write(to: URL(fileURLWithPath: images + "/b/2.png"))
        assertCleanFailure(["--dataset", "images:" + images], mentions: "2.png", status: 1)
    }
}

/// A tiny seeded generator for test tables.
struct SplitMix {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }
}
