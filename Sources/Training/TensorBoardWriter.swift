import CISAL
import Data
import Foundation
import SwiftProtobuf
import TensorBoardProto

/// `--tensorboard DIR`: a TensorBoard event file, `DIR/events.out.tfevents.TIME.HOST.ddp-train`, that
/// TensorBoard (and its `EventAccumulator`) reads. Rank 0 writes it.
///
/// The file is a TFRecord stream of `Event` messages (swift-protobuf, from tensorboard.proto): each
/// record is its length (u64, little-endian), the masked CRC-32C of those 8 bytes, the message, and
/// the masked CRC-32C of the message. The first event names the format ("brain.Event:2").
public final class TensorBoardWriter {
    public let path: String
    private let handle: FileHandle
    private var failed = false

    public init(directory: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw UsageError("cannot create --tensorboard \(directory): \(posixReason(error))")
        }
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "host"
        path = directory + "/events.out.tfevents.\(Int(Date().timeIntervalSince1970)).\(host).\(getpid()).ddp-train"
        guard FileManager.default.createFile(atPath: path, contents: nil), let h = FileHandle(forWritingAtPath: path) else {
            throw UsageError("cannot write --tensorboard \(path)")
        }
        handle = h
        var first = Tensorboard_Event()
        first.wallTime = Date().timeIntervalSince1970
        first.fileVersion = "brain.Event:2"
        write(first)
        flush()
    }

    /// A scalar at `step` (TensorBoard's Scalars tab).
    public func scalar(_ tag: String, _ value: Double, step: Int) {
        var v = Tensorboard_Summary.Value()
        v.tag = tag
        v.simpleValue = Float(value)
        write(summary: [v], step: step)
    }

    /// A histogram of `values` in `buckets` equal-width buckets between their minimum and maximum
    /// (the Histograms and Distributions tabs).
    public func histogram(_ tag: String, _ values: UnsafeBufferPointer<Float>, step: Int, buckets: Int = 30) {
        guard !values.isEmpty else { return }
        var h = Tensorboard_HistogramProto()
        var lo = Double.infinity, hi = -Double.infinity, sum = 0.0, squares = 0.0
        for x in values {
            let d = Double(x)
            lo = min(lo, d)
            hi = max(hi, d)
            sum += d
            squares += d * d
        }
        let width = hi > lo ? (hi - lo) / Double(buckets) : 1
        var counts = [Double](repeating: 0, count: buckets)
        for x in values { counts[min(buckets - 1, max(0, Int((Double(x) - lo) / width)))] += 1 }
        h.min = lo
        h.max = hi
        h.num = Double(values.count)
        h.sum = sum
        h.sumSquares = squares
        h.bucketLimit = (1...buckets).map { lo + Double($0) * width }
        h.bucket = counts
        var v = Tensorboard_Summary.Value()
        v.tag = tag
        v.histo = h
        write(summary: [v], step: step)
    }

    /// An image (the Images tab), as a PNG.
    public func image(_ tag: String, _ image: DecodedImage, step: Int) {
        guard let png = try? ImageFile.encodePNG(image) else { return }
        var i = Tensorboard_Summary.Image()
        i.height = Int32(image.height)
        i.width = Int32(image.width)
        i.colorspace = Int32(image.channels)
        i.encodedImageString = Data(png)
        var v = Tensorboard_Summary.Value()
        v.tag = tag
        v.image = i
        write(summary: [v], step: step)
    }

    public func flush() {
        guard !failed else { return }
        try? handle.synchronize()
    }

    public func close() { try? handle.close() }

    private func write(summary values: [Tensorboard_Summary.Value], step: Int) {
        var e = Tensorboard_Event()
        e.wallTime = Date().timeIntervalSince1970
        e.step = Int64(step)
        var s = Tensorboard_Summary()
        s.value = values
        e.summary = s
        write(e)
    }

    /// One TFRecord. A failed write (a full disk) is reported once; training goes on without it.
    private func write(_ event: Tensorboard_Event) {
        guard !failed, let body = try? event.serializedBytes() as [UInt8] else { return }
        var length = UInt64(body.count).littleEndian
        var record = withUnsafeBytes(of: &length) { Array($0) }
        record += Self.bytes(of: Self.maskedCRC(record))
        record += body
        record += Self.bytes(of: Self.maskedCRC(body))
        do {
            try handle.write(contentsOf: Data(record))
        } catch {
            failed = true
            warn("warning: --tensorboard write failed (\(posixReason(error))); training goes on without it")
        }
    }

    /// TFRecord's checksum: CRC-32C (ISA-L), rotated right by 15 bits plus a constant.
    static func maskedCRC(_ bytes: [UInt8]) -> UInt32 {
        var copy = bytes
        let crc = crc32_iscsi(&copy, Int32(copy.count), 0xFFFF_FFFF) ^ 0xFFFF_FFFF
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }

    static func bytes(of value: UInt32) -> [UInt8] {
        var v = value.littleEndian
        return withUnsafeBytes(of: &v) { Array($0) }
    }
}

extension ConfusionMatrix {
    /// A heat map: one 12x12 gray square per (true, predicted) pair, darker for a larger share of
    /// the true class's samples (rows: true class, columns: predicted).
    public func heatMap(cell: Int = 12) -> DecodedImage {
        let side = classes * cell
        var pixels = [UInt8](repeating: 255, count: side * side)
        for t in 0..<classes {
            let total = max(1, (0..<classes).reduce(0) { $0 + self[t, $1] })
            for p in 0..<classes {
                let shade = UInt8(255 - min(255, 255 * self[t, p] / total))
                for y in 0..<cell { for x in 0..<cell { pixels[(t * cell + y) * side + p * cell + x] = shade } }
            }
        }
        return DecodedImage(width: side, height: side, channels: 1, pixels: pixels)
    }
}
