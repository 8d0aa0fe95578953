import Engine

/// What a model predicts for a dataset: one of `names` (classification, a class index per sample),
/// or one float per name (regression). The model's output width is `names.count` either way.
public enum TargetSpace: Equatable, Codable, Sendable {
    case classes(names: [String])
    case values(names: [String])

    public var names: [String] {
        switch self {
        case .classes(let n), .values(let n): return n
        }
    }

    public var width: Int { names.count }
    public var isClassification: Bool { if case .classes = self { return true } else { return false } }
}

/// Per-channel input normalization of byte samples, as torchvision's `Normalize` after `ToTensor`:
/// `(pixel / 255 - mean[c]) / std[c]`. One value applies to every channel.
public struct Normalization: Equatable, Codable, Sendable {
    public var mean: [Float]
    public var std: [Float]

    public init(mean: [Float], std: [Float]) {
        self.mean = mean
        self.std = std
    }

    public static let identity = Normalization(mean: [0], std: [1])

    /// `MEAN,STD` for every channel, or `M1,...,MC,S1,...,SC` per channel.
    public init(parsing text: String) throws {
        let parts = text.split(separator: ",").map { Float($0.trimmingCharacters(in: .whitespaces)) }
        guard parts.count >= 2, parts.count % 2 == 0, parts.allSatisfy({ $0?.isFinite == true }) else {
            throw DataError("invalid --normalize '\(text)': expected MEAN,STD or M1,...,MC,S1,...,SC (finite numbers), e.g. 0.1307,0.3081")
        }
        let values = parts.map { $0! }
        self.init(mean: Array(values[..<(values.count / 2)]), std: Array(values[(values.count / 2)...]))
        guard std.allSatisfy({ $0 > 0 }) else { throw DataError("invalid --normalize '\(text)': every STD must be > 0") }
    }

    /// Both lists as one, as `--normalize` takes them.
    public var flat: [Float] { mean + std }
    public var description: String { flat.map { "\($0)" }.joined(separator: ",") }
}

/// Where a batch's targets go: class indices or float values, room for the largest batch.
public final class TargetBuffer {
    public let classes: UnsafeMutablePointer<Int32>
    public let values: UnsafeMutablePointer<Float>
    public let capacity: Int
    public let width: Int

    public init(capacity: Int, width: Int) {
        self.capacity = max(capacity, 1)
        self.width = max(width, 1)
        classes = .allocate(capacity: self.capacity)
        classes.initialize(repeating: 0, count: self.capacity)
        values = .allocate(capacity: self.capacity * self.width)
        values.initialize(repeating: 0, count: self.capacity * self.width)
    }

    deinit {
        classes.deallocate()
        values.deallocate()
    }
}

/// Where a dataset's samples and targets live, at addresses that do not move: memory the loader
/// filled (arrays copied in once), or a memory-mapped table cache (`TableCache`), whose pages are
/// read from disk only when a batch touches them. Exactly one of `bytes` and `floats` is set, and
/// one of `classes` and `values`.
public final class SampleStorage {
    public let rows: Int
    public let bytes: UnsafePointer<UInt8>?
    public let floats: UnsafePointer<Float>?
    public let classes: UnsafePointer<Int32>?
    public let values: UnsafePointer<Float>?
    private let release: () -> Void

    public init(rows: Int, bytes: UnsafePointer<UInt8>?, floats: UnsafePointer<Float>?, classes: UnsafePointer<Int32>?,
                values: UnsafePointer<Float>?, release: @escaping () -> Void) {
        self.rows = rows
        self.bytes = bytes
        self.floats = floats
        self.classes = classes
        self.values = values
        self.release = release
    }

