import Foundation
import Engine

/// The train and evaluation sets of a run, and the preprocessing fitted on the training data.
public struct DataSplits {
    public let train: Dataset
    public let eval: Dataset
    /// "test" or "validation", for messages.
    public let evalName: String
    public let preprocessing: Preprocessing
    /// What was decided for the user, one line each ("task: regression (inferred: ...)").
    public let notes: [String]

    public init(train: Dataset, eval: Dataset, evalName: String, preprocessing: Preprocessing, notes: [String] = []) {
        self.train = train
        self.eval = eval
        self.evalName = evalName
        self.preprocessing = preprocessing
        self.notes = notes
    }

    /// Loads the data `source` describes. `fitted` (from a weights file) replaces what would
    /// otherwise be fitted on the training data: the table schema and the class names.
    ///
    /// The evaluation set is the validation split when `--val-split` or `--holdout` asks for one,
    /// else the test set (the test files, `--test-data`, or an image folder's `test/`). With no test
    /// set and no split, a table or image set holds out a random 20% (`--val-split 0.2`).
    public static func load(_ source: DataSource, fitted: Preprocessing? = nil) throws -> DataSplits {
        try source.validate()
        var notes: [String] = []
        var train: Dataset
        let (loadedTrain, test, table) = try loadSets(source, fitted: fitted, notes: &notes)
        train = loadedTrain
        if let n = source.normalize {
            guard n.mean.count == 1 || n.mean.count == train.channels else {
                throw DataError("--normalize has \(n.mean.count) means for \(train.channels)-channel images")
            }
        }
        var evalSet: Dataset
        var evalName = "test"
        var valSplit = source.valSplit
        if valSplit == nil && source.holdout == 0 && test == nil {
            valSplit = 0.2
            notes.append("no test set: a random 20% of the training data is the validation set (--val-split 0.2)")
        }
        if let f = valSplit {
            let (t, v) = try randomSplit(train, fraction: f, stratify: source.stratify, seed: source.seed)
            train = t
            evalSet = v
            evalName = "validation"
        } else if source.holdout > 0 {
            guard source.holdout < train.count else {
                throw DataError("--holdout \(source.holdout) leaves no training samples (the training set has \(train.count))")
            }
            let full = train
            train = try full.slice(0..<(full.count - source.holdout), name: "train")
            evalSet = try full.slice((full.count - source.holdout)..<full.count, name: "validation")
            evalName = "validation"
        } else {
            evalSet = test!
        }
        for d in [train, evalSet] { d.normalization = source.normalize ?? .identity }
        if let a = source.augment, a.isActive {
            var aug = a
            aug.seed = source.seed
            train.augmentation = aug
        }
        let splits = DataSplits(train: train, eval: evalSet, evalName: evalName,
                                preprocessing: Preprocessing(sampleShape: train.sampleShape.dims, space: train.space, table: table),
                                notes: notes)
        try splits.validate()
        if let fitted, fitted.sampleShape != train.sampleShape.dims {
            throw DataError("the data's samples have shape \(train.sampleShape.dims), the weights were trained on \(fitted.sampleShape)")
        }
        return splits
    }

    /// The splits as a whole, before anything is sized from them: neither is empty, and both have
    /// the same sample shape and targets (the model's input and output).
    public func validate() throws {
        guard train.count > 0 else { throw DataError("the training set is empty: nothing to train on") }
        guard eval.count > 0 else { throw DataError("the \(evalName) set is empty: nothing to evaluate on") }
        guard eval.sampleShape == train.sampleShape else {
            throw DataError("\(evalName) samples have shape \(eval.sampleShape.dims.map(String.init).joined(separator: "x")) but "
                            + "training samples \(train.sampleShape.dims.map(String.init).joined(separator: "x")); every split must have the model's input shape")
        }
        guard eval.space == train.space else {
            throw DataError("the \(evalName) set has \(eval.space.width) targets or classes, the training set \(train.space.width)")
        }
    }

