import CJPEG
import CPNG
import Foundation

/// An 8-bit image in the layout the model consumes: channel-first planes (C, H, W), each row-major.
public struct DecodedImage: Equatable {
    public let width: Int
    public let height: Int
    /// 1 (gray) or 3 (RGB).
    public let channels: Int
    /// `channels * height * width` samples: all of plane 0 (gray or red), then green, then blue.
    public var pixels: [UInt8]

    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        precondition(channels == 1 || channels == 3, "an image has 1 or 3 channels, not \(channels)")
        precondition(width >= 0 && height >= 0 && pixels.count == channels * height * width,
                     "\(pixels.count) samples for a \(channels)x\(height)x\(width) image")
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// The image with `channels` channels: color to gray by PIL's "L" formula
    /// (L = R*299/1000 + G*587/1000 + B*114/1000, in PIL's 16-bit fixed point), gray to color by
    /// copying the plane three times.
    public func converted(channels n: Int) -> DecodedImage {
        precondition(n == 1 || n == 3, "an image has 1 or 3 channels, not \(n)")
        if n == channels { return self }
        let plane = width * height
        let out: [UInt8] = pixels.withUnsafeBufferPointer { p in
            if n == 3 { return Array(p) + Array(p) + Array(p) }
            return (0..<plane).map { luma(p[$0], p[plane + $0], p[2 * plane + $0]) }
        }
        return DecodedImage(width: width, height: height, channels: n, pixels: out)
    }
}

/// PIL's `L24(rgb) >> 16`: the ITU-R 601-2 luma weights scaled by 65536, rounded.
@inline(__always)
func luma(_ r: UInt8, _ g: UInt8, _ b: UInt8) -> UInt8 {
    UInt8(truncatingIfNeeded: (UInt32(r) * 19595 + UInt32(g) * 38470 + UInt32(b) * 7471 + 0x8000) >> 16)
}

/// PNG and JPEG files to `DecodedImage`s and back. The format is told by the magic bytes (PNG's
/// signature, JPEG's start-of-image marker FF D8), not by the file's extension.
public enum ImageFile {
    /// The most samples (width * height * channels, counting the file's own channels and alpha as well
    /// as the requested ones) a file may decode to: 64 Mi, e.g. 4096x4096 RGBA. Checked on the header,
    /// so a small hostile file cannot make the decoder allocate gigabytes.
    public static let maxSamples = 64 << 20

    static let pngSignature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// Reads and decodes a PNG or JPEG file. Errors name the file by `path` as given.
    ///
    /// `channels`: nil keeps the file's own: grayscale and gray+alpha give 1, RGB, RGBA and palette
    /// files give 3. Alpha is dropped (as PIL's `convert("RGB")` drops it), not composited onto a
    /// background. 1 converts color to gray with PIL's "L" formula; 3 replicates gray. 16-bit PNGs are
    /// scaled to 8 bits. Like PIL's `Image.open`, decoding ignores gamma, color profiles and EXIF
    /// orientation: the pixels are the stored values.
    public static func decode(path: String, channels: Int? = nil) throws -> DecodedImage {
        guard let data = FileManager.default.contents(atPath: path) else {
            let exists = FileManager.default.fileExists(atPath: path)
            throw DataError("\(path): \(exists ? "cannot read file" : "no such file")")
        }
        return try data.withUnsafeBytes { try decode(bytes: $0, name: path, channels: channels) }
    }

    /// Decodes PNG or JPEG bytes; `name` is the file named in errors. See `decode(path:channels:)`.
    public static func decode(bytes: [UInt8], name: String, channels: Int? = nil) throws -> DecodedImage {
        try bytes.withUnsafeBytes { try decode(bytes: $0, name: name, channels: channels) }
    }

    /// Decodes PNG or JPEG bytes; `name` is the file named in errors. See `decode(path:channels:)`.
    public static func decode(bytes: UnsafeRawBufferPointer, name: String, channels: Int? = nil) throws -> DecodedImage {
        if let c = channels, c != 1 && c != 3 {
            throw DataError("\(name): cannot decode to \(c) channels (1 or 3)")
        }
        guard bytes.count > 0 else { throw DataError("\(name): empty file") }
        if bytes.starts(with: pngSignature) { return try decodePNG(bytes, name: name, channels: channels) }
        if bytes.count >= 2 && bytes[0] == 0xFF && bytes[1] == 0xD8 { return try decodeJPEG(bytes, name: name, channels: channels) }
        throw DataError("\(name): not a PNG or JPEG file")
    }

