import Foundation

/// The safetensors format: an 8-byte little-endian header length N, N bytes of JSON
/// `{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}`
/// padded with spaces to a multiple of 8, then the tensors' little-endian bytes, back to back.
public enum SafeTensors {
    /// A tensor read from a file: F32 values, or I64 values (BatchNorm's num_batches_tracked).
    public struct Tensor: Equatable {
        public var shape: [Int]
        public var values: [Float]
        /// The values of an I64 tensor (`values` is then empty).
        public var integers: [Int64]?
        public init(shape: [Int], values: [Float]) { self.shape = shape; self.values = values }
        public init(shape: [Int], integers: [Int64]) { self.shape = shape; self.values = []; self.integers = integers }
        public var dtype: String { integers == nil ? "F32" : "I64" }
    }

    /// A named tensor to write: `count` F32 or I64 values at `pointer`.
    public struct Source {
        public let name: String
        public let shape: [Int]
        public let pointer: UnsafeRawPointer
        public let dtype: String
        public init(name: String, shape: [Int], pointer: UnsafePointer<Float>) {
            self.name = name
            self.shape = shape
            self.pointer = UnsafeRawPointer(pointer)
            dtype = "F32"
        }
        public init(name: String, shape: [Int], int64Pointer: UnsafePointer<Int64>) {
            self.name = name
            self.shape = shape
            self.pointer = UnsafeRawPointer(int64Pointer)
            dtype = "I64"
        }
        var bytes: Int { shape.reduce(1, *) * (dtype == "I64" ? 8 : 4) }
    }

    /// The file's bytes, tensors in the order given.
    public static func encode(_ tensors: [Source], metadata: [String: String] = [:]) -> [UInt8] {
        var json = "{"
        var first = true
        if !metadata.isEmpty {
            json += "\"__metadata__\":{" + metadata.keys.sorted().map { "\(quote($0)):\(quote(metadata[$0]!))" }.joined(separator: ",") + "}"
            first = false
        }
        var offset = 0
        for t in tensors {
            let bytes = t.bytes
            if !first { json += "," }
            first = false
            json += "\(quote(t.name)):{\"dtype\":\"\(t.dtype)\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + bytes)]}"
            offset += bytes
        }
        json += "}"
        var header = Array(json.utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        var out = [UInt8]()
        out.reserveCapacity(8 + header.count + offset)
        var n = UInt64(header.count).littleEndian
        withUnsafeBytes(of: &n) { out += $0 }
        out += header
        for t in tensors {
            out += UnsafeRawBufferPointer(start: t.pointer, count: t.bytes)  // x86-64 and ARM64 are little-endian
        }
        return out
    }

    public static func write(_ tensors: [Source], metadata: [String: String] = [:], to path: String) throws {
        try AtomicFile.write(encode(tensors, metadata: metadata), to: path)
    }

    /// Parses the safetensors image in `bytes[start...]` (a whole file, or a checkpoint's body after
    /// its header, without copying it out). Every structural problem is a `DataError` naming `name`.
    public static func decode(_ bytes: [UInt8], from start: Int = 0, name: String)
        throws -> (tensors: [String: Tensor], order: [String], metadata: [String: String]) {
        func bad(_ why: String) -> DataError { DataError("\(name): not a valid safetensors file: \(why)") }
        let size = bytes.count - start
        guard size >= 8 else { throw bad(size == 0 ? "empty file" : "shorter than its 8-byte header length") }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(bytes[start + i]) << (8 * UInt64(i)) }
        guard n > 0, n <= UInt64(size - 8), n < 100_000_000 else {
            throw bad("header length \(n) does not fit the file size \(size)")
        }
        let headerEnd = start + 8 + Int(n)
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes[(start + 8)..<headerEnd])),
              let header = object as? [String: Any] else { throw bad("header is not a JSON object") }
        let dataSize = bytes.count - headerEnd
        var tensors: [String: Tensor] = [:]
        var metadata: [String: String] = [:]
        var spans: [(begin: Int, end: Int, name: String)] = []
        for (key, value) in header {
            if key == "__metadata__" {
                guard let m = value as? [String: String] else { throw bad("__metadata__ is not a string map") }
                metadata = m
                continue
            }
            guard let info = value as? [String: Any], let dtype = info["dtype"] as? String,
                  let shape = info["shape"] as? [Int], let offsets = info["data_offsets"] as? [Int], offsets.count == 2
            else { throw bad("entry '\(key)' lacks dtype, shape or data_offsets") }
            guard dtype == "F32" || dtype == "I64" else {
                throw DataError("\(name): tensor '\(key)' has dtype \(dtype); only F32 (and I64 for counters) is supported")
            }
            let size = dtype == "I64" ? 8 : 4
            guard let count = elementCount(shape), count <= dataSize / size else {
                throw bad("tensor '\(key)' has shape \(shape), larger than the file (truncated?)")
            }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin >= 0, end >= begin, end <= dataSize else { throw bad("tensor '\(key)' lies outside the file (truncated?)") }
            guard end - begin == count * size else { throw bad("tensor '\(key)': shape \(shape) needs \(count * size) bytes, offsets give \(end - begin)") }
            func load<T: Numeric>(_: T.Type) -> [T] {
                var values = [T](repeating: 0, count: count)
                values.withUnsafeMutableBytes { dst in
                    bytes.withUnsafeBytes { src in dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[(headerEnd + begin)..<(headerEnd + end)])) }
                }
                return values
            }
            tensors[key] = dtype == "I64" ? Tensor(shape: shape, integers: load(Int64.self)) : Tensor(shape: shape, values: load(Float.self))
            spans.append((begin, end, key))
        }
        // By (begin, end): a zero-size tensor may share its offset with the next one (it sorts first),
        // and the name makes `order` the same in every process (dictionary order is not).
        spans.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        var expected = 0
        for s in spans {
            guard s.begin == expected else { throw bad("tensor '\(s.name)' overlaps or leaves a gap in the data") }
            expected = s.end
        }
        guard expected == dataSize else { throw bad("\(dataSize - expected) bytes after the last tensor (wrong length)") }
        return (tensors, spans.map(\.name), metadata)
    }

    public static func read(path: String) throws -> (tensors: [String: Tensor], order: [String], metadata: [String: String]) {
        guard FileManager.default.fileExists(atPath: path) else { throw DataError("\(path): no such file") }
        guard let data = FileManager.default.contents(atPath: path) else { throw DataError("\(path): cannot read file") }
        return try decode([UInt8](data), name: path)
    }

    private static func quote(_ s: String) -> String {
        var out = "\""
        for ch in s.unicodeScalars {
            switch ch {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default:
                if ch.value < 0x20 { out += String(format: "\\u%04x", ch.value) } else { out.unicodeScalars.append(ch) }
            }
        }
        return out + "\""
    }
}