    /// `torch.utils.data.random_split(data, [1 - f, f])` with a seeded permutation; `stratify`
    /// splits each class alone so both parts keep the class proportions.
    public static func randomSplit(_ data: Dataset, fraction f: Double, stratify: Bool, seed: UInt64) throws -> (train: Dataset, validation: Dataset) {
        var rng = RandomStream(seed: seed, stream: 0x5_9117)
        func shuffled(_ xs: [Int]) -> [Int] {
            var a = xs
            var i = a.count - 1
            while i > 0 {
                let j = Int(rng.next() % UInt64(i + 1))
                a.swapAt(i, j)
                i -= 1
            }
            return a
        }
        var trainIdx: [Int] = [], valIdx: [Int] = []
        if stratify, data.space.isClassification {
            var byClass = [[Int]](repeating: [], count: data.space.width)
            for i in 0..<data.count { byClass[Int(data.label(i)!)].append(i) }
            for members in byClass where !members.isEmpty {
                let p = shuffled(members)
                let nVal = Int((Double(p.count) * f).rounded())
                valIdx += p[..<nVal]
                trainIdx += p[nVal...]
            }
        } else {
            if stratify { throw DataError("--stratify needs class targets; this is a regression task") }
            let p = shuffled(Array(0..<data.count))
            let nVal = max(1, Int(Double(p.count) * f))
            valIdx = Array(p[..<nVal])
            trainIdx = Array(p[nVal...])
        }
        guard !trainIdx.isEmpty, !valIdx.isEmpty else {
            throw DataError("--val-split \(f) of \(data.count) samples leaves an empty training or validation set")
        }
        // Sorted: the split is a set; the sampler shuffles every epoch anyway.
        return (try data.subset(trainIdx.sorted(), name: "train"), try data.subset(valIdx.sorted(), name: "validation"))
    }

    // MARK: - Loading each kind

