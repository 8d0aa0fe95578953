import Foundation

/// The IDX format of MNIST: a big-endian int32 magic (0x0000_08NN, NN = number of dimensions, 08 =
/// unsigned bytes), one big-endian int32 per dimension, then the bytes row-major.
public struct IDXFile {
    public let dims: [Int]
    public let bytes: [UInt8]

    /// Parses IDX bytes. `expectedRank` is 1 for labels and 3 for images.
    public init(bytes data: [UInt8], name: String, expectedRank: Int) throws {
        guard !data.isEmpty else { throw DataError("\(name): empty file") }
        guard data.count >= 4 else { throw DataError("\(name): truncated IDX header (\(data.count) bytes)") }
        let magic = readBE32(data, 0)
        let expectedMagic = UInt32(0x0800) | UInt32(expectedRank)
        guard magic == expectedMagic else {
            throw DataError(String(format: "%@: wrong magic number 0x%08X, expected 0x%08X (%@)", name, magic, expectedMagic,
                                   expectedRank == 1 ? "IDX labels" : "IDX images"))
        }
        let headerSize = 4 + 4 * expectedRank
        guard data.count >= headerSize else { throw DataError("\(name): truncated IDX header (\(data.count) bytes)") }
        dims = (0..<expectedRank).map { Int(readBE32(data, 4 + 4 * $0)) }
        guard let payload = elementCount(dims), payload <= Int(Int32.max) * 16 else {
            throw DataError("\(name): corrupt IDX header: dimensions \(dims) are too large")
        }
        guard data.count - headerSize >= payload else {
            throw DataError("\(name): truncated: header promises \(payload) bytes of data, file has \(data.count - headerSize)")
        }
        guard data.count - headerSize == payload else {
            throw DataError("\(name): \(data.count - headerSize - payload) unexpected bytes after the data")
        }
        bytes = Array(data[headerSize...])
    }

    /// Reads a file, gunzipping it when it starts with gzip's magic.
    public static func load(path: String, expectedRank: Int) throws -> IDXFile {
        let name = (path as NSString).lastPathComponent
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataError("\(path): cannot read file")
        }
        var bytes = [UInt8](data)
        if bytes.count >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B {
            bytes = try gunzip(bytes, name: name)
        }
        return try IDXFile(bytes: bytes, name: name, expectedRank: expectedRank)
    }

    /// Serializes, for tests and fixtures.
    public static func encode(dims: [Int], bytes: [UInt8]) -> [UInt8] {
        var out = [UInt8]()
        func be32(_ v: UInt32) { out += [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }
        be32(0x0800 | UInt32(dims.count))
        for d in dims { be32(UInt32(d)) }
        return out + bytes
    }
}

@inline(__always)
private func readBE32(_ b: [UInt8], _ o: Int) -> UInt32 {
    UInt32(b[o]) << 24 | UInt32(b[o + 1]) << 16 | UInt32(b[o + 2]) << 8 | UInt32(b[o + 3])
}