    /// Copies of the loader's arrays.
    public convenience init(rows: Int, samples: Dataset.Samples, targets: Dataset.Targets) {
        func copy<T>(_ a: [T]) -> UnsafeMutablePointer<T> {
            let p = UnsafeMutablePointer<T>.allocate(capacity: max(a.count, 1))
            a.withUnsafeBufferPointer { if let base = $0.baseAddress { p.initialize(from: base, count: a.count) } }
            return p
        }
        var owned: [UnsafeMutableRawPointer] = []
        var b: UnsafePointer<UInt8>?, f: UnsafePointer<Float>?, c: UnsafePointer<Int32>?, v: UnsafePointer<Float>?
        switch samples {
        case .bytes(let x): let p = copy(x); owned.append(UnsafeMutableRawPointer(p)); b = UnsafePointer(p)
        case .floats(let x): let p = copy(x); owned.append(UnsafeMutableRawPointer(p)); f = UnsafePointer(p)
        }
        switch targets {
        case .classes(let x): let p = copy(x); owned.append(UnsafeMutableRawPointer(p)); c = UnsafePointer(p)
        case .values(let x): let p = copy(x); owned.append(UnsafeMutableRawPointer(p)); v = UnsafePointer(p)
        }
        self.init(rows: rows, bytes: b, floats: f, classes: c, values: v) { for p in owned { p.deallocate() } }
    }

    deinit { release() }
}

/// Samples of one shape with their targets, held compactly: images as the bytes they came in (1/4
/// of the memory of floats, normalized while a batch is gathered), tables as the floats their
/// preprocessing produced. A split or shard is a list of rows of the same storage, not a copy. A
/// batch is gathered into the model's input buffer.
public final class Dataset {
    /// What a loader hands over.
    public enum Samples {
        /// (C, H, W) bytes per sample, normalized per channel when gathered.
        case bytes([UInt8])
        /// Ready model inputs, `sampleShape.count` floats per sample.
        case floats([Float])
    }

    public enum Targets {
        case classes([Int32])
        /// `space.width` floats per sample.
        case values([Float])
    }

    public let name: String
    public let sampleShape: Shape
    public let space: TargetSpace
    public let count: Int
    public let storage: SampleStorage
    /// The storage row of each sample (nil: sample i is row i).
    private let rowMap: [Int32]?
    public var normalization = Normalization.identity { didSet { updateTable() } }
    /// Random crop and flip applied by `gather` when it is given an epoch (training only).
    public var augmentation: Augmentation?
    /// Byte to input value per channel: `table[c * 256 + p]`.
    private var table: [Float] = []

    /// A dataset over `storage`, rows `rowMap` (nil: all), after checking that every class index
    /// is in range.
    public init(name: String, sampleShape: Shape, space: TargetSpace, storage: SampleStorage, rowMap: [Int32]? = nil) throws {
        guard (storage.classes != nil) == space.isClassification, space.width > 0 else {
            throw DataError("\(name): the targets do not match the target space \(space)")
        }
        // A subset's rows were checked with the whole storage.
        if rowMap == nil, let classes = storage.classes, case .classes(let names) = space {
            for r in 0..<storage.rows where classes[r] < 0 || Int(classes[r]) >= names.count {
                throw DataError("\(name): label \(classes[r]) out of range 0..<\(names.count)")
            }
        }
        self.name = name
        self.sampleShape = sampleShape
        self.space = space
        self.storage = storage
        self.rowMap = rowMap
        count = rowMap?.count ?? storage.rows
        updateTable()
    }

    public convenience init(name: String, sampleShape: Shape, space: TargetSpace, samples: Samples, targets: Targets) throws {
        let n = sampleShape.count
        let rows: Int
        switch targets {
        case .classes(let c):
            rows = c.count
            guard case .classes(let names) = space else { throw DataError("\(name): class targets need a class list") }
            for l in c where l < 0 || Int(l) >= names.count {
                throw DataError("\(name): label \(l) out of range 0..<\(names.count)")
            }
        case .values(let v):
            guard case .values = space, space.width > 0 else { throw DataError("\(name): value targets need target names") }
            guard v.count % space.width == 0 else { throw DataError("\(name): \(v.count) target values for \(space.width) targets per sample") }
            rows = v.count / space.width
        }
        let stored: Int
        switch samples {
        case .bytes(let b): stored = b.count
        case .floats(let f): stored = f.count
        }
        guard stored == rows * n else {
            throw DataError("\(name): \(stored / max(n, 1)) samples but \(rows) targets")
        }
        try self.init(name: name, sampleShape: sampleShape, space: space, storage: SampleStorage(rows: rows, samples: samples, targets: targets))
    }

