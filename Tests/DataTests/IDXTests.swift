import Data
import Engine
import Foundation
import XCTest

/// The real MNIST folder for tests: $DDP_DATA_DIR, else ../shared/data/mnist-10k beside the package.
func sharedMNIST() -> String {
    if let d = ProcessInfo.processInfo.environment["DDP_DATA_DIR"], !d.isEmpty { return d }
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    return root.deletingLastPathComponent().appendingPathComponent("shared/data/mnist-10k").path
}

extension XCTestCase {
    /// A fresh folder for this test's files, removed when the test ends (repeated runs would
    /// otherwise fill the disk).
    func temporaryDirectory() -> String {
        let dir = NSTemporaryDirectory() + "ddp-test-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }
}

final class IDXTests: XCTestCase {
    func testParsesImagesAndLabels() throws {
        let img = try IDXFile(bytes: IDXFile.encode(dims: [2, 2, 3], bytes: Array(0..<12)), name: "x", expectedRank: 3)
        XCTAssertEqual(img.dims, [2, 2, 3])
        XCTAssertEqual(img.bytes, Array(0..<12))
        let lab = try IDXFile(bytes: IDXFile.encode(dims: [3], bytes: [7, 1, 9]), name: "y", expectedRank: 1)
        XCTAssertEqual(lab.bytes, [7, 1, 9])
    }

    func assertError(_ bytes: [UInt8], rank: Int, contains text: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try IDXFile(bytes: bytes, name: "f", expectedRank: rank), file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains(text), "'\(error)' should mention '\(text)'", file: file, line: line)
        }
    }

    func testErrors() {
        assertError([], rank: 1, contains: "empty file")
        assertError(IDXFile.encode(dims: [2, 2, 2], bytes: Array(repeating: 0, count: 8)), rank: 1, contains: "wrong magic number 0x00000803")
        assertError(IDXFile.encode(dims: [5], bytes: [1, 2]), rank: 1, contains: "truncated")
        assertError([0, 0, 8, 3, 0, 0], rank: 3, contains: "truncated IDX header")
        assertError(IDXFile.encode(dims: [1], bytes: [1, 2]), rank: 1, contains: "unexpected bytes")
        assertError(IDXFile.encode(dims: [0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF], bytes: []), rank: 3, contains: "too large")
    }

    func testReadsRealGzippedMNIST() throws {
        let dir = sharedMNIST()
        let labels = try IDXFile.load(path: dir + "/train-labels-idx1-ubyte.gz", expectedRank: 1)
        XCTAssertEqual(labels.dims, [8000])
        XCTAssert(labels.bytes.allSatisfy { $0 < 10 })
        let images = try IDXFile.load(path: dir + "/t10k-images-idx3-ubyte.gz", expectedRank: 3)
        XCTAssertEqual(images.dims, [2000, 28, 28])
    }

    func testTruncatedGzip() throws {
        let whole = try XCTUnwrap(FileManager.default.contents(atPath: sharedMNIST() + "/train-images-idx3-ubyte.gz"))
        let path = temporaryDirectory() + "/cut.gz"
        _ = FileManager.default.createFile(atPath: path, contents: whole.prefix(whole.count / 2))
        XCTAssertThrowsError(try IDXFile.load(path: path, expectedRank: 3)) { error in
            XCTAssertTrue("\(error)".contains("truncated gzip"), "\(error)")
        }
    }

    func source(_ dataset: String, dir: String, holdout: Int) -> DataSource {
        var s = DataSource()
        s.dataset = dataset
        s.dataDir = dir
        s.holdout = holdout
        return s
    }

    func testFolderErrors() throws {
        let dir = temporaryDirectory()
        XCTAssertThrowsError(try DataSplits.load(source("mnist", dir: dir + "/nope", holdout: 0))) {
            XCTAssertTrue("\($0)".contains("does not exist"), "\($0)")
        }
        XCTAssertThrowsError(try DataSplits.load(source("mnist", dir: dir, holdout: 0))) {
            XCTAssertTrue("\($0)".contains("missing train-images-idx3-ubyte"), "\($0)")
        }
        // Three images, two labels.
        func put(_ name: String, _ bytes: [UInt8]) { _ = FileManager.default.createFile(atPath: dir + "/" + name, contents: Data(bytes)) }
        put("train-images-idx3-ubyte", IDXFile.encode(dims: [3, 2, 2], bytes: Array(repeating: 9, count: 12)))
        put("train-labels-idx1-ubyte", IDXFile.encode(dims: [2], bytes: [1, 2]))
        put("t10k-images-idx3-ubyte", IDXFile.encode(dims: [1, 2, 2], bytes: Array(repeating: 9, count: 4)))
        put("t10k-labels-idx1-ubyte", IDXFile.encode(dims: [1], bytes: [1]))
        XCTAssertThrowsError(try DataSplits.load(source("mnist", dir: dir, holdout: 0))) {
            XCTAssertTrue("\($0)".contains("has 3 images but train-labels-idx1-ubyte has 2 labels"), "\($0)")
        }
        put("train-labels-idx1-ubyte", IDXFile.encode(dims: [3], bytes: [1, 2, 11]))
        XCTAssertThrowsError(try DataSplits.load(source("mnist", dir: dir, holdout: 0))) {
            XCTAssertTrue("\($0)".contains("label 11 out of range"), "\($0)")
        }
        put("train-labels-idx1-ubyte", IDXFile.encode(dims: [3], bytes: [1, 2, 3]))
        let splits = try DataSplits.load(source("fashion-mnist", dir: dir, holdout: 1))
        XCTAssertEqual(splits.train.count, 2)
        XCTAssertEqual(splits.eval.count, 1)
        XCTAssertEqual(splits.evalName, "validation")
        XCTAssertEqual(splits.eval.label(0), 3)
        XCTAssertEqual(splits.train.classNames[0], "T-shirt/top")
    }

    func testGatherNormalizes() throws {
        let d = try Dataset(name: "d", sampleShape: Shape(2), classNames: ["a", "b"], pixels: [0, 255, 51, 102], labels: [1, 0])
        var input = [Float](repeating: 0, count: 4)
        let targets = TargetBuffer(capacity: 2, width: 2)
        let idx: [Int32] = [1, 0]
        d.gather(idx, count: 2, into: &input, targets: targets)
        XCTAssertEqual(input, [0.2, 0.4, 0, 1])
        XCTAssertEqual([targets.classes[0], targets.classes[1]], [0, 1])
        d.normalization = Normalization(mean: [0.5], std: [0.5])
        d.gather(idx, count: 1, into: &input, targets: targets)
        XCTAssertEqual(input[0], -0.6, accuracy: 1e-6)
    }

    func testSyntheticIsSeededAndDatasetKindParses() throws {
        let a = Synthetic.make(count: 50, seed: 3, split: 0), b = Synthetic.make(count: 50, seed: 3, split: 0)
        XCTAssertEqual((0..<50).map { a.label($0) }, (0..<50).map { b.label($0) })
        XCTAssertEqual(Array(a.image(7)!), Array(b.image(7)!))
        XCTAssertNotEqual((0..<50).map { Synthetic.make(count: 50, seed: 4, split: 0).label($0) }, (0..<50).map { a.label($0) })
        XCTAssertEqual(try DatasetKind(parsing: "synthetic:1000"), .synthetic(1000))
        XCTAssertEqual(try DatasetKind(parsing: "fashion-mnist"), .fashionMNIST)
        XCTAssertThrowsError(try DatasetKind(parsing: "cifar"))
        XCTAssertThrowsError(try DatasetKind(parsing: "synthetic:x"))
    }
}
