import CZlib
import Foundation
import Engine

/// A table encoded once into a binary file and memory-mapped from then on, for tables larger than
/// memory: training touches only the pages of the rows it gathers, so with `--shard-data` each rank
/// keeps about 1/W of the table resident, and no rank parses the text again.
///
/// The file sits beside the table (`TABLE.ddpcache`), or in `~/.cache/ddp-train` when that folder
/// is not writable:
///
///     "DDPTABLE" | u64 header offset | features f32 [rows x width] | targets (i32 [rows] or
///     f32 [rows x targets]) | header JSON
///
/// The header records the source's size and modification time, the options and the schema it was
/// encoded with, and a CRC-32 of everything between the prelude and the header. A cache whose source
/// changed, whose options differ, or whose checksum fails is rebuilt (atomically, by one rank).
public enum TableCache {
    static let magic = Array("DDPTABLE".utf8)
    static let prelude = 16
    /// Tables at least this large are cached by default.
    public static let autoThreshold = 64 << 20

    struct Header: Codable, Equatable {
        var version = 1
        var sourceSize: Int
        var sourceModified: Double
        /// The encoding: the schema, fitted here or given (a test table under the training schema).
        var schema: TableSchema
        var options: String
        var rows: Int
        var crc32: UInt32
    }

    /// Where the cache of `source` lives.
    public static func path(for source: String) -> String {
        let dir = (source as NSString).deletingLastPathComponent
        let name = (source as NSString).lastPathComponent + ".ddpcache"
        if FileManager.default.isWritableFile(atPath: dir.isEmpty ? "." : dir) { return (dir.isEmpty ? "" : dir + "/") + name }
        let home = ProcessInfo.processInfo.environment["HOME"] ?? NSTemporaryDirectory()
        let key = String(format: "%08x", crc32(0, Array(source.utf8), UInt32(source.utf8.count)))
        return home + "/.cache/ddp-train/" + key + "-" + name
    }

    /// Whether `source` is cached under the `--table-cache` choice (nil: when it is large).
    public static func applies(to source: String, choice: Bool?) -> Bool {
        if let choice { return choice }
        let size = (try? FileManager.default.attributesOfItem(atPath: source)[.size] as? Int) ?? 0
        return size >= autoThreshold
    }

    /// The cached table: a valid cache is mapped as it is; otherwise the table is encoded with
    /// `schema` (nil: inferred with `options`) into a new cache first. Returns the schema and the
    /// mapped storage.
    public static func load(source: String, schema given: TableSchema?, options: TableOptions) throws -> (TableSchema, SampleStorage) {
        let cache = path(for: source)
        let (size, modified) = try stamp(source)
        let optionText = describe(options)
        if let mapped = try? open(cache, expect: { h in
            h.sourceSize == size && h.sourceModified == modified && h.options == optionText && (given == nil || h.schema == given!)
        }) {
            return mapped
        }
        let schema = try given ?? TableSchema.infer(path: source, options: options)
        try build(source: source, schema: schema, options: optionText, stamp: (size, modified), to: cache)
        guard let mapped = try open(cache, expect: { _ in true }) else { throw DataError("\(cache): the table cache just written cannot be read") }
        return mapped
    }

