import Foundation

/// How the user wants a table read. Every field has a default that infers it from the table.
public struct TableOptions: Sendable {
    /// The target column: a header name, or a 0-based index written as digits (a name wins when the
    /// header has a column named like that). Regression allows several, comma-separated.
    /// nil: the last column.
    public var target: String?
    /// nil: inferred from the target's values (see `TableSchema.infer`).
    public var task: TableSchema.Task?
    /// nil: detected (see `TableSchema.detectHeader`).
    public var header: Bool?
    /// Numeric features become (x - mean) / std with the training table's statistics.
    public var standardize: Bool
    /// nil: tab for `.tsv`/`.tab`, else sniffed from the first record.
    public var delimiter: UInt8?

    public init(target: String? = nil, task: TableSchema.Task? = nil, header: Bool? = nil, standardize: Bool = true,
                delimiter: UInt8? = nil) {
        self.target = target
        self.task = task
        self.header = header
        self.standardize = standardize
        self.delimiter = delimiter
    }
}

/// How a table becomes model input, decided from the training table alone and stored (as JSON, in
/// the weights' metadata) so that test tables and `predict` inputs are encoded the same way:
/// which columns are targets, which features are numeric (standardized with the training mean and
/// population std) or categorical (one-hot over the training categories, sorted), the task, and the
/// class names.
public struct TableSchema: Codable, Equatable, Sendable {
    public enum Task: String, Codable, Sendable { case classification, regression }

    /// One feature column of the training table.
    public struct Feature: Codable, Equatable, Sendable {
        public var name: String
        /// 0-based position in the training table.
        public var column: Int
        /// The one-hot categories in input order (sorted); nil for a numeric column.
        public var categories: [String]?
        /// x -> (x - mean) / std; 0 and 1 for a categorical column or without standardization.
        public var mean: Double
        public var std: Double

        public var width: Int { categories?.count ?? 1 }
    }

    /// What one position of the encoded input holds.
    public struct Input: Equatable, Sendable {
        public var column: String
        /// For a one-hot position, the category it is 1 for.
        public var category: String?
    }

    /// Every column name of the training table, in file order (`column0`, ... without a header).
    public var columns: [String]
    public var hasHeader: Bool
    /// 0-based positions of the target columns.
    public var targetColumns: [Int]
    public var task: Task
    /// Why the task is what it is, for the log: "given", or what about the target decided it.
    public var taskReason: String
    /// Classification: the class of index i is `classNames[i]`; empty for regression.
    public var classNames: [String]
    /// The class labels are numbers and match by value (`1.0` is class `1`).
    public var numericClasses: Bool
    public var features: [Feature]
    public var standardize: Bool
    public var trainingRows: Int

    public var targetNames: [String] { targetColumns.map { columns[$0] } }
    public var targetCount: Int { targetColumns.count }
    public var inputWidth: Int { features.reduce(0) { $0 + $1.width } }
    public var means: [Double] { features.map(\.mean) }
    public var stds: [Double] { features.map(\.std) }
    /// The categories of each categorical feature, by column name.
    public var categories: [String: [String]] {
        Dictionary(features.compactMap { f in f.categories.map { (f.name, $0) } }, uniquingKeysWith: { a, _ in a })
    }
    /// The encoded input layout, one entry per position.
    public var inputs: [Input] {
        features.flatMap { f in
            f.categories.map { $0.map { Input(column: f.name, category: $0) } } ?? [Input(column: f.name, category: nil)]
        }
    }

    /// A categorical feature with more distinct values than this is refused: it is an identifier
    /// or free text, and its one-hot encoding would be as wide as the table is long.
    public static let maxCategories = 1000
    /// An integer target with at most this many distinct values is taken as class labels.
    public static let maxInferredClasses = 32
}

// MARK: - Inference

extension TableSchema {
    public static func infer(path: String, options: TableOptions = TableOptions()) throws -> TableSchema {
        try CSV.withContents(path: path) { try infer(bytes: $0, name: (path as NSString).lastPathComponent, options: options) }
    }

    public static func infer(bytes: [UInt8], name: String, options: TableOptions = TableOptions()) throws -> TableSchema {
        try bytes.withUnsafeBytes { try infer(bytes: $0, name: name, options: options) }
    }