    /// Through libpng's simplified API, which reports errors in `image.message` instead of jumping.
    /// It is asked for 8-bit gray or RGB, with alpha when the file has it (so nothing is composited), and
    /// expands palettes and scales 16-bit samples. The API would also convert from a file's declared
    /// gamma to sRGB, which PIL and torchvision do not: the gAMA chunk is dropped and 16-bit files are
    /// taken as sRGB-encoded like 8-bit ones (PNG_IMAGE_FLAG_16BIT_sRGB), so scaling 16 bits to 8 (which
    /// PIL does not do for 16-bit gray: it clips) is all that happens to the stored values.
    static func decodePNG(_ bytes: UnsafeRawBufferPointer, name: String, channels: Int?) throws -> DecodedImage {
        if let plain = withoutGamma(bytes) {
            return try plain.withUnsafeBytes { try decodePNG($0, name: name, channels: channels) }
        }
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        guard png_image_begin_read_from_memory(&image, bytes.baseAddress, bytes.count) != 0 else {
            throw DataError("\(name): corrupt PNG data: \(pngMessage(image))")
        }
        let color = image.format & PNG_FORMAT_FLAG_COLOR != 0  // palette files included
        let alpha = image.format & PNG_FORMAT_FLAG_ALPHA != 0
        image.format = (color ? PNG_FORMAT_FLAG_COLOR : 0) | (alpha ? PNG_FORMAT_FLAG_ALPHA : 0)
        image.flags |= UInt32(PNG_IMAGE_FLAG_16BIT_sRGB)
        let colorChannels = color ? 3 : 1
        let stride = colorChannels + (alpha ? 1 : 0)
        let width = Int(image.width), height = Int(image.height)
        let out = channels ?? colorChannels
        do {
            try checkSize(width: width, height: height, channels: max(stride, out), name: name)
        } catch {
            png_image_free(&image)
            throw error
        }
        var buffer = [UInt8](repeating: 0, count: width * height * stride)
        let ok = buffer.withUnsafeMutableBytes {
            png_image_finish_read(&image, nil, $0.baseAddress, Int32(width * stride), nil)
        }
        guard ok != 0 else { throw DataError("\(name): corrupt PNG data: \(pngMessage(image))") }
        return buffer.withUnsafeBufferPointer {
            planes($0.baseAddress!, width: width, height: height, stride: stride, color: colorChannels, channels: out)
        }
    }

    /// The PNG without its gAMA chunks, or nil if it has none before the image data. A chunk list that
    /// does not add up is passed on as it is, for libpng to report.
    static func withoutGamma(_ bytes: UnsafeRawBufferPointer) -> [UInt8]? {
        func be32(_ o: Int) -> Int { Int(bytes[o]) << 24 | Int(bytes[o + 1]) << 16 | Int(bytes[o + 2]) << 8 | Int(bytes[o + 3]) }
        var gamma: [Range<Int>] = []
        var offset = pngSignature.count
        while offset + 12 <= bytes.count {
            let length = be32(offset), type = String(decoding: bytes[(offset + 4)..<(offset + 8)], as: UTF8.self)
            guard length <= bytes.count - offset - 12, type != "IDAT" else { break }
            if type == "gAMA" { gamma.append(offset..<(offset + 12 + length)) }
            offset += 12 + length
        }
        guard !gamma.isEmpty else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(bytes.count)
        var start = 0
        for chunk in gamma {
            out += bytes[start..<chunk.lowerBound]
            start = chunk.upperBound
        }
        return out + bytes[start...]
    }

    /// Through `cjpeg_decode` (CJPEG/shim.h), which catches libjpeg's errors in C. Gray files give 1
    /// channel, YCbCr and RGB files 3; CMYK and YCCK files are not supported. A truncated file is an error.
    static func decodeJPEG(_ bytes: UnsafeRawBufferPointer, name: String, channels: Int?) throws -> DecodedImage {
        var pixels: UnsafeMutablePointer<UInt8>? = nil
        var width: Int32 = 0, height: Int32 = 0, fileChannels: Int32 = 0
        var message = [CChar](repeating: 0, count: 256)
        let rc = cjpeg_decode(bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt(bytes.count), UInt(maxSamples),
                              Int32(channels ?? 0), &pixels, &width, &height, &fileChannels, &message, message.count)
        defer { cjpeg_free(pixels) }
        let text = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        switch rc {
        case 0: break
        case 2: throw DataError("\(name): unsupported JPEG: \(text)")
        case 3: throw tooLarge(width: Int(width), height: Int(height), channels: max(Int(fileChannels), channels ?? 0), name: name)
        default: throw DataError("\(name): corrupt JPEG data: \(text)")
        }
        let c = Int(fileChannels)
        return planes(pixels!, width: Int(width), height: Int(height), stride: c, color: c, channels: channels ?? c)
    }

