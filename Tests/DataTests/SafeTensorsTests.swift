import Data
import Foundation
import XCTest

final class SafeTensorsTests: XCTestCase {
    /// A file of `json` as header (padded) and 8 bytes of data.
    func headerOnly(_ json: String) -> [UInt8] {
        var h = Array(json.utf8)
        while h.count % 8 != 0 { h.append(0x20) }
        var n = UInt64(h.count).littleEndian
        return withUnsafeBytes(of: &n) { Array($0) } + h + [UInt8](repeating: 0, count: 8)
    }

    /// The exact bytes the Python safetensors package writes for {"t": tensor([1.0, -2.5])}.
    func testKnownBytes() throws {
        let values: [Float] = [1.0, -2.5]
        let bytes = values.withUnsafeBufferPointer { SafeTensors.encode([.init(name: "t", shape: [2], pointer: $0.baseAddress!)]) }
        let json = Array(#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#.utf8) + [0x20, 0x20]
        let expected: [UInt8] = [56, 0, 0, 0, 0, 0, 0, 0] + json + [0, 0, 0x80, 0x3F, 0, 0, 0x20, 0xC0]
        XCTAssertEqual(bytes, expected)
        let decoded = try SafeTensors.decode(expected, name: "known")
        XCTAssertEqual(decoded.tensors["t"], SafeTensors.Tensor(shape: [2], values: [1.0, -2.5]))
    }

    func testRoundTripThroughFile() throws {
        let w: [Float] = (0..<6).map { Float($0) * 0.5 - 1 }
        let b: [Float] = [3, 4]
        let path = temporaryDirectory() + "/w.safetensors"
        try w.withUnsafeBufferPointer { wp in
            try b.withUnsafeBufferPointer { bp in
                try SafeTensors.write([.init(name: "0.weight", shape: [2, 3], pointer: wp.baseAddress!),
                                       .init(name: "0.bias", shape: [2], pointer: bp.baseAddress!)],
                                      metadata: ["format": "pt"], to: path)
            }
        }
        let file = try SafeTensors.read(path: path)
        XCTAssertEqual(file.order, ["0.weight", "0.bias"])
        XCTAssertEqual(file.tensors["0.weight"], .init(shape: [2, 3], values: w))
        XCTAssertEqual(file.tensors["0.bias"], .init(shape: [2], values: b))
        XCTAssertEqual(file.metadata["format"], "pt")
    }

    func testRejectsNonSafetensors() {
        for (bytes, why) in [([UInt8](), "empty"), (Array("hello world, not a tensor file".utf8), "header length"),
                             ([8, 0, 0, 0, 0, 0, 0, 0] + Array("notjson!".utf8), "JSON"),
                             (headerOnly(#"{"t":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}"#), "larger than the file")] {
            XCTAssertThrowsError(try SafeTensors.decode(bytes, name: "f")) { XCTAssertTrue("\($0)".contains(why), "\($0)") }
        }
        let values: [Float] = [1, 2]
        let good = values.withUnsafeBufferPointer { SafeTensors.encode([.init(name: "t", shape: [2], pointer: $0.baseAddress!)]) }
        XCTAssertThrowsError(try SafeTensors.decode(Array(good.dropLast(3)), name: "f")) {
            XCTAssertTrue("\($0)".contains("truncated?"), "\($0)")
        }
    }

    /// Fuzz finding (Fuzz/findings/safetensors-empty-tensor-offset-tie): zero-size tensors at the
    /// offset of a non-empty one were accepted or refused by the per-process dictionary order.
    func testZeroSizeTensorsSharingAnOffsetDecode() throws {
        let one: [Float] = [7]
        for variant in 0..<10 {
            let empties = (0..<8).map { "e\(variant)_\($0)" }
            let bytes = one.withUnsafeBufferPointer { p in
                SafeTensors.encode(empties.map { .init(name: $0, shape: [0, 4], pointer: p.baseAddress!) }
                                   + [.init(name: "scalar\(variant)", shape: [], pointer: p.baseAddress!)])
            }
            let file = try SafeTensors.decode(bytes, name: "variant \(variant)")
            XCTAssertEqual(file.tensors["scalar\(variant)"]?.values, [7])
            XCTAssertEqual(file.order, empties.sorted() + ["scalar\(variant)"], "order is by offset, then name")
        }
    }
}