    /// Two passes over the table. The first finds which columns are numeric, sums them, and watches
    /// the target's values for the task; the second sums squared deviations from the mean (the
    /// two-pass variance numpy uses) and collects the categories and classes, which are only known
    /// to be needed once the first pass has typed the columns.
    public static func infer(bytes: UnsafeRawBufferPointer, name: String, options: TableOptions = TableOptions()) throws -> TableSchema {
        let delimiter = options.delimiter ?? CSV.delimiter(name: name, bytes: bytes)
        var sample: [[String]] = []
        try CSV.read(bytes: bytes, name: name, delimiter: delimiter, limit: 101) { sample.append($0.strings) }
        guard let firstRecord = sample.first else { throw DataError("\(name): no records (the file is empty, or only blank and comment lines)") }
        let hasHeader = options.header ?? detectHeader(sample)
        let columns = try columnNames(first: firstRecord, hasHeader: hasHeader, name: name)
        let targets = try resolveTargets(options.target, columns: columns, name: name)
        let n = columns.count
        let label = { (j: Int) in hasHeader ? "column \(j + 1) ('\(columns[j])')" : "column \(j + 1)" }

        var first = FirstPass(columns: n, watched: targets.count == 1 ? targets[0] : -1)
        var skip = hasHeader
        try CSV.read(bytes: bytes, name: name, delimiter: delimiter) { record in
            if skip { skip = false; return }
            try first.add(record, name: name, label: label)
        }
        let rows = first.rows
        guard rows > 0 else { throw DataError("\(name): no data rows\(hasHeader ? " (only a header)" : "")") }
        let (task, reason) = try first.task(targets: targets, given: options.task, columns: columns, name: name, label: label)
        let numeric = first.numeric

        let featureColumns = (0..<n).filter { !targets.contains($0) }
        guard !featureColumns.isEmpty else { throw DataError("\(name): no feature columns: every column is a target") }

        // Pass 2: squared deviations, categories, classes.
        let means = (0..<n).map { first.sums[$0] / Double(rows) }
        let standardized = featureColumns.filter { numeric[$0] && options.standardize }
        let categorical = featureColumns.filter { !numeric[$0] }
        let classColumn = task == .classification ? targets[0] : -1
        var squares = [Double](repeating: 0, count: n)
        var categories = [Set<String>](repeating: [], count: n)
        var classValues = Set<Double>(), classTexts = Set<String>()
        if !standardized.isEmpty || !categorical.isEmpty || classColumn >= 0 {
            skip = hasHeader
            try CSV.read(bytes: bytes, name: name, delimiter: delimiter) { record in
                if skip { skip = false; return }
                for j in standardized {
                    let d = (record[j].number ?? 0) - means[j]
                    squares[j] += d * d
                }
                for j in categorical {
                    categories[j].insert(record[j].string)
                    guard categories[j].count <= maxCategories else {
                        throw DataError("\(name): \(label(j)) has more than \(maxCategories) distinct values: it looks like an identifier or free text, not a category")
                    }
                }
                if classColumn >= 0 {
                    if numeric[classColumn] { classValues.insert(record[classColumn].number ?? 0) } else { classTexts.insert(record[classColumn].string) }
                }
            }
        }

        let features = featureColumns.map { j -> Feature in
            if !numeric[j] { return Feature(name: columns[j], column: j, categories: categories[j].sorted(), mean: 0, std: 1) }
            guard options.standardize else { return Feature(name: columns[j], column: j, categories: nil, mean: 0, std: 1) }
            let std = (squares[j] / Double(rows)).squareRoot()
            return Feature(name: columns[j], column: j, categories: nil, mean: means[j], std: std > 0 && std.isFinite ? std : 1)
        }
        let numericClasses = classColumn >= 0 && numeric[classColumn]
        let classNames = classColumn < 0 ? [] : numericClasses ? classValues.sorted().map(className) : classTexts.sorted()
        return TableSchema(columns: columns, hasHeader: hasHeader, targetColumns: targets, task: task, taskReason: reason,
                           classNames: classNames, numericClasses: numericClasses, features: features,
                           standardize: options.standardize, trainingRows: rows)
    }

