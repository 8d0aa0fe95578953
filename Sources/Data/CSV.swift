import Foundation

/// A streaming CSV/TSV reader (RFC 4180): one callback per record, with cells handed as views into
/// the file's bytes, so a table of millions of rows is read without building it as strings.
///
/// What it accepts, beyond RFC 4180: a UTF-8 BOM at the start; LF or CRLF line ends; blank lines
/// (empty, or only spaces, tabs and CR) and lines whose first byte is `#` are skipped; spaces around
/// an unquoted cell, and around a quoted one, are trimmed (quote a cell to keep its spaces); a quote
/// inside an unquoted cell is an ordinary character. A quoted cell holds delimiters and newlines,
/// with `""` for a quote. Every record must have as many cells as the first.
///
/// Errors are one line naming the file and the 1-based line (`row`) where the problem is.
public enum CSV {
    public static let comma = UInt8(ascii: ",")
    public static let tab = UInt8(ascii: "\t")

    /// The delimiter of a file: tab for `.tsv`/`.tab`, else tab if the first record's line has
    /// tabs and no commas, else comma.
    public static func delimiter(name: String, bytes: UnsafeRawBufferPointer) -> UInt8 {
        let ext = (name as NSString).pathExtension.lowercased()
        if ext == "tsv" || ext == "tab" { return tab }
        var commas = 0, tabs = 0
        forFirstContentLine(bytes) { c in
            if c == comma { commas += 1 } else if c == tab { tabs += 1 }
        }
        return tabs > 0 && commas == 0 ? tab : comma
    }

    /// Calls `body` once per record, in file order, at most `limit` times. The record and its
    /// cells are valid only during the call. `delimiter` nil: chosen by `delimiter(name:bytes:)`.
    public static func read(bytes: UnsafeRawBufferPointer, name: String, delimiter: UInt8? = nil, limit: Int = .max,
                            _ body: (CSVRecord) throws -> Void) throws {
        let delim = delimiter ?? self.delimiter(name: name, bytes: bytes)
        guard delim != quote && delim != lf && delim != cr && delim != space && delim != hash else {
            throw DataError("\(name): '\(Character(Unicode.Scalar(delim)))' cannot be a delimiter")
        }
        guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), !bytes.isEmpty else { return }
        var parser = Parser(p: base, n: bytes.count, delim: delim, name: name)
        defer { parser.deallocate() }
        try parser.run(limit: limit, body)
    }

    public static func read(bytes: [UInt8], name: String, delimiter: UInt8? = nil, limit: Int = .max,
                            _ body: (CSVRecord) throws -> Void) throws {
        try bytes.withUnsafeBytes { try read(bytes: $0, name: name, delimiter: delimiter, limit: limit, body) }
    }

    /// Reads the file at `path`; messages name its last path component.
    public static func read(path: String, delimiter: UInt8? = nil, limit: Int = .max, _ body: (CSVRecord) throws -> Void) throws {
        try withContents(path: path) {
            try read(bytes: $0, name: (path as NSString).lastPathComponent, delimiter: delimiter, limit: limit, body)
        }
    }

    /// Maps the file read-only for the duration of `body` (no copy: the kernel pages it in), so
    /// several passes over a large table cost no memory of their own.
    public static func withContents<R>(path: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw DataError("\(path): no such file")
        }
        guard !isDirectory.boolValue else { throw DataError("\(path): is a directory, not a table file") }
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw DataError("\(path): cannot open file (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw DataError("\(path): cannot read file (\(String(cString: strerror(errno))))") }
        let size = Int(info.st_size)
        if size == 0 { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else {
            throw DataError("\(path): cannot read file (\(String(cString: strerror(errno))))")
        }
        defer { munmap(map, size) }
        return try body(UnsafeRawBufferPointer(start: map, count: size))
    }

    /// Feeds the bytes of the first line that is not blank or a comment, after a BOM.
    private static func forFirstContentLine(_ bytes: UnsafeRawBufferPointer, _ visit: (UInt8) -> Void) {
        var i = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
        while i < bytes.count {
            var end = i
            while end < bytes.count && bytes[end] != lf { end += 1 }
            let blank = bytes[i..<end].allSatisfy { $0 == space || $0 == tab || $0 == cr }
            if !blank && bytes[i] != hash {
                for c in bytes[i..<end] { visit(c) }
                return
            }
            i = end + 1
        }
    }
}

