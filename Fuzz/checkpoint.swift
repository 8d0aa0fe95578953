// libFuzzer target "checkpoint": `CheckpointFile.decode`. The first input byte picks the mode:
//   even: the rest is a safetensors body; `CheckpointFile.frame` wraps it with a valid header and
//         CRC, so mutations reach the safetensors, state-JSON and range checks behind the checksum;
//   odd:  the rest is passed as it is (magic, version, length and CRC checks).
// Built with the Data sources by Scripts/fuzz.sh; see Fuzz/README.md.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let rest = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    let bytes = data[0] & 1 == 0 ? CheckpointFile.frame(rest) : rest
    do {
        let contents = try CheckpointFile.decode(bytes, name: "fuzz.ckpt")
        // What decode promises to the trainer: a position in range and finite tensors.
        expect((try? contents.position.check(name: "fuzz.ckpt")) != nil, "decoded position fails its check")
        expect(contents.tensors.values.allSatisfy { $0.values.allSatisfy(\.isFinite) }, "decoded a non-finite value")
    } catch {
        _ = "\(error)"
    }
    return 0
}

/// Like `precondition`, but the message survives -O, so a finding's log says which property broke.
func expect(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() { fatalError(message()) }
}