    static func stamp(_ source: String) throws -> (Int, Double) {
        var info = stat()
        guard stat(source, &info) == 0 else { throw DataError("\(source): no such file") }
        return (Int(info.st_size), Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) * 1e-9)
    }

    static func describe(_ o: TableOptions) -> String {
        "target=\(o.target ?? "last") task=\(o.task?.rawValue ?? "inferred") header=\(o.header.map { "\($0)" } ?? "detected") "
            + "standardize=\(o.standardize) delimiter=\(o.delimiter.map { "\($0)" } ?? "sniffed")"
    }

    /// Encodes the table row by row into `cache`: features stream to the file; the targets (4 bytes
    /// a row) are kept until the end.
    static func build(source: String, schema: TableSchema, options: String, stamp: (Int, Double), to cache: String) throws {
        try FileManager.default.createDirectory(atPath: (cache as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let temporary = cache + ".tmp-\(getpid())"
        guard let file = fopen(temporary, "wb") else { throw DataError("\(temporary): cannot write the table cache (\(String(cString: strerror(errno))))") }
        var closed = false
        defer {
            if !closed { fclose(file) }
            unlink(temporary)
        }
        func write(_ p: UnsafeRawPointer, _ n: Int) throws {
            guard n == 0 || fwrite(p, 1, n, file) == n else { throw DataError("\(temporary): write failed (\(String(cString: strerror(errno))))") }
        }
        var prelude = magic + [UInt8](repeating: 0, count: 8)
        try write(&prelude, prelude.count)
        var crc = crc32(0, nil, 0)
        var rows = 0
        var classes: [Int32] = [], values: [Float] = []
        try schema.encodeRows(path: source) { features, target in
            crc = crc32(crc, UnsafeRawPointer(features.baseAddress!).assumingMemoryBound(to: UInt8.self), UInt32(features.count * 4))
            try write(features.baseAddress!, features.count * 4)
            switch target {
            case .label(let c): classes.append(c)
            case .values(let v): values.append(contentsOf: v)
            }
            rows += 1
        }
        let targetBytes: [UInt8] = schema.task == .classification
            ? classes.withUnsafeBytes { Array($0) } : values.withUnsafeBytes { Array($0) }
        crc = crc32(crc, targetBytes, UInt32(targetBytes.count))
        try write(targetBytes, targetBytes.count)
        let header = Header(sourceSize: stamp.0, sourceModified: stamp.1, schema: schema, options: options, rows: rows, crc32: UInt32(crc))
        let json = try JSONEncoder().encode(header)
        let offset = UInt64(prelude.count + rows * schema.inputWidth * 4 + targetBytes.count)
        try json.withUnsafeBytes { try write($0.baseAddress!, $0.count) }
        guard fseek(file, 8, SEEK_SET) == 0 else { throw DataError("\(temporary): seek failed") }
        var le = offset.littleEndian
        try write(&le, 8)
        guard fflush(file) == 0, fsync(fileno(file)) == 0 else { throw DataError("\(temporary): write failed (\(String(cString: strerror(errno))))") }
        fclose(file)
        closed = true
        guard rename(temporary, cache) == 0 else { throw DataError("\(cache): cannot write the table cache (\(String(cString: strerror(errno))))") }
    }

    /// Maps `cache` if it exists, is whole, passes its checksum and `expect` accepts its header;
    /// nil otherwise (it is then rebuilt). The checksum is read with `pread`, so checking it does not
    /// make the mapping resident.
    static func open(_ cache: String, expect: (Header) -> Bool) throws -> (TableSchema, SampleStorage)? {
        let fd = Glibc.open(cache, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return nil }
        let size = Int(info.st_size)
        var prelude = [UInt8](repeating: 0, count: prelude)
        guard size > prelude.count, pread(fd, &prelude, prelude.count, 0) == prelude.count, Array(prelude[0..<8]) == magic else { return nil }
        let offset = prelude[8..<16].enumerated().reduce(0) { $0 | (Int($1.element) << (8 * $1.offset)) }
        guard offset >= self.prelude && offset < size else { return nil }
        var json = [UInt8](repeating: 0, count: size - offset)
        guard pread(fd, &json, json.count, off_t(offset)) == json.count,
              let header = try? JSONDecoder().decode(Header.self, from: Data(json)), expect(header) else { return nil }
        let width = header.schema.inputWidth, targets = header.schema.task == .classification ? 1 : header.schema.targetCount
        guard header.rows >= 0, offset == self.prelude + header.rows * (width + targets) * 4 else { return nil }
        // The checksum, in chunks read past the mapping.
        var crc = crc32(0, nil, 0)
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        var at = self.prelude
        while at < offset {
            let n = min(chunk.count, offset - at)
            guard pread(fd, &chunk, n, off_t(at)) == n else { return nil }
            crc = crc32(crc, chunk, UInt32(n))
            at += n
        }
        guard UInt32(crc) == header.crc32 else { return nil }
        guard let map = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), map != MAP_FAILED else {
            throw DataError("\(cache): cannot map the table cache (\(String(cString: strerror(errno))))")
        }
        let features = (map + self.prelude).assumingMemoryBound(to: Float.self)
        let targetBase = map + self.prelude + header.rows * width * 4
        let classification = header.schema.task == .classification
        let storage = SampleStorage(rows: header.rows, bytes: nil, floats: UnsafePointer(features),
                                    classes: classification ? UnsafePointer(targetBase.assumingMemoryBound(to: Int32.self)) : nil,
                                    values: classification ? nil : UnsafePointer(targetBase.assumingMemoryBound(to: Float.self))) {
            munmap(map, size)
        }
        return (header.schema, storage)
    }
}
