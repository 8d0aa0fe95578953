import Foundation

// Resizing as PIL does it (torchvision's `Resize` on PIL images).

extension DecodedImage {
    /// The image resampled to `height` x `width` as PIL's `Image.resize((width, height), Image.BILINEAR)`
    /// does it (and so torchvision's `Resize` on PIL images, antialiased): a separable triangle filter
    /// whose support widens with the downscale factor (so downscaling averages every input pixel, not
    /// just the 2x2 nearest), PIL's pixel centers (output i samples input (i + 0.5) * scale), its 22-bit
    /// fixed-point weights, and rounding to 8 bits after the horizontal pass and again after the vertical
    /// pass. Identity returns the pixels unchanged.
    public func resized(height newHeight: Int, width newWidth: Int) -> DecodedImage {
        precondition(newHeight > 0 && newWidth > 0, "cannot resize to \(newHeight)x\(newWidth)")
        precondition(height > 0 && width > 0, "cannot resize an empty image")
        if newHeight == height && newWidth == width { return self }
        let horizontal = newWidth == width ? nil : ResampleWeights(inSize: width, outSize: newWidth)
        let vertical = newHeight == height ? nil : ResampleWeights(inSize: height, outSize: newHeight)
        var out = [UInt8]()
        out.reserveCapacity(channels * newHeight * newWidth)
        pixels.withUnsafeBufferPointer { all in
            for c in 0..<channels {
                var plane = Array(all[(c * height * width)..<((c + 1) * height * width)])
                if let horizontal { plane = horizontal.resampleRows(plane, rows: height, inWidth: width) }
                if let vertical { plane = vertical.resampleColumns(plane, inHeight: height, columns: newWidth) }
                out += plane
            }
        }
        return DecodedImage(width: newWidth, height: newHeight, channels: channels, pixels: out)
    }
}

/// PIL's `precompute_coeffs` + `normalize_coeffs_8bpc` for the bilinear filter (Resample.c): for each
/// output index, the first input index and up to `taps` integer weights that sum to about 1 << 22.
struct ResampleWeights {
    static let precisionBits = 22
    let outSize: Int
    let taps: Int
    var first: [Int]
    var count: [Int]
    var weights: [Int32]

    init(inSize: Int, outSize: Int) {
        self.outSize = outSize
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1)
        let support = 1.0 * filterScale  // the triangle's support is 1 input pixel, widened when downscaling
        taps = Int(support.rounded(.up)) * 2 + 1
        first = []
        count = []
        weights = [Int32](repeating: 0, count: outSize * taps)
        var k = [Double](repeating: 0, count: taps)
        for i in 0..<outSize {
            let center = (Double(i) + 0.5) * scale
            let xmin = max(Int(center - support + 0.5), 0)
            let n = min(Int(center + support + 0.5), inSize) - xmin
            let ss = 1.0 / filterScale
            var sum = 0.0
            for x in 0..<n {
                let t = abs((Double(x + xmin) - center + 0.5) * ss)
                k[x] = t < 1 ? 1 - t : 0
                sum += k[x]
            }
            for x in 0..<n {
                let w = sum != 0 ? k[x] / sum : k[x]
                let fixed = w * Double(1 << Self.precisionBits)
                weights[i * taps + x] = Int32(w < 0 ? fixed - 0.5 : fixed + 0.5)
            }
            first.append(xmin)
            count.append(n)
        }
    }

    /// PIL's `clip8`: the fixed-point sum (which started at one half) to a byte.
    @inline(__always)
    static func clip8(_ v: Int32) -> UInt8 {
        if v >= Int32(1) << (precisionBits + 8) { return 255 }
        if v <= 0 { return 0 }
        return UInt8(truncatingIfNeeded: v >> Int32(precisionBits))
    }

    /// Resamples each of `rows` rows of `inWidth` samples to `outSize` samples.
    func resampleRows(_ plane: [UInt8], rows: Int, inWidth: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: rows * outSize) { dst, done in
            plane.withUnsafeBufferPointer { src in
                weights.withUnsafeBufferPointer { w in
                    for y in 0..<rows {
                        let row = src.baseAddress! + y * inWidth
                        for i in 0..<outSize {
                            var acc = Int32(1) << Int32(Self.precisionBits - 1)
                            let x0 = first[i], k = w.baseAddress! + i * taps
                            for x in 0..<count[i] { acc &+= Int32(row[x0 + x]) &* k[x] }
                            dst[y * outSize + i] = Self.clip8(acc)
                        }
                    }
                }
            }
            done = rows * outSize
        }
    }

    /// Resamples each of `columns` columns of `inHeight` samples to `outSize` samples.
    func resampleColumns(_ plane: [UInt8], inHeight: Int, columns: Int) -> [UInt8] {
        var acc = [Int32](repeating: 0, count: columns)
        return [UInt8](unsafeUninitializedCapacity: outSize * columns) { dst, done in
            plane.withUnsafeBufferPointer { src in
                weights.withUnsafeBufferPointer { w in
                    acc.withUnsafeMutableBufferPointer { acc in
                        for i in 0..<outSize {
                            for x in 0..<columns { acc[x] = Int32(1) << Int32(Self.precisionBits - 1) }
                            for t in 0..<count[i] {
                                let k = w[i * taps + t], row = src.baseAddress! + (first[i] + t) * columns
                                for x in 0..<columns { acc[x] &+= Int32(row[x]) &* k }
                            }
                            for x in 0..<columns { dst[i * columns + x] = Self.clip8(acc[x]) }
                        }
                    }
                }
            }
            done = outSize * columns
        }
    }
}