    /// A classification set of byte images (the IDX and image-folder loaders).
    public convenience init(name: String, sampleShape: Shape, classNames: [String], pixels: [UInt8], labels: [Int32]) throws {
        try self.init(name: name, sampleShape: sampleShape, space: .classes(names: classNames), samples: .bytes(pixels), targets: .classes(labels))
    }

    /// Channels of a (C, H, W) sample; 1 for flat features.
    public var channels: Int { sampleShape.rank == 3 ? sampleShape.dims[0] : 1 }
    public var classNames: [String] { space.names }
    public var isImage: Bool { storage.bytes != nil }

    private func updateTable() {
        let c = channels
        table = [Float](repeating: 0, count: c * 256)
        for ch in 0..<c {
            let m = normalization.mean[normalization.mean.count == 1 ? 0 : min(ch, normalization.mean.count - 1)]
            let s = normalization.std[normalization.std.count == 1 ? 0 : min(ch, normalization.std.count - 1)]
            for p in 0..<256 { table[ch * 256 + p] = (Float(p) / 255 - m) / s }
        }
    }

    /// The storage row of sample i.
    @inline(__always)
    public func row(_ i: Int) -> Int { rowMap.map { Int($0[i]) } ?? i }

    /// The samples at `indices`, in that order, as a new dataset over the same storage (splits).
    public func subset(_ indices: [Int], name: String) throws -> Dataset {
        let d = try Dataset(name: name, sampleShape: sampleShape, space: space, storage: storage,
                            rowMap: indices.map { Int32(row($0)) })
        d.normalization = normalization
        d.augmentation = augmentation
        return d
    }

    /// Samples `range` as a new dataset (the holdout split).
    public func slice(_ range: Range<Int>, name: String) throws -> Dataset { try subset(Array(range), name: name) }

    /// Class index of sample i (classification sets).
    public func label(_ i: Int) -> Int32? { storage.classes.map { $0[row(i)] } }

    /// Writes samples `indices[0..<k]` into `input` (k, sampleShape) and their targets into `targets`
    /// at rows `offset...`. With an `epoch`, the training set's augmentation (if any) is applied,
    /// keyed on (seed, epoch, sample index): the same whichever rank gathers the sample.
    @inline(__always)
    public func gather(_ indices: UnsafePointer<Int32>, count k: Int, into input: UnsafeMutablePointer<Float>,
                       targets out: TargetBuffer, offset: Int = 0, epoch: Int? = nil) {
        let n = sampleShape.count, w = space.width
        for r in 0..<k {
            let i = Int(indices[r]), at = row(i)
            let dst = input + r * n
            if let pixels = storage.bytes {
                let src = pixels + at * n
                table.withUnsafeBufferPointer { value in
                    if let a = augmentation, let epoch, a.isActive {
                        a.apply(src, into: dst, shape: sampleShape, table: value.baseAddress!, sample: i, epoch: epoch)
                    } else {
                        let plane = n / channels
                        for c in 0..<channels {
                            let t = value.baseAddress! + c * 256
                            for j in (c * plane)..<((c + 1) * plane) { dst[j] = t[Int(src[j])] }
                        }
                    }
                }
            } else if let features = storage.floats {
                dst.update(from: features + at * n, count: n)
            }
            if let classes = storage.classes {
                out.classes[offset + r] = classes[at]
            } else if let values = storage.values {
                (out.values + (offset + r) * w).update(from: values + at * w, count: w)
            }
        }
    }

    /// The raw bytes of image sample i, for display (nil for tables).
    public func image(_ i: Int) -> [UInt8]? {
        guard let pixels = storage.bytes else { return nil }
        return Array(UnsafeBufferPointer(start: pixels + row(i) * sampleShape.count, count: sampleShape.count))
    }
}