/// One record: its line in the file (where it starts) and its cells.
public struct CSVRecord: RandomAccessCollection {
    /// The 1-based line number where the record starts.
    public let line: Int
    let spans: UnsafePointer<CSVSpan>
    let input: UnsafePointer<UInt8>
    let scratch: UnsafePointer<UInt8>
    public let count: Int

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }

    @inline(__always)
    public subscript(i: Int) -> CSVCell {
        let s = spans[i]
        return CSVCell(bytes: UnsafeBufferPointer(start: (s.inScratch ? scratch : input) + s.start, count: s.count))
    }

    /// The cells as strings (allocates: for headers and small samples, not for every row).
    public var strings: [String] { map(\.string) }

    /// Runs `body` with a record whose cells are `cells`, trimmed as the reader trims unquoted cells:
    /// lets strings from elsewhere (a predict request) go through the same cell parsing.
    public static func with<R>(cells: [String], line: Int, _ body: (CSVRecord) throws -> R) rethrows -> R {
        var bytes: [UInt8] = []
        var spans: [CSVSpan] = []
        for cell in cells {
            let utf8 = Array(cell.utf8)
            var s = 0, e = utf8.count
            while s < e && isSpace(utf8[s]) { s += 1 }
            while e > s && isSpace(utf8[e - 1]) { e -= 1 }
            spans.append(CSVSpan(start: bytes.count, count: e - s, inScratch: false))
            bytes += utf8[s..<e]
        }
        bytes.append(0)  // never empty, so the base address exists
        return try bytes.withUnsafeBufferPointer { b in
            try spans.withUnsafeBufferPointer { sp in
                try body(CSVRecord(line: line, spans: sp.baseAddress!, input: b.baseAddress!, scratch: b.baseAddress!, count: cells.count))
            }
        }
    }
}

/// One cell, a view of bytes valid only during the callback that received it.
public struct CSVCell {
    public let bytes: UnsafeBufferPointer<UInt8>

    public init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    public var isEmpty: Bool { bytes.isEmpty }
    public var string: String { String(decoding: bytes, as: UTF8.self) }

    /// The cell as a finite number, or nil: empty, `nan`, `inf`, hex, out of range, or not a number.
    /// Spaces around it are accepted.
    public var number: Double? { parseNumber(bytes) }

    /// `number` rounded to Float, nil if that overflows.
    public var float: Float? {
        guard let x = number else { return nil }
        let f = Float(x)
        return f.isFinite ? f : nil
    }
}

/// Where a cell's bytes are: in the input, or (a quoted cell with `""` escapes) in the reader's
/// scratch buffer, which may move while the record is read, hence offsets, not pointers.
struct CSVSpan {
    var start: Int
    var count: Int
    var inScratch: Bool
}

private let quote = UInt8(ascii: "\""), lf = UInt8(ascii: "\n"), cr = UInt8(ascii: "\r")
private let space = UInt8(ascii: " "), hash = UInt8(ascii: "#")

@inline(__always) private func isSpace(_ c: UInt8) -> Bool { c == space || c == CSV.tab || c == cr }

/// The reader's state: the input, the line count, and two growable buffers reused for every record.
private struct Parser {
    let p: UnsafePointer<UInt8>
    let n: Int
    let delim: UInt8
    let name: String
    var line = 1
    var spans = UnsafeMutablePointer<CSVSpan>.allocate(capacity: 64)
    var spanCapacity = 64
    var scratch = UnsafeMutablePointer<UInt8>.allocate(capacity: 256)
    var scratchCapacity = 256
    var scratchUsed = 0

    init(p: UnsafePointer<UInt8>, n: Int, delim: UInt8, name: String) {
        self.p = p; self.n = n; self.delim = delim; self.name = name
    }

    func deallocate() {
        spans.deallocate()
        scratch.deallocate()
    }

    /// A space to trim: space, CR, and tab unless tab is the delimiter.
    @inline(__always) func trims(_ c: UInt8) -> Bool { c == space || c == cr || (c == CSV.tab && delim != CSV.tab) }

    mutating func run(limit: Int, _ body: (CSVRecord) throws -> Void) throws {
        var i = n >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF ? 3 : 0
        var expected = -1, firstLine = 0, records = 0
        while i < n && records < limit {
            var j = i
            while j < n && isSpace(p[j]) { j += 1 }
            if j == n { break }
            if p[j] == lf { i = j + 1; line += 1; continue }  // blank line
            if p[i] == hash {  // comment line
                while i < n && p[i] != lf { i += 1 }
                i += 1; line += 1
                continue
            }
            let recordLine = line
            var cells = 0
            scratchUsed = 0
            i = try readRecord(from: i, cells: &cells)
            if expected < 0 {
                expected = cells; firstLine = recordLine
            } else if cells != expected {
                throw DataError("\(name): row \(recordLine) has \(cells) cells, but the first record (row \(firstLine)) has \(expected)")
            }
            try body(CSVRecord(line: recordLine, spans: spans, input: p, scratch: scratch, count: cells))
            records += 1
        }
    }

    /// Reads one record's cells into `spans`; returns the index after its line end.
    mutating func readRecord(from start: Int, cells: inout Int) throws -> Int {
        var k = start
        while true {
            var s = k
            while s < n && trims(p[s]) { s += 1 }
            let span: CSVSpan
            if s < n && p[s] == quote {
                (span, k) = try readQuoted(openedAt: s, column: cells + 1)
            } else {
                var e = s
                while e < n && p[e] != delim && p[e] != lf { e += 1 }
                k = e
                while e > s && trims(p[e - 1]) { e -= 1 }
                span = CSVSpan(start: s, count: e - s, inScratch: false)
            }
            if cells == spanCapacity { growSpans() }
            spans[cells] = span
            cells += 1
            if k < n && p[k] == delim { k += 1; continue }
            if k < n { line += 1; return k + 1 }  // at LF
            return n
        }
    }