    static func loadSets(_ source: DataSource, fitted: Preprocessing?, notes: inout [String]) throws -> (Dataset, Dataset?, TableSchema?) {
        switch try source.kind {
        case .synthetic(let n):
            return (Synthetic.make(count: n, seed: source.seed, split: 0), Synthetic.make(count: max(n / 5, 100), seed: source.seed, split: 1), nil)
        case .mnist, .fashionMNIST:
            let kind = try source.kind
            let dir = source.dataDir
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
                throw DataError("data directory '\(dir)' does not exist (\(MNISTFiles.howToGet(kind, dir: dir)))")
            }
            let names = kind.classNames!
            return (try loadIDX(kind, names, dir: dir, images: MNISTFiles.trainImages, labels: MNISTFiles.trainLabels, name: "train"),
                    try loadIDX(kind, names, dir: dir, images: MNISTFiles.testImages, labels: MNISTFiles.testLabels, name: "test"), nil)
        case .csv(let path):
            var options = TableOptions()
            options.target = source.target
            options.task = source.task
            options.header = source.header
            options.standardize = source.standardize
            let (schema, train) = try loadTable(path, schema: fitted?.table, options: options, cache: source.tableCache, name: "train")
            if fitted == nil {
                notes.append("task: \(schema.task.rawValue)\(source.task == nil ? " (inferred: \(schema.taskReason))" : ""); "
                             + "target \(schema.targetNames.joined(separator: ",")); \(schema.inputWidth) inputs from \(schema.features.count) feature columns"
                             + (schema.task == .classification ? "; classes: \(schema.classNames.prefix(12).joined(separator: ", "))\(schema.classNames.count > 12 ? ", ..." : "")" : ""))
            }
            let test = try source.testData.map { try loadTable($0, schema: schema, options: options, cache: source.tableCache, name: "test").1 }
            return (train, test, schema)
        case .images(let dir):
            let trainEntries: [ImageFolder.Entry], testEntries: [ImageFolder.Entry]?
            if let labels = source.labels {
                trainEntries = try ImageFolder.readLabels(labels)
                testEntries = try source.testData.map(ImageFolder.readLabels)
            } else {
                let fm = FileManager.default
                let hasSplits = fm.fileExists(atPath: dir + "/train")
                trainEntries = try ImageFolder.scan(hasSplits ? dir + "/train" : dir)
                testEntries = hasSplits && fm.fileExists(atPath: dir + "/test") ? try ImageFolder.scan(dir + "/test") : nil
            }
            let classNames: [String]
            if let fitted {
                classNames = fitted.space.names
            } else if source.labels == nil {
                classNames = Array(Set(trainEntries.map(\.label))).sorted()  // torchvision's ImageFolder order
            } else {
                classNames = ImageFolder.classNames(of: trainEntries.map(\.label))
            }
            let channels = fitted.map { $0.sampleShape[0] }
            let size = source.imageSize ?? fitted.map { [$0.sampleShape[1], $0.sampleShape[2]] }
            let train = try ImageFolder.load(trainEntries, classNames: classNames, channels: channels, size: size, name: "train")
            let firstShape = [train.sampleShape.dims[1], train.sampleShape.dims[2]]
            let test = try testEntries.map {
                try ImageFolder.load($0, classNames: classNames, channels: train.channels, size: size ?? firstShape, name: "test")
            }
            if fitted == nil {
                notes.append("images: \(train.channels == 1 ? "grayscale" : "RGB") \(firstShape[0])x\(firstShape[1]), \(classNames.count) classes: "
                             + classNames.prefix(12).joined(separator: ", ") + (classNames.count > 12 ? ", ..." : ""))
            }
            return (train, test, nil)
        }
    }

    /// A table as a dataset: encoded in memory, or through its memory-mapped cache (`TableCache`)
    /// when it is large or `--table-cache` asks. `schema` nil: inferred from this table.
    static func loadTable(_ path: String, schema given: TableSchema?, options: TableOptions, cache: Bool?, name: String) throws -> (TableSchema, Dataset) {
        let schema: TableSchema, storage: SampleStorage
        if TableCache.applies(to: path, choice: cache) {
            (schema, storage) = try TableCache.load(source: path, schema: given, options: options)
        } else {
            schema = try given ?? TableSchema.infer(path: path, options: options)
            let table = try schema.encode(path: path)
            storage = SampleStorage(rows: table.rows, samples: .floats(table.features),
                                    targets: schema.task == .classification ? .classes(table.classes ?? []) : .values(table.values ?? []))
        }
        let space: TargetSpace = schema.task == .classification ? .classes(names: schema.classNames) : .values(names: schema.targetNames)
        return (schema, try Dataset(name: name, sampleShape: Shape(schema.inputWidth), space: space, storage: storage))
    }

    static func loadIDX(_ kind: DatasetKind, _ classNames: [String], dir: String, images: String, labels: String, name: String) throws -> Dataset {
        let imagePath = try MNISTFiles.locate(images, in: dir, kind: kind)
        let labelPath = try MNISTFiles.locate(labels, in: dir, kind: kind)
        let img = try IDXFile.load(path: imagePath, expectedRank: 3)
        let lab = try IDXFile.load(path: labelPath, expectedRank: 1)
        guard img.dims[0] == lab.dims[0] else {
            throw DataError("\((imagePath as NSString).lastPathComponent) has \(img.dims[0]) images but \((labelPath as NSString).lastPathComponent) has \(lab.dims[0]) labels")
        }
        guard img.dims[1] > 0, img.dims[2] > 0 else { throw DataError("\(imagePath): empty image shape \(img.dims)") }
        return try Dataset(name: name, sampleShape: Shape(1, img.dims[1], img.dims[2]), classNames: classNames,
                           pixels: img.bytes, labels: lab.bytes.map { Int32($0) })
    }
}
