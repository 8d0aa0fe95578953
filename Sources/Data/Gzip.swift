import CZlib

/// Decompresses a whole .gz file in memory with zlib. A stream that ends before gzip's trailer
/// (a truncated download) is an error, not a short result.
public func gunzip(_ input: [UInt8], name: String) throws -> [UInt8] {
    var stream = z_stream()
    guard czlib_inflate_init2(&stream, 15 + 16) == Z_OK else { throw DataError("\(name): zlib could not start") }
    defer { inflateEnd(&stream) }
    var output = [UInt8]()
    output.reserveCapacity(input.count * 4)
    var chunk = [UInt8](repeating: 0, count: 1 << 18)
    var status: Int32 = Z_OK
    try input.withUnsafeBufferPointer { inBuf in
        stream.next_in = UnsafeMutablePointer(mutating: inBuf.baseAddress)
        stream.avail_in = UInt32(inBuf.count)
        repeat {
            let produced: Int = chunk.withUnsafeMutableBufferPointer { out in
                stream.next_out = out.baseAddress
                stream.avail_out = UInt32(out.count)
                status = inflate(&stream, Z_NO_FLUSH)
                return out.count - Int(stream.avail_out)
            }
            output.append(contentsOf: chunk[0..<produced])
            if status == Z_STREAM_END { break }
            guard status == Z_OK || status == Z_BUF_ERROR else {
                throw DataError("\(name): corrupt gzip data (\(status == Z_DATA_ERROR ? "data error" : "zlib error \(status)"))")
            }
            if status == Z_BUF_ERROR || (stream.avail_in == 0 && produced == 0) {
                throw DataError("\(name): truncated gzip file (compressed stream ends early)")
            }
        } while true
    }
    return output
}

/// zlib's CRC-32, for checkpoint checksums.
public func crc32Checksum(_ bytes: UnsafeRawBufferPointer, initial: UInt32 = 0) -> UInt32 {
    guard let base = bytes.baseAddress, bytes.count > 0 else { return initial }
    var crc = UInt(initial)
    var offset = 0
    while offset < bytes.count {
        let n = min(bytes.count - offset, Int(UInt32.max))
        crc = CZlib.crc32(crc, base.assumingMemoryBound(to: UInt8.self) + offset, UInt32(n))
        offset += n
    }
    return UInt32(crc)
}