    /// A quoted cell from its opening quote; returns the cell and the index after its closing quote
    /// and any spaces, which must be at a delimiter, a line end or the end of the input.
    mutating func readQuoted(openedAt open: Int, column: Int) throws -> (CSVSpan, Int) {
        let openLine = line
        var q = open + 1
        var escaped = false
        var close = -1
        while q < n {
            let c = p[q]
            if c == quote {
                if q + 1 < n && p[q + 1] == quote { escaped = true; q += 2; continue }
                close = q
                break
            }
            if c == lf { line += 1 }
            q += 1
        }
        guard close >= 0 else {
            throw DataError("\(name): row \(openLine), column \(column): unterminated quoted cell (its opening quote is never closed)")
        }
        var span = CSVSpan(start: open + 1, count: close - open - 1, inScratch: false)
        if escaped {
            if scratchUsed + span.count > scratchCapacity { growScratch(to: scratchUsed + span.count) }
            var out = scratchUsed, r = open + 1
            while r < close {
                scratch[out] = p[r]
                out += 1
                r += p[r] == quote ? 2 : 1
            }
            span = CSVSpan(start: scratchUsed, count: out - scratchUsed, inScratch: true)
            scratchUsed = out
        }
        var k = close + 1
        while k < n && trims(p[k]) { k += 1 }
        if k < n && p[k] != delim && p[k] != lf {
            let c = p[k] < 0x80 && p[k] >= 0x20 ? "'\(Character(Unicode.Scalar(p[k])))'" : String(format: "byte 0x%02X", p[k])
            throw DataError("\(name): row \(line), column \(column): \(c) after a closing quote (write a quote inside a quoted cell as \"\")")
        }
        return (span, k)
    }

    mutating func growSpans() {
        let bigger = UnsafeMutablePointer<CSVSpan>.allocate(capacity: spanCapacity * 2)
        bigger.moveInitialize(from: spans, count: spanCapacity)
        spans.deallocate()
        spans = bigger
        spanCapacity *= 2
    }

    mutating func growScratch(to needed: Int) {
        let capacity = max(needed, scratchCapacity * 2)
        let bigger = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
        bigger.update(from: scratch, count: scratchUsed)
        scratch.deallocate()
        scratch = bigger
        scratchCapacity = capacity
    }
}

/// Exact powers of ten for the fast path: 10^k is a Double exactly for k <= 22. A literal, so the
/// compiler lays it out statically (no lazy-initialization check on every number).
private let powersOfTen: [Double] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22]

/// A finite number, or nil. Plain decimals (`-12.5`, at most 15 or so digits) take Clinger's fast
/// path: an integer mantissa below 2^53 divided by an exact power of ten is correctly rounded, so the
/// result equals strtod's. Everything else (exponents, long mantissas) goes to strtod on a
/// NUL-terminated copy, after checking the characters, so `nan`, `inf` and hex floats are refused.
func parseNumber(_ b: UnsafeBufferPointer<UInt8>) -> Double? {
    var s = 0, e = b.count
    while s < e && isSpace(b[s]) { s += 1 }
    while e > s && isSpace(b[e - 1]) { e -= 1 }
    guard s < e else { return nil }
    var i = s
    let negative = b[i] == UInt8(ascii: "-")
    if negative || b[i] == UInt8(ascii: "+") { i += 1 }
    var mantissa: UInt64 = 0, fraction = 0, digits = 0, dot = false
    while i < e {
        let c = b[i]
        if c &- UInt8(ascii: "0") < 10 {
            guard mantissa < 900_719_925_474_099 else { return parseNumberSlowly(b, s, e) }  // 2^53 / 10
            mantissa = mantissa &* 10 &+ UInt64(c &- UInt8(ascii: "0"))
            digits += 1
            if dot { fraction += 1 }
        } else if c == UInt8(ascii: ".") && !dot {
            dot = true
        } else {
            return parseNumberSlowly(b, s, e)
        }
        i += 1
    }
    guard digits > 0 else { return nil }
    guard fraction <= 22 else { return parseNumberSlowly(b, s, e) }
    let magnitude = Double(mantissa) / powersOfTen[fraction]
    return negative ? -magnitude : magnitude
}

private func parseNumberSlowly(_ b: UnsafeBufferPointer<UInt8>, _ s: Int, _ e: Int) -> Double? {
    var digits = false
    for c in b[s..<e] {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digits = true
        case UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E"): break
        default: return nil
        }
    }
    guard digits else { return nil }
    return withUnsafeTemporaryAllocation(of: CChar.self, capacity: e - s + 1) { text -> Double? in
        for k in 0..<(e - s) { text[k] = CChar(bitPattern: b[s + k]) }
        text[e - s] = 0
        var end: UnsafeMutablePointer<CChar>?
        let x = strtod(text.baseAddress!, &end)
        guard end == text.baseAddress! + (e - s), x.isFinite else { return nil }
        return x
    }
}