    static func checkSize(width: Int, height: Int, channels: Int, name: String) throws {
        let (pixels, o1) = width.multipliedReportingOverflow(by: height)
        let (samples, o2) = pixels.multipliedReportingOverflow(by: channels)
        if o1 || o2 || samples > maxSamples { throw tooLarge(width: width, height: height, channels: channels, name: name) }
    }

    static func tooLarge(width: Int, height: Int, channels: Int, name: String) -> DataError {
        DataError("\(name): image too large: \(width)x\(height) with \(channels) channels is over the limit of \(maxSamples) samples")
    }

    /// The planes of interleaved pixels of `stride` samples, of which the first `color` (1 or 3) are
    /// gray or RGB and any further one is alpha (dropped), converted to `channels`.
    static func planes(_ src: UnsafePointer<UInt8>, width: Int, height: Int, stride: Int, color: Int, channels: Int) -> DecodedImage {
        let n = width * height
        let out = [UInt8](unsafeUninitializedCapacity: channels * n) { dst, count in
            if color == 1 {
                for i in 0..<n { for c in 0..<channels { dst[c * n + i] = src[i * stride] } }
            } else if channels == 3 {
                for i in 0..<n { dst[i] = src[i * stride]; dst[n + i] = src[i * stride + 1]; dst[2 * n + i] = src[i * stride + 2] }
            } else {
                for i in 0..<n { dst[i] = luma(src[i * stride], src[i * stride + 1], src[i * stride + 2]) }
            }
            count = channels * n
        }
        return DecodedImage(width: width, height: height, channels: channels, pixels: out)
    }

    /// Encodes as an 8-bit gray or RGB PNG (libpng's simplified writer). Decoding gives the same image.
    public static func encodePNG(_ image: DecodedImage) throws -> [UInt8] {
        var png = png_image()
        png.version = UInt32(PNG_IMAGE_VERSION)
        png.width = UInt32(image.width)
        png.height = UInt32(image.height)
        png.format = image.channels == 3 ? PNG_FORMAT_FLAG_COLOR : 0
        let rows = interleaved(image)
        var size: png_alloc_size_t = 0
        let sized = rows.withUnsafeBytes { png_image_write_to_memory(&png, nil, &size, 0, $0.baseAddress, 0, nil) }
        guard sized != 0 else { throw DataError("cannot encode PNG: \(pngMessage(png))") }
        var out = [UInt8](repeating: 0, count: Int(size))
        let ok = out.withUnsafeMutableBytes { dst in
            rows.withUnsafeBytes { png_image_write_to_memory(&png, dst.baseAddress, &size, 0, $0.baseAddress, 0, nil) }
        }
        guard ok != 0 else { throw DataError("cannot encode PNG: \(pngMessage(png))") }
        return Array(out.prefix(Int(size)))
    }

    /// Encodes as a baseline JPEG at `quality` (1...100) through `cjpeg_encode` (CJPEG/shim.h). From
    /// quality 90 up, color is not subsampled, so a decoded quality-100 image is within a few levels.
    public static func encodeJPEG(_ image: DecodedImage, quality: Int = 90) throws -> [UInt8] {
        guard (1...100).contains(quality) else { throw DataError("cannot encode JPEG: quality \(quality) is not in 1...100") }
        let rows = interleaved(image)
        var out: UnsafeMutablePointer<UInt8>? = nil
        var size: UInt = 0
        var message = [CChar](repeating: 0, count: 256)
        let rc = cjpeg_encode(rows, Int32(image.width), Int32(image.height), Int32(image.channels), Int32(quality),
                              &out, &size, &message, message.count)
        defer { cjpeg_free(out) }
        guard rc == 0, let out else {
            let text = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw DataError("cannot encode JPEG: \(text)")
        }
        return Array(UnsafeBufferPointer(start: out, count: Int(size)))
    }

    /// Pixel-interleaved samples (HWC), the layout both libraries read and write.
    static func interleaved(_ image: DecodedImage) -> [UInt8] {
        let n = image.width * image.height, c = image.channels
        if c == 1 { return image.pixels }
        var out = [UInt8](repeating: 0, count: c * n)
        for i in 0..<n { for k in 0..<c { out[i * c + k] = image.pixels[k * n + i] } }
        return out
    }

    static func pngMessage(_ image: png_image) -> String {
        withUnsafeBytes(of: image.message) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
}
