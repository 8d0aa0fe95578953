import Foundation
import Engine

/// `--dataset mnist|fashion-mnist|synthetic:N|csv:PATH|images:DIR|images`.
public enum DatasetKind: Equatable, CustomStringConvertible, Sendable {
    case mnist, fashionMNIST
    case synthetic(Int)
    /// A CSV or TSV table; the target column and the task come from `DataSource`.
    case csv(String)
    /// Images in torchvision's ImageFolder layout under DIR, or (empty DIR) listed by `--labels`.
    case images(String)

    public init(parsing text: String) throws {
        switch text.lowercased() {
        case "mnist": self = .mnist
        case "fashion-mnist", "fashion_mnist", "fashionmnist": self = .fashionMNIST
        default:
            if text.hasPrefix("synthetic:"), let n = Int(text.dropFirst(10)), n > 0, n <= 100_000_000 {
                self = .synthetic(n)
            } else if text.hasPrefix("csv:") || text.hasPrefix("tsv:") {
                guard text.count > 4 else { throw DataError("invalid --dataset '\(text)': csv needs a path, e.g. csv:data.csv") }
                self = .csv(String(text.dropFirst(4)))
            } else if text.hasPrefix("images:") {
                self = .images(String(text.dropFirst(7)))
            } else if text == "images" {
                self = .images("")
            } else if text.hasPrefix("synthetic") {
                throw DataError("invalid --dataset '\(text)': synthetic needs a positive sample count, e.g. synthetic:10000")
            } else {
                throw DataError("invalid --dataset '\(text)': expected mnist, fashion-mnist, synthetic:N, csv:PATH or images:DIR")
            }
        }
    }

    public var description: String {
        switch self {
        case .mnist: return "mnist"
        case .fashionMNIST: return "fashion-mnist"
        case .synthetic(let n): return "synthetic:\(n)"
        case .csv(let p): return "csv:\(p)"
        case .images(let d): return d.isEmpty ? "images" : "images:\(d)"
        }
    }

    /// Debian's package dataset-fashion-mnist installs the full Fashion-MNIST here.
    public static let debianFashionMNIST = "/usr/share/datasets/fashion-mnist"

    /// Where the IDX files are when `--data-dir` does not say: for mnist `$DDP_DATA_DIR`, else
    /// ./data/mnist; for fashion-mnist Debian's copy when it is installed, else ./data/fashion-mnist.
    /// (`DDP_DATA_DIR` names the MNIST folder, so Fashion-MNIST never reads or writes there.)
    public func defaultDirectory(environment: [String: String]) -> String {
        switch self {
        case .fashionMNIST:
            return FileManager.default.fileExists(atPath: DatasetKind.debianFashionMNIST + "/train-images-idx3-ubyte.gz")
                ? DatasetKind.debianFashionMNIST : "./data/fashion-mnist"
        default:
            return environment["DDP_DATA_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "./data/mnist"
        }
    }

    /// Whether samples are images (augmentation applies) rather than table rows.
    public var isImages: Bool { if case .csv = self { return false } else { return true } }

    /// The fixed class names of the built-in datasets (nil: they come from the data).
    public var classNames: [String]? {
        switch self {
        case .csv, .images: return nil
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
    public static func locate(_ base: String, in dir: String, kind: DatasetKind = .mnist) throws -> String {
        let fm = FileManager.default
        for candidate in [base, base + ".gz"] {
            let p = (dir as NSString).appendingPathComponent(candidate)
            if fm.fileExists(atPath: p) { return p }
        }
        throw DataError("\(dir): missing \(base)[.gz] (\(howToGet(kind, dir: dir)))")
    }

    /// How to get the files of `kind` into `dir`, for messages.
    public static func howToGet(_ kind: DatasetKind, dir: String) -> String {
        kind == .fashionMNIST
            ? "apt-get install dataset-fashion-mnist puts them in \(DatasetKind.debianFashionMNIST), read by default; "
                + "or 'ddp-train download --dataset fashion-mnist --dir \(dir)', or --data-dir"
            : "set --data-dir or DDP_DATA_DIR, or run 'ddp-train download --dir \(dir)'"
    }
}
