import Data
import Foundation
import XCTest

/// The shared real tables, beside the package: ../shared/data/NAME.
private func sharedTable(_ name: String) throws -> String {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let path = root.deletingLastPathComponent().appendingPathComponent("shared/data/" + name).path
    guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("\(path) is not here") }
    return path
}

/// Every record as (line, cells).
private func records(_ text: String, name: String = "t.csv", delimiter: UInt8? = nil) throws -> [(Int, [String])] {
    var out: [(Int, [String])] = []
    try CSV.read(bytes: Array(text.utf8), name: name, delimiter: delimiter) { out.append(($0.line, $0.strings)) }
    return out
}

private func schema(_ text: String, name: String = "train.csv", _ options: TableOptions = TableOptions()) throws -> TableSchema {
    try TableSchema.infer(bytes: Array(text.utf8), name: name, options: options)
}

private func number(_ text: String) -> Double? {
    Array(text.utf8).withUnsafeBufferPointer { CSVCell(bytes: $0).number }
}

final class CSVTests: XCTestCase {
    func assertError(_ text: String, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            XCTAssert(error is DataError, "\(type(of: error)): \(error)", file: file, line: line)
            XCTAssertTrue("\(error)".contains(text), "'\(error)' should contain '\(text)'", file: file, line: line)
        }
    }

    // MARK: - Reader

    func testQuotesEscapesCRLFBOMCommentsAndBlankLines() throws {
        let text = "\u{FEFF}# a comment, with a comma\r\na,b,c\r\n\r\n\"x, \"\"y\"\"\",\"line1\nline2\",  3 \r\n   \n#another\n4,\"\", \" six \""
        let got = try records(text)
        XCTAssertEqual(got.map(\.0), [2, 4, 8])
        XCTAssertEqual(got.map(\.1), [["a", "b", "c"], ["x, \"y\"", "line1\nline2", "3"], ["4", "", " six "]])
    }

    func testTrailingDelimiterIsAnEmptyCellAndLimitStops() throws {
        XCTAssertEqual(try records("a,b,\n1,2,\n").map(\.1), [["a", "b", ""], ["1", "2", ""]])
        var seen = 0
        try CSV.read(bytes: Array("1\n2\n3\n4\n".utf8), name: "t", limit: 2) { _ in seen += 1 }
        XCTAssertEqual(seen, 2)
        XCTAssertEqual(try records("").count, 0)
        XCTAssertEqual(try records("# only a comment\n\n").count, 0)
    }

    func testDelimiterSniffingAndOverride() throws {
        XCTAssertEqual(try records("a\tb\n1\t2\n").map(\.1), [["a", "b"], ["1", "2"]])
        XCTAssertEqual(try records("# x,y\n\na b\tc\n").map(\.1), [["a b", "c"]])  // comment and blank lines are not sniffed
        XCTAssertEqual(try records("a,b\tc\n").map(\.1), [["a", "b\tc"]])  // a comma: comma
        XCTAssertEqual(try records("a,b\tc\n", name: "t.tsv").map(\.1), [["a,b", "c"]])  // by extension
        XCTAssertEqual(try records("a,b\tc\n", name: "t.TAB").map(\.1), [["a,b", "c"]])
        XCTAssertEqual(try records("a,b\tc\n", name: "t.tsv", delimiter: CSV.comma).map(\.1), [["a", "b\tc"]])
        XCTAssertEqual(try records("a;b\n", delimiter: UInt8(ascii: ";")).map(\.1), [["a", "b"]])
        assertError("cannot be a delimiter") { _ = try records("a\"b\n", delimiter: UInt8(ascii: "\"")) }
    }

    func testRaggedRowNamesFileRowAndCounts() {
        assertError("r.csv: row 4 has 2 cells, but the first record (row 2) has 3") {
            _ = try records("# c\na,b,c\n1,2,3\n4,5\n", name: "r.csv")
        }
    }

    func testUnterminatedQuoteAndJunkAfterQuote() {
        assertError("u.csv: row 3, column 2: unterminated quoted cell") { _ = try records("a,b\n1,2\n3,\"4\n5,6\n", name: "u.csv") }
        assertError("j.csv: row 2, column 1: 'x' after a closing quote") { _ = try records("a,b\n\"1\"x,2\n", name: "j.csv") }
    }

    func testNumbers() {
        XCTAssertEqual(number(" 1.5 "), 1.5)
        XCTAssertEqual(number("-0.25"), -0.25)
        XCTAssertEqual(number("+7"), 7)
        XCTAssertEqual(number("1e5"), 100000)
        XCTAssertEqual(number("2.5E-3"), 0.0025)
        XCTAssertEqual(number(".5"), 0.5)
        for bad in ["", "  ", "nan", "NaN", "inf", "-inf", "Infinity", "abc", "0x10", "1e400", "1e", "-", ".", "1.2.3", "1,5", "12a"] {
            XCTAssertNil(number(bad), bad)
        }
        // The fast path agrees with strtod (Double(String)) bit for bit.
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20000 {
            let digits = Int.random(in: 1...17, using: &rng)
            var s = String((0..<digits).map { _ in Character(String(Int.random(in: 0...9, using: &rng))) })
            let dot = Int.random(in: 0...digits, using: &rng)
            s.insert(".", at: s.index(s.startIndex, offsetBy: dot))
            if Bool.random(using: &rng) { s = "-" + s }
            guard s != "." && s != "-." else { continue }
            XCTAssertEqual(number(s)?.bitPattern, Double(s)?.bitPattern, s)
        }
        let cell = Array("3.4e39".utf8).withUnsafeBufferPointer { CSVCell(bytes: $0).float }
        XCTAssertNil(cell)  // finite Double, but not a finite Float
    }

    func testMissingFile() {
        assertError("/nonexistent/x.csv: no such file") { try CSV.read(path: "/nonexistent/x.csv") { _ in } }
        assertError("/nonexistent/x.csv: no such file") { _ = try TableSchema.infer(path: "/nonexistent/x.csv") }
    }

    // MARK: - Header detection

    func testHeaderDetection() throws {
        XCTAssertTrue(try schema("age,bmi,y\n59,32.1,1\n48,21.6,0\n").hasHeader)
        XCTAssertFalse(try schema("59,32.1,1\n48,21.6,0\n").hasHeader)
        // A column of names over numbers is enough, even when other columns are strings.
        XCTAssertTrue(try schema("color,size,y\nred,1,a\nblue,2,b\n").hasHeader)
        // All strings: a header when its cells never reappear below; not when they do.
        XCTAssertTrue(try schema("color,size\nred,small\nblue,big\nred,big\n").hasHeader)
        let noHeader = try schema("red,small\nblue,big\nred,big\n")
        XCTAssertFalse(noHeader.hasHeader)
        XCTAssertEqual(noHeader.columns, ["column0", "column1"])
        XCTAssertEqual(noHeader.trainingRows, 3)
    }

    func testEmptyHeaderCellIsNamedByPosition() throws {
        let s = try schema(",x,y\n0,1.5,a\n1,2.5,b\n", TableOptions(standardize: false))
        XCTAssertEqual(s.columns, ["column0", "x", "y"])
        XCTAssertEqual(try s.encode(bytes: Array(",x,y\n7,1.5,b\n".utf8), name: "t").features, [7, 1.5])
    }

    func testHeaderOverrides() throws {
        let numericHeader = try schema("1,2\n3,4\n5,6\n", TableOptions(header: true))
        XCTAssertEqual(numericHeader.columns, ["1", "2"])
        XCTAssertEqual(numericHeader.trainingRows, 2)
        // header: false makes "x" a value: column0 turns categorical, and "y" a class.
        let forced = try schema("x,y\n1,2\n3,4\n", TableOptions(header: false))
        XCTAssertEqual(forced.columns, ["column0", "column1"])
        XCTAssertEqual(forced.trainingRows, 3)
        XCTAssertEqual(forced.features.first?.categories, ["1", "3", "x"])
        XCTAssertEqual(forced.task, .classification)
        XCTAssertEqual(forced.classNames, ["2", "4", "y"])
    }

    // MARK: - Errors with file, row and column

    func testNonNumberNamesFileRowAndColumn() throws {
        let s = try schema("a,b,bmi,y\n1,2,3.5,0\n2,3,4.5,1\n")
        assertError("test.csv: row 3, column 3 ('bmi'): 'abc' is not a number") {
            _ = try s.encode(bytes: Array("a,b,bmi,y\n1,2,3,0\n1,2,abc,0\n".utf8), name: "test.csv")
        }
        // Without a header the column is named by position only.
        let p = try schema("1,2,0\n3,4,1\n")
        assertError("test.csv: row 2, column 2: 'x' is not a number") {
            _ = try p.encode(bytes: Array("1,2,0\n3,x,1\n".utf8), name: "test.csv")
        }
        assertError("train.csv: row 3, column 1 ('x'): 1e39 is too large for a 32-bit float") { _ = try schema("x,y\n1,2\n1e39,3\n") }
        // An explicit regression target must be numbers.
        assertError("train.csv: row 3, column 2 ('y'): 'high' is not a number") {
            _ = try schema("x,y\n1,2\n2,high\n", TableOptions(task: .regression))
        }
    }

    func testEmptyCellIsAnError() throws {
        assertError("e.csv: row 3, column 2 ('b'): empty cell") { _ = try schema("a,b,y\n1,2,0\n3,,1\n", name: "e.csv") }
        let s = try schema("a,b,y\n1,2,0\n3,4,1\n")
        assertError("t.csv: row 2, column 1 ('a'): empty cell") { _ = try s.encode(bytes: Array("a,b,y\n ,2,0\n".utf8), name: "t.csv") }
    }

    func testStructuralErrors() {
        assertError("train.csv: no records") { _ = try schema("# nothing\n") }
        assertError("train.csv: no data rows (only a header)") { _ = try schema("a,b,y\n", TableOptions(header: true)) }
        assertError("no feature columns") { _ = try schema("y\n1\n2\n") }
        assertError("train.csv: no column 'z' for the target; the columns are 'a', 'b', 'y'") {
            _ = try schema("a,b,y\n1,2,3\n", TableOptions(target: "z"))
        }
        assertError("target column index 3 is out of range: the table has 3 columns") {
            _ = try schema("a,b,y\n1,2,3\n", TableOptions(target: "3"))
        }
        assertError("columns 1 and 3 are both named 'a'") { _ = try schema("a,b,a\n1,2,3\n") }
        assertError("classification takes one target column") {
            _ = try schema("a,b,y\n1,2,3\n", TableOptions(target: "a,b", task: .classification))
        }
    }

    // MARK: - Categorical features and classes

    func testOneHotCategoriesSortedAndUnseenCategory() throws {
        let s = try schema("color,size,y\nred,1,a\nblue,2,b\ngreen,3,a\nred,4,b\n", TableOptions(standardize: false))
        XCTAssertEqual(s.categories, ["color": ["blue", "green", "red"]])
        XCTAssertEqual(s.inputWidth, 4)
        XCTAssertEqual(s.inputs.map(\.column), ["color", "color", "color", "size"])
        XCTAssertEqual(s.inputs.map(\.category), ["blue", "green", "red", nil])
        let table = try s.encode(bytes: Array("color,size,y\nred,1,a\nblue,2,b\ngreen,3,a\n".utf8), name: "t")
        XCTAssertEqual(table.features, [0, 0, 1, 1, 1, 0, 0, 2, 0, 1, 0, 3])
        assertError("t.csv: row 3, column 1 ('color'): 'purple' is not a category of the training table ('blue', 'green', 'red')") {
            _ = try s.encode(bytes: Array("color,size,y\nred,1,a\npurple,2,b\n".utf8), name: "t.csv")
        }
    }

    func testStringClassLabelsSortedAndUnseenLabel() throws {
        let s = try schema("x,animal\n1,dog\n2,cat\n3,bird\n4,cat\n")
        XCTAssertEqual(s.task, .classification)
        XCTAssertEqual(s.classNames, ["bird", "cat", "dog"])
        XCTAssertTrue(s.taskReason.contains("non-numeric values, e.g. 'dog' on row 2"), s.taskReason)
        let table = try s.encode(bytes: Array("x,animal\n1,dog\n2,cat\n3,bird\n".utf8), name: "t")
        XCTAssertEqual(table.classes, [2, 1, 0])
        XCTAssertNil(table.values)
        assertError("t.csv: row 3: label 'cow' is not one of the training classes ('bird', 'cat', 'dog')") {
            _ = try s.encode(bytes: Array("x,animal\n1,dog\n2,cow\n".utf8), name: "t.csv")
        }
    }

    func testIntegerLabelsSortNumericallyAndMatchByValue() throws {
        let s = try schema("x,y\n1,10\n2,2\n3,7\n4,2.0\n")
        XCTAssertEqual(s.task, .classification)
        XCTAssertEqual(s.classNames, ["2", "7", "10"])
        XCTAssertTrue(s.taskReason.contains("3 distinct integer values"), s.taskReason)
        let table = try s.encode(bytes: Array("x,y\n1,10\n2,2.0\n3,7\n".utf8), name: "t")
        XCTAssertEqual(table.classes, [2, 0, 1])
    }

    func testTaskInference() throws {
        let fractional = try schema("x,y\n1,1\n2,2.5\n")
        XCTAssertEqual(fractional.task, .regression)
        XCTAssertTrue(fractional.taskReason.contains("non-integer values, e.g. 2.5 on row 3"), fractional.taskReason)
        let many = try schema("x,y\n" + (0..<33).map { "\($0),\($0)" }.joined(separator: "\n"))
        XCTAssertEqual(many.task, .regression)
        XCTAssertTrue(many.taskReason.contains("more than 32"), many.taskReason)
        let thirtyTwo = try schema("x,y\n" + (0..<32).map { "\($0),\($0)" }.joined(separator: "\n"))
        XCTAssertEqual(thirtyTwo.task, .classification)
        XCTAssertEqual(thirtyTwo.classNames.count, 32)
        let given = try schema("x,y\n1,1\n2,2\n", TableOptions(task: .regression))
        XCTAssertEqual(given.task, .regression)
        XCTAssertEqual(given.taskReason, "given")
    }

    func testRealTables() throws {
        let diabetes = try TableSchema.infer(path: try sharedTable("diabetes/diabetes.csv"))
        XCTAssertEqual(diabetes.task, .regression)
        XCTAssertTrue(diabetes.hasHeader)
        XCTAssertEqual(diabetes.features.map(\.name), ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"])
        XCTAssertEqual(diabetes.inputWidth, 10)
        XCTAssertEqual(diabetes.targetNames, ["target"])
        XCTAssertEqual(diabetes.trainingRows, 442)
        let d = try diabetes.encode(path: try sharedTable("diabetes/diabetes.csv"))
        XCTAssertEqual(d.rows, 442)
        XCTAssertEqual(d.values?.prefix(2), [151, 75])

        let train = try sharedTable("optdigits/optdigits.tra")
        let digits = try TableSchema.infer(path: train)
        XCTAssertEqual(digits.task, .classification)
        XCTAssertFalse(digits.hasHeader)
        XCTAssertEqual(digits.classNames, (0...9).map(String.init))
        XCTAssertEqual(digits.inputWidth, 64)
        XCTAssertEqual(digits.trainingRows, 2999)
        let test = try digits.encode(path: try sharedTable("optdigits/optdigits.tes"))
        XCTAssertEqual(test.rows, 1797)
        XCTAssertEqual(test.features.count, 1797 * 64)
        XCTAssertEqual(test.classes?.first, 0)
        XCTAssert(test.features.allSatisfy(\.isFinite))
    }

    // MARK: - Standardization

    func testStandardizationMatchesReference() throws {
        var rng = SystemRandomNumberGenerator()
        let rows = 500
        let a = (0..<rows).map { _ in (Double.random(in: -1000...1000, using: &rng) * 1000).rounded() / 1000 }
        let b = (0..<rows).map { _ in (Double.random(in: 1e6...1e6 + 1, using: &rng) * 1e4).rounded() / 1e4 }  // large mean, small spread
        var text = "a,b,const,y\n"
        for i in 0..<rows { text += "\(a[i]),\(b[i]),5,\(i % 3)\n" }
        let s = try schema(text)
        let table = try s.encode(bytes: Array(text.utf8), name: "t")
        for (k, column) in [a, b, Array(repeating: 5, count: rows)].enumerated() {
            let mean = column.reduce(0, +) / Double(rows)
            let std = (column.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(rows)).squareRoot()
            XCTAssertEqual(s.means[k], mean, accuracy: 1e-9 * max(1, abs(mean)))
            XCTAssertEqual(s.stds[k], std == 0 ? 1 : std, accuracy: 1e-9 * max(1, std))
            for i in 0..<rows {
                let reference = (column[i] - mean) / (std == 0 ? 1 : std)
                XCTAssertEqual(Double(table.features[i * 3 + k]), reference, accuracy: 1e-6 * max(1, abs(reference)))
            }
        }
        XCTAssertEqual(table.features[2], 0)  // a constant column: std 1, value - mean

        let raw = try schema(text, TableOptions(standardize: false))
        XCTAssertEqual(try raw.encode(bytes: Array(text.utf8), name: "t").features.prefix(2), [Float(a[0]), Float(b[0])])
    }

    // MARK: - Regression targets, streaming, predict rows

    func testSeveralRegressionTargets() throws {
        let text = "a,t1,b,t2\n1,10,2,0.5\n3,20,4,1.5\n"
        let s = try schema(text, TableOptions(target: "t1, t2", standardize: false))
        XCTAssertEqual(s.task, .regression)
        XCTAssertEqual(s.targetNames, ["t1", "t2"])
        XCTAssertEqual(s.features.map(\.name), ["a", "b"])
        let table = try s.encode(bytes: Array(text.utf8), name: "t")
        XCTAssertEqual(table.values, [10, 0.5, 20, 1.5])
        XCTAssertEqual(table.features, [1, 2, 3, 4])
        XCTAssertEqual(try schema(text, TableOptions(target: "1,3")).targetNames, ["t1", "t2"])
        XCTAssertEqual(try schema(text, TableOptions(target: "0")).targetNames, ["a"])
    }

    func testEncodeRowsStreamsTheSameRowsAsEncode() throws {
        let text = "c,x,y\nu,1,a\nv,2,b\nu,5,a\n"
        let s = try schema(text)
        let whole = try s.encode(bytes: Array(text.utf8), name: "t")
        var features: [Float] = [], labels: [Int32] = []
        try Array(text.utf8).withUnsafeBytes { bytes in
            try s.encodeRows(bytes: bytes, name: "t") { f, target in
                XCTAssertEqual(f.count, 3)
                features += f
                if case .label(let k) = target { labels.append(k) }
            }
        }
        XCTAssertEqual(whole.rows, 3)
        XCTAssertEqual(features, whole.features)
        XCTAssertEqual(labels, [0, 1, 0])
    }

    func testTestTableColumnsMatchByName() throws {
        let s = try schema("a,b,y\n1,10,0\n3,30,1\n", TableOptions(standardize: false))
        let table = try s.encode(bytes: Array("y,extra,b,a\n1,z,30,3\n".utf8), name: "t")
        XCTAssertEqual(table.features, [3, 30])
        XCTAssertEqual(table.classes, [1])
        assertError("t.csv: the header (row 1) has no column 'b'") {
            _ = try s.encode(bytes: Array("a,y\n1,0\n".utf8), name: "t.csv")
        }
        let positional = try schema("1,10,0\n3,30,1\n", TableOptions(standardize: false))
        assertError("t.csv: row 1 has 2 cells, but the training table has 3 columns") {
            _ = try positional.encode(bytes: Array("1,10\n".utf8), name: "t.csv")
        }
    }

    func testEncodeRowWithAndWithoutTarget() throws {
        let s = try schema("color,size,y\nred,1,a\nblue,3,b\n")  // size: mean 2, std 1
        XCTAssertEqual(try s.encodeRow(cells: ["red", "3", "b"]), [0, 1, 1])
        XCTAssertEqual(try s.encodeRow(cells: ["blue", " 1 "]), [1, 0, -1])
        XCTAssertEqual(try s.encodeRow(cells: ["1", "blue"], header: ["size", "color"]), [1, 0, -1])
        assertError("input: row 1 has 1 cells, but the training table has 3 columns (or 2 without the target)") {
            _ = try s.encodeRow(cells: ["red"])
        }
        assertError("p.csv: row 4, column 2 ('size'): 'big' is not a number") {
            _ = try s.encodeRow(cells: ["red", "big"], name: "p.csv", row: 4)
        }
        let withHeader = try Array("size,color\n3,red\n".utf8).withUnsafeBytes { try s.encodeInputs(bytes: $0, name: "p") }
        XCTAssertEqual(withHeader.rows, 1)
        XCTAssertEqual(withHeader.features, [0, 1, 1])
        let positional = try Array("red,1,zebra\nblue,3,a\n".utf8).withUnsafeBytes { try s.encodeInputs(bytes: $0, name: "p") }
        XCTAssertEqual(positional.features, [0, 1, -1, 1, 0, 1])  // the target column is not read
    }

    func testSchemaJSONRoundTripAndCorruptSchema() throws {
        let s = try schema("color,size,y\nred,1,3\nblue,3,5\n")
        let json = try JSONEncoder().encode(s)
        XCTAssertEqual(try JSONDecoder().decode(TableSchema.self, from: json), s)
        var bad = try XCTUnwrap(try JSONSerialization.jsonObject(with: json) as? [String: Any])
        bad["targetColumns"] = [7]
        XCTAssertThrowsError(try JSONDecoder().decode(TableSchema.self, from: try JSONSerialization.data(withJSONObject: bad))) { error in
            XCTAssertTrue("\(error)".contains("table schema: target columns [7] do not fit 3 columns"), "\(error)")
        }
    }

    // MARK: - Speed

    /// CSV_BENCH_ROWS=N: writes an N-row, 11-column numeric table and times the reader (cells parsed
    /// as numbers), the schema inference and the encoding. Run in release:
    /// `CSV_BENCH_ROWS=1000000 swift test -c release --filter CSVTests.testSpeed`.
    func testSpeed() throws {
        guard let n = ProcessInfo.processInfo.environment["CSV_BENCH_ROWS"].flatMap(Int.init) else {
            throw XCTSkip("set CSV_BENCH_ROWS to measure")
        }
        let path = NSTemporaryDirectory() + "csv-bench-\(UUID().uuidString).csv"
        defer { try? FileManager.default.removeItem(atPath: path) }
        var text = "f0,f1,f2,f3,f4,f5,f6,f7,f8,f9,y\n"
        var rng = SystemRandomNumberGenerator()
        XCTAssert(FileManager.default.createFile(atPath: path, contents: nil))
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: path))
        for i in 0..<n {
            for _ in 0..<10 { text += String(format: "%.4f,", Double.random(in: -100...100, using: &rng)) }
            text += "\(Double(i % 1000) * 0.5)\n"
            if text.utf8.count > 1 << 20 { handle.write(text.data(using: .utf8)!); text = "" }
        }
        handle.write(text.data(using: .utf8)!)
        handle.closeFile()
        let size = Double((try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0)

        func time(_ what: String, _ body: () throws -> Void) rethrows {
            let start = Date()
            try body()
            let s = Date().timeIntervalSince(start)
            print(String(format: "%@: %.3f s, %.2f M rows/s, %.0f MB/s", what, s, Double(n) / s / 1e6, size / s / 1e6))
        }
        var sum = 0.0, rows = 0
        try time("read + parse 11 numbers per row") {
            try CSV.read(path: path) { r in
                rows += 1
                for cell in r { sum += cell.number ?? 0 }
            }
        }
        XCTAssertEqual(rows, n + 1)
        var schema: TableSchema?
        try time("infer (two passes)") { schema = try TableSchema.infer(path: path) }
        XCTAssertEqual(schema?.task, .regression)
        var encoded = 0
        try time("encodeRows") { try schema!.encodeRows(path: path) { _, _ in encoded += 1 } }
        XCTAssertEqual(encoded, n)
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        print("file \(Int(size / 1e6)) MB, max RSS \(usage.ru_maxrss / 1024) MB (the file is mapped, so its pages count while read)")
    }
}
