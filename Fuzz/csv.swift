// libFuzzer target "csv": the CSV reader and TableSchema as training drives them. The input is read
// as a table with each delimiter; then, under three option sets, a schema is inferred from it and
// the same bytes are encoded with that schema, which must then succeed.
// Built with the Data sources by Scripts/fuzz.sh; see Fuzz/README.md.
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    for delimiter in [nil, CSV.comma, CSV.tab] as [UInt8?] {
        do { try readAll(bytes, delimiter: delimiter) } catch { _ = "\(error)" }
    }
    let optionSets = [
        TableOptions(),
        TableOptions(target: "0", task: .regression, header: true, standardize: false),
        TableOptions(task: .classification, header: false, delimiter: CSV.tab),
    ]
    for options in optionSets {
        do {
            let schema = try TableSchema.infer(bytes: bytes, name: "train.csv", options: options)
            try checkRoundTrip(schema, bytes, options)
        } catch let error as DataError {
            _ = "\(error)"
        } catch {
            fatalError("not a DataError: \(error)")
        }
    }
    return 0
}

/// Records come in line order, all as wide as the first, cells inside their record.
func readAll(_ bytes: UnsafeRawBufferPointer, delimiter: UInt8?) throws {
    var width = -1, lastLine = 0
    try CSV.read(bytes: bytes, name: "fuzz.csv", delimiter: delimiter) { record in
        expect(record.line > lastLine, "record on line \(record.line) after line \(lastLine)")
        lastLine = record.line
        if width < 0 { width = record.count }
        expect(record.count == width, "a record of \(record.count) cells passed, the first had \(width)")
        for cell in record {
            expect(cell.bytes.count <= bytes.count, "a cell longer than the input")
            _ = cell.string
            if let x = cell.number { expect(x.isFinite, "number \(x)") }
        }
    }
}

/// A schema inferred from a table encodes that table: every row, finite features, classes in
/// range; it survives JSON; and `encodeRow` on the first data row agrees with `encode`.
func checkRoundTrip(_ schema: TableSchema, _ bytes: UnsafeRawBufferPointer, _ options: TableOptions) throws {
    let json = try JSONEncoder().encode(schema)
    let decoded: TableSchema
    do { decoded = try JSONDecoder().decode(TableSchema.self, from: json) } catch { fatalError("the schema does not decode: \(error)") }
    expect(decoded == schema, "schema changed through JSON: \(String(decoding: json, as: UTF8.self))")
    expect(schema.inputs.count == schema.inputWidth && schema.inputWidth > 0, "input width \(schema.inputWidth)")
    let table: EncodedTable
    do {
        table = try schema.encode(bytes: bytes, name: "train.csv", delimiter: options.delimiter)
    } catch {
        fatalError("the training table does not encode with its own schema: \(error)")
    }
    expect(table.rows == schema.trainingRows, "\(table.rows) rows encoded, \(schema.trainingRows) inferred")
    expect(table.features.count == table.rows * schema.inputWidth, "features \(table.features.count)")
    expect(table.features.allSatisfy(\.isFinite), "a feature is not finite")
    if schema.task == .classification {
        expect(schema.classNames == schema.classNames.sorted(by: schema.numericClasses ? { Double($0)! < Double($1)! } : { $0 < $1 }), "classes not sorted")
        expect(table.classes?.count == table.rows && table.classes!.allSatisfy { $0 >= 0 && Int($0) < schema.classNames.count }, "class out of range")
    } else {
        expect(table.values?.count == table.rows * schema.targetCount && table.values!.allSatisfy(\.isFinite), "bad regression values")
    }
    // encodeRow trims its cells; compare only a first row without spaces at a cell's ends.
    var first: [String] = []
    var skip = schema.hasHeader
    try CSV.read(bytes: bytes, name: "train.csv", delimiter: options.delimiter, limit: schema.hasHeader ? 2 : 1) { record in
        if skip { skip = false } else { first = record.strings }
    }
    let spaced = first.contains { $0.first?.isWhitespace == true || $0.last?.isWhitespace == true }
    if !spaced {
        let row = try schema.encodeRow(cells: first)
        expect(row.elementsEqual(table.features.prefix(schema.inputWidth)), "encodeRow \(row) differs from encode")
    }
}

/// Like `precondition`, but the message survives -O, so a finding's log says which property broke.
func expect(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() { fatalError(message()) }
}
