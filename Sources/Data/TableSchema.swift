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
private func headerName(_ cell: String, _ k: Int) -> String { cell.isEmpty ? "column\(k)" : cell }

/// Values become Floats: a larger one is refused rather than turned into infinity. (Within this
/// range, sums and squares of millions of values stay finite in Double.)
private func outOfRange(_ name: String, _ line: Int, _ column: String, _ cell: CSVCell) -> DataError {
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

// MARK: - Encoding

/// A table encoded whole: `features` is rows x inputWidth, row-major; `classes` (classification) or
/// `values` (regression, rows x targetCount) hold the targets.
public struct EncodedTable: Equatable, Sendable {
    public var rows: Int
    public var inputWidth: Int
    public var features: [Float]
    public var classes: [Int32]?
    public var values: [Float]?
}

/// One row's target, as `encodeRows` hands it: a class index, or the regression values (a view
/// valid only during the callback).
public enum RowTarget {
    case label(Int32)
    case values(UnsafeBufferPointer<Float>)
}

extension TableSchema {
    /// Encodes a table laid out like the training table: with its header (columns matched by name,
    /// so their order may differ and extra columns are ignored) when the training table had one,
    /// else the same columns in the same order.
    public func encode(path: String, delimiter: UInt8? = nil) throws -> EncodedTable {
        try CSV.withContents(path: path) { try encode(bytes: $0, name: (path as NSString).lastPathComponent, delimiter: delimiter) }
    }

    public func encode(bytes: [UInt8], name: String, delimiter: UInt8? = nil) throws -> EncodedTable {
        try bytes.withUnsafeBytes { try encode(bytes: $0, name: name, delimiter: delimiter) }
    }

    public func encode(bytes: UnsafeRawBufferPointer, name: String, delimiter: UInt8? = nil) throws -> EncodedTable {
        var table = EncodedTable(rows: 0, inputWidth: inputWidth, features: [], classes: nil, values: nil)
        var classes: [Int32] = [], values: [Float] = []
        try encodeRows(bytes: bytes, name: name, delimiter: delimiter) { features, target in
            table.features.append(contentsOf: features)
            switch target {
            case .label(let k): classes.append(k)
            case .values(let v): values.append(contentsOf: v)
            }
            table.rows += 1
        }
        if task == .classification { table.classes = classes } else { table.values = values }
        return table
    }

    public func encodeRows(path: String, delimiter: UInt8? = nil, body: (UnsafeBufferPointer<Float>, RowTarget) throws -> Void) throws {
        try CSV.withContents(path: path) {
            try encodeRows(bytes: $0, name: (path as NSString).lastPathComponent, delimiter: delimiter, body: body)
        }
    }

    /// `encode`, one row at a time: `body` gets each row's inputWidth features and its target, in
    /// buffers reused for the next row, so a caller can stream a table of any length.
    public func encodeRows(bytes: UnsafeRawBufferPointer, name: String, delimiter: UInt8? = nil,
                           body: (UnsafeBufferPointer<Float>, RowTarget) throws -> Void) throws {
        try forEachRow(bytes: bytes, name: name, delimiter: delimiter, withTargets: true) { try body($0, $1!) }
    }

    /// Encodes the inputs of `predict`: a table of feature columns, by name if its first record names
    /// every feature column (a header), else by position; the target columns may be there or not,
    /// and are not read. Returns rows x inputWidth, row-major.
    public func encodeInputs(path: String, delimiter: UInt8? = nil) throws -> (rows: Int, features: [Float]) {
        try CSV.withContents(path: path) { try encodeInputs(bytes: $0, name: (path as NSString).lastPathComponent, delimiter: delimiter) }
    }

    public func encodeInputs(bytes: UnsafeRawBufferPointer, name: String, delimiter: UInt8? = nil) throws -> (rows: Int, features: [Float]) {
        var rows = 0, out: [Float] = []
        try forEachRow(bytes: bytes, name: name, delimiter: delimiter, withTargets: false) { features, _ in
            out.append(contentsOf: features)
            rows += 1
        }
        return (rows, out)
    }

    /// One row of `predict` input. With `header`, the cells are matched to the feature columns by
    /// name; without, they are the training table's columns in order, with or without the targets.
    /// Builds its lookup tables on every call: for a few rows; use `encodeInputs` for a file.
    public func encodeRow(cells: [String], header: [String]? = nil, name: String = "input", row: Int = 1) throws -> [Float] {
        if let header, header.count != cells.count {
            throw DataError("\(name): row \(row) has \(cells.count) cells, but the header has \(header.count)")
        }
        let encoder = try RowEncoder(schema: self, name: name, header: header, headerLine: row, cellCount: cells.count, withTargets: false)
        var out = [Float](repeating: 0, count: inputWidth)
        try CSVRecord.with(cells: cells, line: row) { record in
            try out.withUnsafeMutableBufferPointer { try encoder.features(record, into: $0) }
        }
        return out
    }

    /// The row loop under `encodeRows` and `encodeInputs`. The first record decides the column
    /// mapping: a header when the training table had one (or, for inputs, when it names every
    /// feature), else positions.
    private func forEachRow(bytes: UnsafeRawBufferPointer, name: String, delimiter: UInt8?, withTargets: Bool,
                            body: (UnsafeBufferPointer<Float>, RowTarget?) throws -> Void) throws {
        var encoder: RowEncoder?
        var featureBuffer = [Float](repeating: 0, count: inputWidth)
        var valueBuffer = [Float](repeating: 0, count: targetCount)
        let featureNames = Set(features.map(\.name))
        var rows = 0
        try featureBuffer.withUnsafeMutableBufferPointer { out in
            try valueBuffer.withUnsafeMutableBufferPointer { values in
                try CSV.read(bytes: bytes, name: name, delimiter: delimiter) { record in
                    if encoder == nil {
                        let cells = record.strings
                        let isHeader = withTargets ? hasHeader : featureNames.isSubset(of: cells)
                        encoder = try RowEncoder(schema: self, name: name, header: isHeader ? cells : nil, headerLine: record.line,
                                                 cellCount: record.count, withTargets: withTargets)
                        if isHeader { return }
                    }
                    let encoder = encoder!
                    try encoder.features(record, into: out)
                    try body(UnsafeBufferPointer(out), withTargets ? try encoder.target(record, values: values) : nil)
                    rows += 1
                }
            }
        }
        guard rows > 0 else { throw DataError("\(name): no data rows") }
    }
}

/// A schema made ready for one file: where each training column is in that file, and hash tables
/// for the categories and classes.
private struct RowEncoder {
    let schema: TableSchema
    let name: String
    /// For each training column, its index in this file, or -1 where absent.
    let source: [Int]
    let named: Bool
    let categoryIndex: [[String: Int]]
    let classByText: [String: Int32]
    let classByValue: [Double: Int32]

    init(schema: TableSchema, name: String, header: [String]?, headerLine: Int, cellCount: Int, withTargets: Bool) throws {
        self.schema = schema
        self.name = name
        let columns = schema.columns
        let needed = schema.features.map(\.column) + (withTargets ? schema.targetColumns : [])
        var source = [Int](repeating: -1, count: columns.count)
        if let header {
            var index: [String: Int] = [:]
            for (k, h) in header.enumerated() where index[headerName(h, k)] == nil { index[headerName(h, k)] = k }
            for j in needed {
                guard let k = index[columns[j]] else {
                    throw DataError("\(name): the header (row \(headerLine)) has no column '\(columns[j])'; the training table's columns are \(listed(columns))")
                }
                source[j] = k
            }
        } else if cellCount == columns.count {
            for j in needed { source[j] = j }
        } else if !withTargets && cellCount == schema.features.count {
            for (k, f) in schema.features.enumerated() { source[f.column] = k }
        } else {
            let alternative = withTargets ? "" : " (or \(schema.features.count) without the target)"
            throw DataError("\(name): row \(headerLine) has \(cellCount) cells, but the training table has \(columns.count) columns\(alternative)")
        }
        self.source = source
        named = header != nil || schema.hasHeader
        categoryIndex = schema.features.map { f in
            Dictionary((f.categories ?? []).enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        }
        let classes = schema.classNames.enumerated().map { ($1, Int32($0)) }
        classByText = Dictionary(classes, uniquingKeysWith: { a, _ in a })
        classByValue = Dictionary(classes.compactMap { name, k in parseClassValue(name).map { ($0, k) } }, uniquingKeysWith: { a, _ in a })
    }

    /// "column 3 ('bmi')": the column's place in this file and its name.
    func describe(_ j: Int) -> String {
        named ? "column \(source[j] + 1) ('\(schema.columns[j])')" : "column \(source[j] + 1)"
    }

    func cell(_ record: CSVRecord, _ j: Int) throws -> CSVCell {
        let cell = record[source[j]]
        guard !cell.isEmpty else {
            throw DataError("\(name): row \(record.line), \(describe(j)): empty cell (missing values are not filled in; fill it or drop the row)")
        }
        return cell
    }

    func number(_ record: CSVRecord, _ j: Int) throws -> Double {
        let cell = try cell(record, j)
        guard let x = cell.number else { throw DataError("\(name): row \(record.line), \(describe(j)): '\(cell.string)' is not a number") }
        guard abs(x) <= Double(Float.greatestFiniteMagnitude) else { throw outOfRange(name, record.line, describe(j), cell) }
        return x
    }

    func features(_ record: CSVRecord, into out: UnsafeMutableBufferPointer<Float>) throws {
        var o = 0
        for (f, feature) in schema.features.enumerated() {
            guard let categories = feature.categories else {
                out[o] = Float((try number(record, feature.column) - feature.mean) / feature.std)
                o += 1
                continue
            }
            let text = try cell(record, feature.column).string
            guard let k = categoryIndex[f][text] else {
                throw DataError("\(name): row \(record.line), \(describe(feature.column)): '\(text)' is not a category of the training table (\(listed(categories)))")
            }
            for c in 0..<categories.count { out[o + c] = 0 }
            out[o + k] = 1
            o += categories.count
        }
    }

    /// The class index (classification), or fills `values` and returns `.values` (regression).
    func target(_ record: CSVRecord, values: UnsafeMutableBufferPointer<Float>) throws -> RowTarget {
        guard schema.task == .classification else {
            for (t, j) in schema.targetColumns.enumerated() { values[t] = Float(try number(record, j)) }
            return .values(UnsafeBufferPointer(values))
        }
        let j = schema.targetColumns[0]
        let cell = try cell(record, j)
        let k = schema.numericClasses ? cell.number.flatMap { classByValue[$0] } : classByText[cell.string]
        guard let k else {
            throw DataError("\(name): row \(record.line): label '\(cell.string)' is not one of the training classes (\(listed(schema.classNames)))")
        }
        return .label(k)
    }
}

private func parseClassValue(_ name: String) -> Double? {
    var name = name
    return name.withUTF8 { parseNumber($0) }
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
