import Foundation
import Engine

/// `--dataset mnist|fashion-mnist|synthetic:N`.
public enum DatasetKind: Equatable, CustomStringConvertible, Sendable {
    case mnist, fashionMNIST
    case synthetic(Int)

    public init(parsing text: String) throws {
        switch text.lowercased() {
        case "mnist": self = .mnist
        case "fashion-mnist", "fashion_mnist", "fashionmnist": self = .fashionMNIST
        default:
            if text.hasPrefix("synthetic:"), let n = Int(text.dropFirst(10)), n > 0, n <= 100_000_000 {
                self = .synthetic(n)
            } else if text.hasPrefix("synthetic") {
                throw DataError("invalid --dataset '\(text)': synthetic needs a positive sample count, e.g. synthetic:10000")
            } else {
                throw DataError("invalid --dataset '\(text)': expected mnist, fashion-mnist or synthetic:N")
            }
        }
    }

    public var description: String {
        switch self {
        case .mnist: return "mnist"
        case .fashionMNIST: return "fashion-mnist"
        case .synthetic(let n): return "synthetic:\(n)"
        }
    }

    public var classNames: [String] {
        switch self {
        case .mnist, .synthetic: return (0..<10).map(String.init)
        case .fashionMNIST:
            return ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
        }
    }
}

/// The four files of the standard MNIST layout, each raw or .gz.
public enum MNISTFiles {
    public static let trainImages = "train-images-idx3-ubyte"
    public static let trainLabels = "train-labels-idx1-ubyte"
    public static let testImages = "t10k-images-idx3-ubyte"
    public static let testLabels = "t10k-labels-idx1-ubyte"

    /// `dir/base` or `dir/base.gz`, whichever exists.
    public static func locate(_ base: String, in dir: String) throws -> String {
        let fm = FileManager.default
        for candidate in [base, base + ".gz"] {
            let p = (dir as NSString).appendingPathComponent(candidate)
            if fm.fileExists(atPath: p) { return p }
        }
        throw DataError("\(dir): missing \(base)[.gz] (set --data-dir or DDP_DATA_DIR, or run 'ddp-train download')")
    }
}

/// The train and evaluation sets of a run.
public struct DataSplits {
    public let train: Dataset
    public let eval: Dataset
    /// "test" or "validation", for messages.
    public let evalName: String

    public init(train: Dataset, eval: Dataset, evalName: String) {
        self.train = train
        self.eval = eval
        self.evalName = evalName
    }

    /// Loads a dataset. `holdout` > 0 makes the last `holdout` training samples the validation set
    /// in place of the test files; `normalize` is [mean, std] for both sets.
    public static func load(kind: DatasetKind, dataDir: String, holdout: Int, seed: UInt64, normalize: [Float]? = nil) throws -> DataSplits {
        let splits = try loadRaw(kind: kind, dataDir: dataDir, holdout: holdout, seed: seed)
        try splits.validate()
        if let n = normalize, n.count == 2 {
            for d in [splits.train, splits.eval] { d.mean = n[0]; d.std = n[1] }
        }
        return splits
    }

    /// The splits as a whole, before anything is sized from them: neither is empty, and both have
    /// the same sample shape and classes (the model's input and output). Labels were range-checked
    /// when each set was made.
    public func validate() throws {
        guard train.count > 0 else { throw DataError("the training set is empty: nothing to train on") }
        guard eval.count > 0 else { throw DataError("the \(evalName) set is empty: nothing to evaluate on") }
        guard eval.sampleShape == train.sampleShape else {
            throw DataError("\(evalName) samples have shape \(eval.sampleShape.dims.map(String.init).joined(separator: "x")) but "
                            + "training samples \(train.sampleShape.dims.map(String.init).joined(separator: "x")); every split must have the model's input shape")
        }
        guard eval.classes == train.classes else {
            throw DataError("the \(evalName) set has \(eval.classes) classes, the training set \(train.classes)")
        }
    }

    static func loadRaw(kind: DatasetKind, dataDir: String, holdout: Int, seed: UInt64) throws -> DataSplits {
        var train: Dataset, test: Dataset
        switch kind {
        case .synthetic(let n):
            train = Synthetic.make(count: n, seed: seed, split: 0)
            test = Synthetic.make(count: max(n / 5, 100), seed: seed, split: 1)
        case .mnist, .fashionMNIST:
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: dataDir, isDirectory: &isDir), isDir.boolValue else {
                throw DataError("data directory '\(dataDir)' does not exist (set --data-dir or DDP_DATA_DIR, or run 'ddp-train download --dir \(dataDir)')")
            }
            train = try loadPair(kind: kind, dir: dataDir, images: MNISTFiles.trainImages, labels: MNISTFiles.trainLabels, name: "train")
            test = try loadPair(kind: kind, dir: dataDir, images: MNISTFiles.testImages, labels: MNISTFiles.testLabels, name: "test")
        }
        if holdout > 0 {
            guard holdout < train.count else {
                throw DataError("--holdout \(holdout) leaves no training samples (the training set has \(train.count))")
            }
            let full = train
            train = try full.slice(0..<(full.count - holdout), name: "train")
            test = try full.slice((full.count - holdout)..<full.count, name: "validation")
            return DataSplits(train: train, eval: test, evalName: "validation")
        }
        return DataSplits(train: train, eval: test, evalName: "test")
    }

    static func loadPair(kind: DatasetKind, dir: String, images: String, labels: String, name: String) throws -> Dataset {
        let imagePath = try MNISTFiles.locate(images, in: dir)
        let labelPath = try MNISTFiles.locate(labels, in: dir)
        let img = try IDXFile.load(path: imagePath, expectedRank: 3)
        let lab = try IDXFile.load(path: labelPath, expectedRank: 1)
        guard img.dims[0] == lab.dims[0] else {
            throw DataError("\((imagePath as NSString).lastPathComponent) has \(img.dims[0]) images but \((labelPath as NSString).lastPathComponent) has \(lab.dims[0]) labels")
        }
        guard img.dims[1] > 0, img.dims[2] > 0 else { throw DataError("\(imagePath): empty image shape \(img.dims)") }
        return try Dataset(name: name, sampleShape: Shape(1, img.dims[1], img.dims[2]), classNames: kind.classNames,
                           pixels: img.bytes, labels: lab.bytes.map { Int32($0) })
    }
}
