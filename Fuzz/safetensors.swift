// libFuzzer target "safetensors": `SafeTensors.decode` on the raw input. A file that decodes must
// survive a round trip: encode(decoded) decodes to the same names, shapes, value bits and metadata.
// (Names are compared as a set: `order` sorts by offset, and zero-size tensors can share one.)
// Built with the Data sources by Scripts/fuzz.sh; see Fuzz/README.md.

import Glibc

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let file: (tensors: [String: SafeTensors.Tensor], order: [String], metadata: [String: String])
    do { file = try SafeTensors.decode(bytes, name: "fuzz") } catch { _ = "\(error)"; return 0 }

    expect(Set(file.order) == Set(file.tensors.keys) && file.order.count == file.tensors.count, "order and tensors disagree")
    let flat = file.order.flatMap { file.tensors[$0]!.values }  // one buffer, so the pointers stay valid
    let again: [UInt8] = flat.withUnsafeBufferPointer { buffer in
        var offset = 0
        let sources = file.order.map { key -> SafeTensors.Source in
            defer { offset += file.tensors[key]!.values.count }
            return SafeTensors.Source(name: key, shape: file.tensors[key]!.shape, pointer: (buffer.baseAddress ?? UnsafePointer(bitPattern: 8)!) + offset)
        }
        return SafeTensors.encode(sources, metadata: file.metadata)
    }
    guard let back = try? SafeTensors.decode(again, name: "round trip") else { fatalError("a decoded file does not decode after encode") }
    expect(Set(back.order) == Set(file.order), "round trip changed the names: \(file.order) -> \(back.order)")
    expect(back.metadata == file.metadata, "round trip changed the metadata: \(file.metadata) -> \(back.metadata)")
    for key in file.order {
        let (a, b) = (file.tensors[key]!, back.tensors[key]!)
        expect(a.shape == b.shape && a.values.map(\.bitPattern) == b.values.map(\.bitPattern), "round trip changed '\(key)'")
    }
    return 0
}

/// Like `precondition`, but the message survives -O, so a finding's log says which property broke.
func expect(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() { fatalError(message()) }
}
