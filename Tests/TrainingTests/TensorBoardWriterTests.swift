@testable import Training
import XCTest

/// The TFRecord checksum against the tensorboard package's own `masked_crc32c`
/// (tensorboard.compat.tensorflow_stub.pywrap_tensorflow): "123456789" -> 0xc78ab0e5, "" -> 0xa282ead8.
final class TensorBoardWriterTests: XCTestCase {
    func testMaskedCRC32CMatchesTensorBoard() {
        XCTAssertEqual(TensorBoardWriter.maskedCRC(Array("123456789".utf8)), 0xC78A_B0E5)
        XCTAssertEqual(TensorBoardWriter.maskedCRC([]), 0xA282_EAD8)
    }
}
