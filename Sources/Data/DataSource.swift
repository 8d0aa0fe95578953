import Foundation
import Engine

/// Everything that says which data a run reads and how it becomes model input: the data flags,
/// parsed. A weights file records it (with paths made absolute) together with what was fitted on
/// the training data (`Preprocessing`), so evaluate and predict repeat the training run's
/// preprocessing from the file alone.
public struct DataSource: Codable, Equatable, Sendable {
    /// `--dataset`, as given (`DatasetKind(parsing:)` reads it).
    public var dataset = "mnist"
    /// `--data-dir`: the IDX folder of mnist and fashion-mnist.
    public var dataDir = "./data/mnist"
    /// `--test-data`: a test table (csv) or a test labels CSV (images with `--labels`).
    public var testData: String?
    /// `--labels`: a CSV of `file,label` rows listing the training images.
    public var labels: String?
    /// `--target`: the target column(s) of a table, by name or 0-based index.
    public var target: String?
    /// `--task`: classification or regression (nil: inferred from the target column).
    public var task: TableSchema.Task?
    /// `--header` / `--no-header` (nil: detected).
    public var header: Bool?
    /// Standardize numeric table features with the training table's mean and std.
    public var standardize = true
    /// `--table-cache` / `--no-table-cache`: encode a table once into a memory-mapped binary cache
    /// beside it (nil: for tables of 64 MiB or more).
    public var tableCache: Bool?
    /// `--image-size HxW`: resize every image (nil: all must have the first image's size).
    public var imageSize: [Int]?
    /// `--normalize` for byte images: one MEAN,STD or per-channel means then stds.
    public var normalize: Normalization?
    /// `--augment` (training images only).
    public var augment: Augmentation?
    /// `--val-split F`: a seeded random fraction of the training data for validation.
    public var valSplit: Double?
    /// `--stratify`: keep class proportions in the `--val-split`.
    public var stratify = false
    /// `--holdout N`: the last N training samples for validation.
    public var holdout = 0
    /// The run's seed (synthetic data and the random split).
    public var seed: UInt64 = 1

    public init() {}

    public var kind: DatasetKind { get throws { try DatasetKind(parsing: dataset) } }

    /// The cross-checks between data flags, each a one-line message.
    public func validate() throws {
        let kind = try self.kind
        if let f = valSplit, !(f > 0 && f < 1) { throw DataError("invalid --val-split \(f): must be between 0 and 1") }
        guard holdout >= 0 else { throw DataError("invalid --holdout \(holdout): must be >= 0") }
        if valSplit != nil && holdout > 0 { throw DataError("--val-split and --holdout both choose the validation set; give one") }
        if stratify && valSplit == nil { throw DataError("--stratify applies to --val-split; give --val-split F") }
        if let s = imageSize, s.count != 2 || s.contains(where: { $0 < 1 || $0 > 4096 }) {
            throw DataError("invalid --image-size: expected HxW, each 1...4096")
        }
        let isTable: Bool
        if case .csv = kind { isTable = true } else { isTable = false }
        if !isTable {
            if target != nil { throw DataError("--target applies to csv tables (--dataset csv:PATH)") }
            if task == .regression { throw DataError("--task regression needs a table (--dataset csv:PATH)") }
            if header != nil { throw DataError("--header and --no-header apply to csv tables") }
            if tableCache != nil { throw DataError("--table-cache and --no-table-cache apply to csv tables") }
        } else {
            if imageSize != nil || augment != nil { throw DataError("--image-size and --augment apply to images, not tables") }
            if normalize != nil { throw DataError("--normalize applies to images; tables are standardized (--no-standardize turns it off)") }
        }
        if case .images(let dir) = kind {
            if dir.isEmpty && labels == nil { throw DataError("--dataset images needs a folder (images:DIR) or --labels FILE.csv") }
            if testData != nil && labels == nil { throw DataError("--test-data with images names a labels CSV; give --labels for the training images too") }
        } else {
            if labels != nil { throw DataError("--labels applies to images (--dataset images)") }
            if testData != nil && !isTable { throw DataError("--test-data applies to csv tables and labelled images") }
        }
    }

    /// The same source with every path absolute, so a weights file finds its data from anywhere.
    public var resolved: DataSource {
        var s = self
        func abs(_ p: String) -> String { p.hasPrefix("/") || p.isEmpty ? p : FileManager.default.currentDirectoryPath + "/" + p }
        if let k = try? kind {
            switch k {
            case .csv(let p): s.dataset = "csv:" + abs(p)
            case .images(let d): s.dataset = d.isEmpty ? "images" : "images:" + abs(d)
            default: break
            }
        }
        s.dataDir = abs(dataDir)
        s.testData = testData.map(abs)
        s.labels = labels.map(abs)
        return s
    }
}

/// What was fitted on the training data and must be applied unchanged to every other set: the
/// input shape, the target space (class names), and for tables the schema (column order, categories,
/// standardization). Recorded beside the weights with the `DataSource`.
public struct Preprocessing: Codable, Equatable, Sendable {
    public var sampleShape: [Int]
    public var space: TargetSpace
    public var table: TableSchema?

    public init(sampleShape: [Int], space: TargetSpace, table: TableSchema?) {
        self.sampleShape = sampleShape
        self.space = space
        self.table = table
    }
}
