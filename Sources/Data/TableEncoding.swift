import Foundation

// Tables to model inputs under a fitted `TableSchema`: whole, row by row (the table cache), or
// feature rows only (predict).

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

func parseClassValue(_ name: String) -> Double? {
    var name = name
    return name.withUTF8 { parseNumber($0) }
}
