// libFuzzer target "idx": the IDX reader as `IDXFile.load` drives it. Input that starts with gzip's
// magic (1F 8B) is gunzipped first, then parsed as labels (rank 1) and as images (rank 3).
// Built with the Data sources by Scripts/fuzz.sh; see Fuzz/README.md.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if bytes.count >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B {
        do { bytes = try gunzip(bytes, name: "fuzz.gz") } catch { _ = "\(error)"; return 0 }
    }
    for rank in [1, 3] {
        do {
            let file = try IDXFile(bytes: bytes, name: "fuzz", expectedRank: rank)
            // A parsed file is self-consistent: rank dimensions whose product is the payload size.
            expect(file.dims.count == rank && elementCount(file.dims) == file.bytes.count, "dims \(file.dims) vs \(file.bytes.count) bytes")
        } catch {
            _ = "\(error)"  // the message is built from the input too
        }
    }
    return 0
}

/// Like `precondition`, but the message survives -O, so a finding's log says which property broke.
func expect(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() { fatalError(message()) }
}
