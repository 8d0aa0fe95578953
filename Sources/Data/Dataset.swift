import Engine

/// Labelled images held as the bytes they came in (1/4 of the memory of floats). A batch is gathered
/// and normalized into the model's input buffer: `(pixel / 255 - mean) / std`.
public final class Dataset {
    public let name: String
    public let sampleShape: Shape
    public let classNames: [String]
    public let count: Int
    /// Dataset index of each stored sample; identity unless this holds a slice (holdout, shard).
    private let pixels: [UInt8]
    public let labels: [Int32]
    public var mean: Float = 0 { didSet { updateTable() } }
    public var std: Float = 1 { didSet { updateTable() } }
    /// Byte to input value, computed as torchvision does: (p / 255 - mean) / std.
    private var table = [Float](repeating: 0, count: 256)

    public init(name: String, sampleShape: Shape, classNames: [String], pixels: [UInt8], labels: [Int32]) throws {
        guard pixels.count == labels.count * sampleShape.count else {
            throw DataError("\(name): \(pixels.count / max(sampleShape.count, 1)) images but \(labels.count) labels")
        }
        for l in labels where l < 0 || Int(l) >= classNames.count {
            throw DataError("\(name): label \(l) out of range 0..<\(classNames.count)")
        }
        self.name = name
        self.sampleShape = sampleShape
        self.classNames = classNames
        self.pixels = pixels
        self.labels = labels
        count = labels.count
        updateTable()
    }

    private func updateTable() {
        for p in 0..<256 { table[p] = (Float(p) / 255 - mean) / std }
    }

    public var classes: Int { classNames.count }

    /// Samples `range` as a new dataset (the holdout split and `--shard-data`).
    public func slice(_ range: Range<Int>, name: String) throws -> Dataset {
        let n = sampleShape.count
        let d = try Dataset(name: name, sampleShape: sampleShape, classNames: classNames,
                            pixels: Array(pixels[(range.lowerBound * n)..<(range.upperBound * n)]),
                            labels: Array(labels[range]))
        d.mean = mean
        d.std = std
        return d
    }

    /// Writes samples `indices[0..<k]` into `input` (k, sampleShape) and their labels into `labelsOut`.
    @inline(__always)
    public func gather(_ indices: UnsafePointer<Int32>, count k: Int, into input: UnsafeMutablePointer<Float>,
                       labels labelsOut: UnsafeMutablePointer<Int32>) {
        let n = sampleShape.count
        table.withUnsafeBufferPointer { value in
            pixels.withUnsafeBufferPointer { px in
                labels.withUnsafeBufferPointer { lb in
                    for r in 0..<k {
                        let i = Int(indices[r])
                        let src = px.baseAddress! + i * n
                        let dst = input + r * n
                        for j in 0..<n { dst[j] = value[Int(src[j])] }
                        labelsOut[r] = lb[i]
                    }
                }
            }
        }
    }

    /// The raw bytes of sample i, for display.
    public func image(_ i: Int) -> ArraySlice<UInt8> { pixels[(i * sampleShape.count)..<((i + 1) * sampleShape.count)] }
}
