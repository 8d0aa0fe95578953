import Data
import Foundation
import XCTest

/// The checkpoint format without a model: names, framing, range checks, finite values.
final class CheckpointFileTests: XCTestCase {
    let position = CheckpointFile.Position(step: 40, epoch: 1, batchInEpoch: 8, seed: 1, globalBatch: 64, trainCount: 2000,
                                           bestAccuracy: 0.5, optimizer: "SGD", optimizerStep: 40, learningRate: 0.05,
                                           model: "mlp:4", worldSize: 2, runID: "0123abcd")

    func file(_ p: CheckpointFile.Position, values: [Float] = [1, 2, 3, 4]) throws -> [UInt8] {
        let json = String(decoding: try JSONEncoder().encode(p), as: UTF8.self)
        return values.withUnsafeBufferPointer {
            CheckpointFile.frame(SafeTensors.encode([.init(name: "w", shape: [values.count], pointer: $0.baseAddress!)],
                                                    metadata: [CheckpointFile.stateKey: json]))
        }
    }

    func testNames() {
        XCTAssertEqual(CheckpointFile.fileName(step: 40, runID: "0123abcd"), "ckpt-00000040-0123abcd.ckpt")
        XCTAssertEqual(CheckpointFile.parseName("ckpt-00000040-0123abcd.ckpt")?.step, 40)
        XCTAssertEqual(CheckpointFile.parseName("ckpt-00000040-0123abcd.ckpt")?.runID, "0123abcd")
        XCTAssertEqual(CheckpointFile.parseName("ckpt-00000040.ckpt")?.step, 40, "older names have no run")
        XCTAssertNil(CheckpointFile.parseName("ckpt-00000040.ckpt")?.runID ?? nil)
        for bad in ["ckpt-40.ckpt", "ckpt-00000040-XYZ.ckpt", "ckpt--0000040.ckpt", ".ckpt-00000040-0123abcd.ckpt.tmp.12", "best.safetensors"] {
            XCTAssertNil(CheckpointFile.parseName(bad), bad)
        }
        XCTAssertTrue(CheckpointFile.isRunID(CheckpointFile.newRunID()))
        XCTAssertTrue(AtomicFile.isTemporaryName(".ckpt-00000040-0123abcd.ckpt.tmp.4242"))
        XCTAssertTrue(AtomicFile.isTemporaryName(AtomicFile.temporaryName(for: "best.safetensors")))
        XCTAssertFalse(AtomicFile.isTemporaryName("ckpt-00000040-0123abcd.ckpt"))
        XCTAssertFalse(AtomicFile.isTemporaryName(".ddp-train.lock"))
    }

    func testDecodeChecksEveryField() throws {
        let good = try CheckpointFile.decode(try file(position), name: "c")
        XCTAssertEqual(good.position, position)
        XCTAssertEqual(good.tensors["w"]?.values, [1, 2, 3, 4])
        let cases: [(WritableKeyPath<CheckpointFile.Position, Int>, Int, String)] = [
            (\.step, -1, "step -1 is negative"), (\.epoch, -2, "epoch -2"), (\.batchInEpoch, -3, "position in the epoch -3"),
            (\.batchInEpoch, 33, "past the epoch's 32 batches"), (\.globalBatch, 0, "global batch 0"),
            (\.trainCount, 0, "training-set size 0"), (\.optimizerStep, 41, "optimizer step 41"), (\.worldSize, 0, "world size 0"),
        ]
        for (field, value, text) in cases {
            var p = position
            p[keyPath: field] = value
            XCTAssertThrowsError(try CheckpointFile.decode(try file(p), name: "c")) { XCTAssertTrue("\($0)".contains(text), "\($0)") }
        }
        var p = position
        p.learningRate = -0.5
        XCTAssertThrowsError(try CheckpointFile.decode(try file(p), name: "c")) { XCTAssertTrue("\($0)".contains("learning rate"), "\($0)") }
        p = position
        p.bestAccuracy = 2
        XCTAssertThrowsError(try CheckpointFile.decode(try file(p), name: "c")) { XCTAssertTrue("\($0)".contains("best accuracy"), "\($0)") }
        p = position
        p.runID = "../../x"
        XCTAssertThrowsError(try CheckpointFile.decode(try file(p), name: "c")) { XCTAssertTrue("\($0)".contains("run id"), "\($0)") }
        XCTAssertThrowsError(try CheckpointFile.decode(try file(position, values: [1, .nan, 3, 4]), name: "c")) {
            XCTAssertTrue("\($0)".contains("non-finite"), "\($0)")
        }
        // One byte flipped past the header: the CRC catches it.
        var flipped = try file(position)
        flipped[flipped.count - 1] ^= 1
        XCTAssertThrowsError(try CheckpointFile.decode(flipped, name: "c")) { XCTAssertTrue("\($0)".contains("checksum"), "\($0)") }
    }
}