    /// Whether the first record is a header, from it and up to 100 records after it: yes if a column
    /// has a non-number first and numbers below (`age` over `59, 48, ...`); or, for a table without
    /// such a column, if every cell of the first record is a non-number that never reappears in its
    /// column (`color,size` over `red,small`). Otherwise no: a header of numbers is not detected
    /// (pass `header: true`).
    public static func detectHeader(_ sample: [[String]]) -> Bool {
        guard let first = sample.first else { return false }
        let rest = sample.dropFirst()
        let isNumber = { (s: String) -> Bool in var s = s; return s.withUTF8 { parseNumber($0) } != nil }
        if !rest.isEmpty {
            for j in first.indices where !isNumber(first[j]) {
                if rest.allSatisfy({ j < $0.count && isNumber($0[j]) }) { return true }
            }
        }
        return first.indices.allSatisfy { j in !isNumber(first[j]) && !rest.contains { j < $0.count && $0[j] == first[j] } }
    }

    private static func columnNames(first: [String], hasHeader: Bool, name: String) throws -> [String] {
        guard hasHeader else { return first.indices.map { "column\($0)" } }
        let names = first.enumerated().map { headerName($1, $0) }
        var seen: [String: Int] = [:]
        for (j, c) in names.enumerated() {
            if let k = seen[c] { throw DataError("\(name): columns \(k + 1) and \(j + 1) are both named '\(c)'") }
            seen[c] = j
        }
        return names
    }

    private static func resolveTargets(_ spec: String?, columns: [String], name: String) throws -> [Int] {
        guard let spec else { return [columns.count - 1] }
        let parts = spec.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        var targets: [Int] = []
        for part in parts {
            let j: Int
            if let k = columns.firstIndex(of: part) {
                j = k
            } else if !part.isEmpty, part.allSatisfy(\.isASCII), part.allSatisfy(\.isNumber) {
                guard let k = Int(part), k < columns.count else {
                    throw DataError("\(name): target column index \(part) is out of range: the table has \(columns.count) columns (0 to \(columns.count - 1))")
                }
                j = k
            } else {
                throw DataError("\(name): no column '\(part)' for the target; the columns are \(listed(columns))")
            }
            guard !targets.contains(j) else { throw DataError("\(name): target column '\(columns[j])' is named twice") }
            targets.append(j)
        }
        return targets
    }
}

/// The first pass of `TableSchema.infer`: per column, whether every value is a number, their sum,
/// whether they are all integers, and the first value that says otherwise (for messages); for a
/// single target, its distinct values up to one more than could be classes.
private struct FirstPass {
    var numeric: [Bool], integral: [Bool]
    var sums: [Double]
    var firstText: [(text: String, line: Int)?], firstFraction: [(text: String, line: Int)?]
    let watched: Int
    var distinct = Set<Double>()
    var rows = 0

    init(columns n: Int, watched: Int) {
        numeric = [Bool](repeating: true, count: n)
        integral = numeric
        sums = [Double](repeating: 0, count: n)
        firstText = [(text: String, line: Int)?](repeating: nil, count: n)
        firstFraction = firstText
        self.watched = watched
    }

    mutating func add(_ record: CSVRecord, name: String, label: (Int) -> String) throws {
        rows += 1
        for j in 0..<record.count {
            let cell = record[j]
            guard !cell.isEmpty else {
                throw DataError("\(name): row \(record.line), \(label(j)): empty cell (missing values are not filled in; fill it or drop the row)")
            }
            guard let x = cell.number else {
                if numeric[j] { numeric[j] = false; firstText[j] = (cell.string, record.line) }
                continue
            }
            guard abs(x) <= Double(Float.greatestFiniteMagnitude) else { throw outOfRange(name, record.line, label(j), cell) }
            sums[j] += x
            if integral[j] && x != x.rounded(.towardZero) { integral[j] = false; firstFraction[j] = (cell.string, record.line) }
            if j == watched && distinct.count <= TableSchema.maxInferredClasses { distinct.insert(x) }
        }
    }

    /// The task and why: several targets mean regression; else the given task; else a non-number
    /// means classes, a fraction means regression, and integers are classes when there are at most
    /// `maxInferredClasses` of them. Regression targets must be numbers.
    func task(targets: [Int], given: TableSchema.Task?, columns: [String], name: String,
              label: (Int) -> String) throws -> (TableSchema.Task, String) {
        func notNumber(_ j: Int) -> DataError {
            DataError("\(name): row \(firstText[j]!.line), \(label(j)): '\(firstText[j]!.text)' is not a number (a regression target must be)")
        }
        if targets.count > 1 {
            guard given != .classification else {
                throw DataError("\(name): classification takes one target column, got \(targets.count) (\(targets.map { columns[$0] }.joined(separator: ", ")))")
            }
            if let bad = targets.first(where: { !numeric[$0] }) { throw notNumber(bad) }
            return (.regression, "\(targets.count) target columns")
        }
        let t = targets[0], target = "target '\(columns[t])'"
        if let given {
            if given == .regression && !numeric[t] { throw notNumber(t) }
            return (given, "given")
        }
        if let (text, line) = firstText[t] {
            return (.classification, "\(target) has non-numeric values, e.g. '\(text)' on row \(line)")
        }
        if let (text, line) = firstFraction[t] {
            return (.regression, "\(target) has non-integer values, e.g. \(text) on row \(line)")
        }
        let limit = TableSchema.maxInferredClasses
        if distinct.count <= limit {
            return (.classification, "\(target) has \(distinct.count) distinct integer values (at most \(limit) are read as classes)")
        }
        return (.regression, "\(target) has more than \(limit) distinct integer values")
    }
}

/// A header cell as a column name: an empty one (a pandas index column) is named by position.
func headerName(_ cell: String, _ k: Int) -> String { cell.isEmpty ? "column\(k)" : cell }

/// Values become Floats: a larger one is refused rather than turned into infinity. (Within this
/// range, sums and squares of millions of values stay finite in Double.)
func outOfRange(_ name: String, _ line: Int, _ column: String, _ cell: CSVCell) -> DataError {
    DataError("\(name): row \(line), \(column): \(cell.string) is too large for a 32-bit float")
}

/// A numeric class label as a name that reads back as the same number: `3`, not `3.0`.
private func className(_ x: Double) -> String {
    x == x.rounded(.towardZero) && abs(x) < 1e15 ? String(Int64(x)) : "\(x)"
}

/// Column names for a message, at most 20.
func listed(_ names: [String]) -> String {
    let shown = names.prefix(20).map { "'\($0)'" }.joined(separator: ", ")
    return names.count > 20 ? shown + ", ... (\(names.count) in all)" : shown
}

// MARK: - Decoding

extension TableSchema {
    /// Decodes and checks a stored schema, so a corrupt one fails here with a message rather than
    /// indexing out of range while encoding.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        columns = try c.decode([String].self, forKey: .columns)
        hasHeader = try c.decode(Bool.self, forKey: .hasHeader)
        targetColumns = try c.decode([Int].self, forKey: .targetColumns)
        task = try c.decode(Task.self, forKey: .task)
        taskReason = try c.decode(String.self, forKey: .taskReason)
        classNames = try c.decode([String].self, forKey: .classNames)
        numericClasses = try c.decode(Bool.self, forKey: .numericClasses)
        features = try c.decode([Feature].self, forKey: .features)
        standardize = try c.decode(Bool.self, forKey: .standardize)
        trainingRows = try c.decode(Int.self, forKey: .trainingRows)
        if let problem = problem { throw DataError("table schema: \(problem)") }
    }

    /// What is inconsistent in this schema, or nil.
    var problem: String? {
        let n = columns.count
        guard !targetColumns.isEmpty, targetColumns.allSatisfy({ $0 >= 0 && $0 < n }), Set(targetColumns).count == targetColumns.count else {
            return "target columns \(targetColumns) do not fit \(n) columns"
        }
        guard !features.isEmpty else { return "no features" }
        for f in features {
            guard f.column >= 0 && f.column < n && !targetColumns.contains(f.column) else { return "feature '\(f.name)' has a bad column \(f.column)" }
            guard f.mean.isFinite && f.std.isFinite && f.std > 0 else { return "feature '\(f.name)' has mean \(f.mean), std \(f.std)" }
            if let cats = f.categories, cats.isEmpty || Set(cats).count != cats.count { return "feature '\(f.name)' has bad categories" }
        }
        if task == .classification {
            guard targetColumns.count == 1, !classNames.isEmpty, Set(classNames).count == classNames.count,
                  classNames.count <= Int(Int32.max) else { return "bad classes for classification" }
            if numericClasses && classNames.contains(where: { parseClassValue($0) == nil }) { return "a numeric class name is not a number" }
        } else if !classNames.isEmpty {
            return "regression with class names"
        }
        return nil
    }
}
