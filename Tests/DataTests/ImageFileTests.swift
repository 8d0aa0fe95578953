import Data
import Foundation
import XCTest

/// PNG/JPEG decoding, channel conversion, encoding, and resizing checked against PIL.
final class ImageFileTests: XCTestCase {
    // MARK: - Round trips

    func testPNGRoundTripIsExact() throws {
        for channels in [1, 3] {
            let image = noise(width: 13, height: 7, channels: channels, seed: UInt64(channels))
            let png = try ImageFile.encodePNG(image)
            XCTAssertEqual(Array(png.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
            XCTAssertEqual(try ImageFile.decode(bytes: png, name: "x.png"), image, "\(channels) channels")
        }
    }

    func testJPEGRoundTripAtQuality100IsClose() throws {
        for channels in [1, 3] {
            let image = smooth(width: 24, height: 16, channels: channels)
            let jpeg = try ImageFile.encodeJPEG(image, quality: 100)
            XCTAssertEqual(Array(jpeg.prefix(2)), [0xFF, 0xD8])
            let back = try ImageFile.decode(bytes: jpeg, name: "x.jpg")
            XCTAssertEqual([back.channels, back.height, back.width], [channels, 16, 24])
            XCTAssertLessThanOrEqual(maxDifference(back.pixels, image.pixels), 3, "\(channels) channels")
            let rough = try ImageFile.decode(bytes: try ImageFile.encodeJPEG(image, quality: 10), name: "x.jpg")
            XCTAssertGreaterThan(maxDifference(rough.pixels, image.pixels), 3, "quality must reach the encoder")
        }
    }

    // MARK: - PNG color types (files built here byte by byte, independent of libpng's writer)

    func testRGBAPNGDropsAlpha() throws {
        let rgba: [UInt8] = [10, 20, 30, 0, 40, 50, 60, 128, 70, 80, 90, 255]  // 3x1, alpha 0/128/255
        let image = try ImageFile.decode(bytes: pngFile(width: 3, height: 1, colorType: 6, depth: 8, rows: [rgba]), name: "a.png")
        XCTAssertEqual(image, DecodedImage(width: 3, height: 1, channels: 3, pixels: [10, 40, 70, 20, 50, 80, 30, 60, 90]))
        let gray = try ImageFile.decode(bytes: pngFile(width: 2, height: 1, colorType: 4, depth: 8, rows: [[7, 0, 200, 9]]), name: "ga.png")
        XCTAssertEqual(gray, DecodedImage(width: 2, height: 1, channels: 1, pixels: [7, 200]))
    }

    func testPalettePNGGivesRGB() throws {
        let palette: [UInt8] = [255, 0, 0, 0, 255, 0, 1, 2, 3]
        let file = pngFile(width: 3, height: 2, colorType: 3, depth: 8, rows: [[0, 1, 2], [2, 1, 0]], extra: [("PLTE", palette)])
        let image = try ImageFile.decode(bytes: file, name: "p.png")
        XCTAssertEqual(image.channels, 3)
        XCTAssertEqual(image.pixels, [255, 0, 1, 1, 0, 255,  0, 255, 2, 2, 255, 0,  0, 0, 3, 3, 0, 0])
    }

    func test16BitPNGIsScaledTo8Bits() throws {
        let values: [UInt16] = [0x0000, 0x0080, 0x1234, 0x8080, 0xFF00, 0xFFFF]
        let row = values.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
        let image = try ImageFile.decode(bytes: pngFile(width: 6, height: 1, colorType: 0, depth: 16, rows: [row]), name: "g16.png")
        // round(v * 255 / 65535): the exact scaling, not a gamma conversion (libpng's default for 16-bit).
        XCTAssertEqual(image.pixels, values.map { UInt8((Double($0) * 255 / 65535).rounded()) })
        XCTAssertEqual(image.pixels, [0, 0, 18, 128, 254, 255])
        let rgb = try ImageFile.decode(bytes: pngFile(width: 1, height: 1, colorType: 2, depth: 16, rows: [[0xFF, 0xFF, 0x80, 0x80, 0, 0]]),
                                       name: "c16.png")
        XCTAssertEqual(rgb.pixels, [255, 128, 0])
    }

    func testGammaIsIgnoredLikePIL() throws {
        // gAMA 1.0 (linear) and 0.5: libpng alone would re-encode these values to sRGB (64 -> 136).
        for gamma in [100_000, 50_000] {
            let g = [UInt8(gamma >> 24), UInt8(gamma >> 16 & 0xFF), UInt8(gamma >> 8 & 0xFF), UInt8(gamma & 0xFF)]
            let file = pngFile(width: 4, height: 1, colorType: 0, depth: 8, rows: [[0, 64, 128, 255]], extra: [("gAMA", g), ("gAMA", g)])
            XCTAssertEqual(try ImageFile.decode(bytes: file, name: "g.png").pixels, [0, 64, 128, 255], "gAMA \(gamma)")
            let rgb16 = pngFile(width: 1, height: 1, colorType: 2, depth: 16, rows: [[0x40, 0x40, 0x80, 0x80, 0xC0, 0xC0]], extra: [("gAMA", g)])
            XCTAssertEqual(try ImageFile.decode(bytes: rgb16, name: "g16.png").pixels, [64, 128, 192], "gAMA \(gamma), 16-bit")
        }
    }

    // MARK: - Channel conversion

    func testColorToGrayUsesPILFormula() throws {
        let colors: [(UInt8, UInt8, UInt8)] = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0), (10, 200, 33), (128, 128, 128)]
        let rgb = DecodedImage(width: colors.count, height: 1, channels: 3,
                               pixels: colors.map { $0.0 } + colors.map { $0.1 } + colors.map { $0.2 })
        // PIL: Image.new("RGB", ...).convert("L") on these colors.
        let expected: [UInt8] = [76, 150, 29, 255, 0, 124, 128]
        XCTAssertEqual(try ImageFile.decode(bytes: try ImageFile.encodePNG(rgb), name: "c.png", channels: 1).pixels, expected)
        XCTAssertEqual(rgb.converted(channels: 1).pixels, expected)
        let jpeg = try ImageFile.decode(bytes: try ImageFile.encodeJPEG(rgb, quality: 100), name: "c.jpg", channels: 1)
        XCTAssertEqual(jpeg.channels, 1)
        XCTAssertLessThanOrEqual(maxDifference(jpeg.pixels, expected), 4)
    }

    func testGrayToColorReplicates() throws {
        let gray = DecodedImage(width: 3, height: 1, channels: 1, pixels: [0, 99, 255])
        let rgb = try ImageFile.decode(bytes: try ImageFile.encodePNG(gray), name: "g.png", channels: 3)
        XCTAssertEqual(rgb, DecodedImage(width: 3, height: 1, channels: 3, pixels: [0, 99, 255, 0, 99, 255, 0, 99, 255]))
        XCTAssertEqual(gray.converted(channels: 3), rgb)
        XCTAssertEqual(try ImageFile.decode(bytes: try ImageFile.encodePNG(gray), name: "g.png", channels: 1), gray)
    }

    // MARK: - Errors name the file

    func testBadInputsThrowNamingTheFile() throws {
        let png = try ImageFile.encodePNG(noise(width: 16, height: 16, channels: 3, seed: 9))
        let jpeg = try ImageFile.encodeJPEG(noise(width: 64, height: 64, channels: 3, seed: 9), quality: 90)  // half is past the headers
        var random = [UInt8](repeating: 0, count: 300)
        var rng = SplitMix64(seed: 5)
        for i in random.indices { random[i] = UInt8(truncatingIfNeeded: rng.next()) }
        random[0] = 0x42
        let cases: [([UInt8], String, String)] = [
            (Array(png.prefix(png.count / 2)), "img/1.png", "img/1.png: corrupt PNG data: "),
            (Array(jpeg.prefix(jpeg.count / 2)), "img/2.jpg", "img/2.jpg: corrupt JPEG data: Premature end of JPEG file"),
            (random, "img/3.png", "img/3.png: not a PNG or JPEG file"),
            ([0xFF, 0xD8] + random, "img/4.jpg", "img/4.jpg: corrupt JPEG data: "),
            (Array(png.prefix(8)) + random, "img/5.png", "img/5.png: corrupt PNG data: "),
            ([], "img/6.png", "img/6.png: empty file"),
            (png, "img/7.png", "img/7.png: cannot decode to 2 channels"),
        ]
        for (bytes, name, prefix) in cases {
            XCTAssertThrowsError(try ImageFile.decode(bytes: bytes, name: name, channels: name.hasSuffix("7.png") ? 2 : nil)) {
                XCTAssertTrue(($0 as? DataError)?.description.hasPrefix(prefix) == true, "\(name): \($0)")
            }
        }
        let missing = NSTemporaryDirectory() + "no-such-dir-\(getpid())/8.png"
        XCTAssertThrowsError(try ImageFile.decode(path: missing)) {
            XCTAssertEqual(($0 as? DataError)?.description, "\(missing): no such file")
        }
    }

    func testHugeHeadersAreRejectedBeforeDecoding() throws {
        // A PNG claiming 100000 x 100000 gray pixels, and a JPEG whose frame header claims 60000 x 60000.
        let png = pngFile(width: 100_000, height: 100_000, colorType: 0, depth: 8, rows: [[0]])
        XCTAssertThrowsError(try ImageFile.decode(bytes: png, name: "big.png")) {
            XCTAssertTrue("\($0)".hasPrefix("big.png: image too large: 100000x100000"), "\($0)")
        }
        var jpeg = try ImageFile.encodeJPEG(smooth(width: 8, height: 8, channels: 3), quality: 50)
        let sof = try XCTUnwrap((0..<jpeg.count - 1).first { jpeg[$0] == 0xFF && jpeg[$0 + 1] == 0xC0 })
        jpeg[sof + 5] = 0xEA; jpeg[sof + 6] = 0x60; jpeg[sof + 7] = 0xEA; jpeg[sof + 8] = 0x60
        XCTAssertThrowsError(try ImageFile.decode(bytes: jpeg, name: "big.jpg")) {
            XCTAssertTrue("\($0)".hasPrefix("big.jpg: image too large: 60000x60000 with 3 channels"), "\($0)")
        }
        // Under the limit by itself, over it once replicated to 3 channels.
        let side = Int(Double(ImageFile.maxSamples).squareRoot())
        let gray = pngFile(width: side, height: side, colorType: 0, depth: 8, rows: [[0]])
        XCTAssertThrowsError(try ImageFile.decode(bytes: gray, name: "g.png", channels: 3)) {
            XCTAssertTrue("\($0)".contains("too large"), "\($0)")
        }
    }

    // MARK: - Resizing

    func testResizeByHand() {
        let image = DecodedImage(width: 2, height: 2, channels: 3, pixels: [1, 3, 4, 6, 10, 20, 30, 40, 255, 255, 255, 253])
        // Halving with the triangle filter widened to 2 pixels weighs the 2x2 block equally: the rounded mean.
        XCTAssertEqual(image.resized(height: 1, width: 1).pixels, [4, 25, 255])  // means 3.5, 25, 254.5
        XCTAssertEqual(image.resized(height: 2, width: 2), image)
        let flat = DecodedImage(width: 1, height: 1, channels: 1, pixels: [77])
        XCTAssertEqual(flat.resized(height: 3, width: 5).pixels, [UInt8](repeating: 77, count: 15))
        // Upscaling 1x2 to 1x4: centers at 0.25, 0.75, 1.25, 1.75 of the input; edges clamp.
        let ramp = DecodedImage(width: 2, height: 1, channels: 1, pixels: [0, 100])
        XCTAssertEqual(ramp.resized(height: 1, width: 4).pixels, [0, 25, 75, 100])
    }

    func testResizeMatchesPIL() throws {
        try requirePIL()
        let cases: [(w: Int, h: Int, c: Int, W: Int, H: Int)] = [
            (37, 23, 1, 16, 11), (5, 7, 1, 19, 13), (40, 30, 3, 13, 29), (28, 28, 3, 64, 64),
            (101, 3, 1, 7, 3), (3, 101, 3, 3, 9), (17, 17, 1, 4, 4), (9, 9, 3, 2, 2), (64, 48, 3, 1, 1),
        ]
        for (i, t) in cases.enumerated() {
            let image = noise(width: t.w, height: t.h, channels: t.c, seed: UInt64(100 + i))
            let ours = image.resized(height: t.H, width: t.W)
            XCTAssertEqual([ours.channels, ours.height, ours.width], [t.c, t.H, t.W])
            let pil = try pilResize(image, width: t.W, height: t.H)
            XCTAssertLessThanOrEqual(maxDifference(ours.pixels, pil), 1, "\(t)")
            // Off-by-one rounding (truncating weights or sums) stays within 1 but differs often.
            let differing = zip(ours.pixels, pil).filter { $0 != $1 }.count
            XCTAssertLessThanOrEqual(differing, pil.count / 100, "\(t): \(differing) of \(pil.count) samples differ")
        }
    }

    /// Files PIL writes (a subsampled color JPEG, a progressive one, gray, CMYK) decode to what PIL
    /// decodes, in the file's own channels and converted to gray.
    func testDecodeMatchesPIL() throws {
        try requirePIL()
        let dir = temporaryFolder()
        let script = """
            import sys
            from PIL import Image
            d = sys.argv[1]
            rgb = Image.frombytes("RGB", (29, 17), bytes((i * 37 + (i // 87) * 11) % 256 for i in range(29 * 17 * 3)))
            rgb.save(d + "/rgb.jpg", quality=75)
            rgb.save(d + "/progressive.jpg", quality=80, progressive=True)
            rgb.convert("L").save(d + "/gray.jpg", quality=85)
            rgb.convert("CMYK").save(d + "/cmyk.jpg")
            rgb.convert("P", palette=Image.ADAPTIVE, colors=7).save(d + "/palette.png")
            for name in ["rgb.jpg", "progressive.jpg", "gray.jpg", "palette.png"]:
                im = Image.open(d + "/" + name)
                im.convert("L").save(d + "/" + name + ".L.png")
                im.convert("RGB").save(d + "/" + name + ".RGB.png")
            """
        try runPython(["-c", script, dir.path])
        for name in ["rgb.jpg", "progressive.jpg", "gray.jpg", "palette.png"] {
            let path = dir.appendingPathComponent(name).path
            for channels in [1, 3] {
                let ours = try ImageFile.decode(path: path, channels: channels)
                let pil = try ImageFile.decode(path: path + (channels == 1 ? ".L.png" : ".RGB.png"))
                XCTAssertEqual([ours.channels, ours.height, ours.width], [channels, 17, 29], name)
                XCTAssertEqual(maxDifference(ours.pixels, pil.pixels), 0, "\(name) as \(channels) channels")
            }
        }
        XCTAssertEqual(try ImageFile.decode(path: dir.appendingPathComponent("gray.jpg").path).channels, 1)
        XCTAssertEqual(try ImageFile.decode(path: dir.appendingPathComponent("palette.png").path).channels, 3)
        let cmyk = dir.appendingPathComponent("cmyk.jpg").path
        XCTAssertThrowsError(try ImageFile.decode(path: cmyk)) {
            XCTAssertEqual("\($0)", "\(cmyk): unsupported JPEG: CMYK color space with 4 components")
        }
    }

    // MARK: - A real file

    func testMNISTPNG() throws {
        let dir = "/work/shared/data/mnist-png/train/5"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir), let first = names.filter({ $0.hasSuffix(".png") }).sorted().first else {
            throw XCTSkip("\(dir) is not here")
        }
        let image = try ImageFile.decode(path: dir + "/" + first)
        XCTAssertEqual([image.channels, image.height, image.width], [1, 28, 28])
        XCTAssertGreaterThan(image.pixels.max() ?? 0, 128, "a digit has bright strokes")
        XCTAssertEqual(try ImageFile.decode(path: dir + "/" + first, channels: 3).channels, 3)
    }

    // MARK: - Helpers

    /// Pseudo-random pixels: the hardest case for matching another resampler's rounding.
    func noise(width: Int, height: Int, channels: Int, seed: UInt64) -> DecodedImage {
        var rng = SplitMix64(seed: seed)
        return DecodedImage(width: width, height: height, channels: channels,
                            pixels: (0..<channels * width * height).map { _ in UInt8(truncatingIfNeeded: rng.next() >> 33) })
    }

    /// Gradients, which JPEG keeps well.
    func smooth(width: Int, height: Int, channels: Int) -> DecodedImage {
        var pixels = [UInt8]()
        for c in 0..<channels {
            for y in 0..<height { for x in 0..<width { pixels.append(UInt8((40 + 6 * x + 5 * y + 50 * c) % 256)) } }
        }
        return DecodedImage(width: width, height: height, channels: channels, pixels: pixels)
    }

    func maxDifference(_ a: [UInt8], _ b: [UInt8]) -> Int {
        guard a.count == b.count else { return Int.max }
        return zip(a, b).map { abs(Int($0) - Int($1)) }.max() ?? 0
    }

    /// A PNG file: IHDR, the `extra` chunks (PLTE, gAMA, ...), one IDAT of stored (uncompressed) deflate
    /// blocks, IEND. Each row gets filter byte 0.
    func pngFile(width: Int, height: Int, colorType: UInt8, depth: UInt8, rows: [[UInt8]], extra: [(String, [UInt8])] = []) -> [UInt8] {
        func be32(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
        func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
            let body = Array(type.utf8) + data
            return be32(data.count) + body + be32(Int(body.withUnsafeBytes { crc32Checksum($0) }))
        }
        let raw: [UInt8] = rows.flatMap { [0] + $0 }
        var zlib: [UInt8] = [0x78, 0x01]
        var offset = 0
        repeat {
            let n = min(65535, raw.count - offset)
            let last: UInt8 = offset + n == raw.count ? 1 : 0
            zlib += [last, UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8(~n >> 8 & 0xFF)]
            zlib += raw[offset..<offset + n]
            offset += n
        } while offset < raw.count
        var a = 1, b = 0
        for byte in raw { a = (a + Int(byte)) % 65521; b = (b + a) % 65521 }
        zlib += be32(b << 16 | a)
        var file: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        file += chunk("IHDR", be32(width) + be32(height) + [depth, colorType, 0, 0, 0])
        for (type, data) in extra { file += chunk(type, data) }
        return file + chunk("IDAT", zlib) + chunk("IEND", [])
    }

    /// Fails (DDP_REQUIRE_PYTHON=1) or skips when /usr/bin/python3 cannot import PIL.
    func requirePIL() throws {
        if (try? runPython(["-c", "import PIL"])) != nil { return }
        if ProcessInfo.processInfo.environment["DDP_REQUIRE_PYTHON"] == "1" {
            XCTFail("DDP_REQUIRE_PYTHON=1 but /usr/bin/python3 cannot import PIL (apt-get install python3-pil)")
        }
        throw XCTSkip("/usr/bin/python3 with PIL is not installed")
    }

    /// PIL's `Image.resize((width, height), Image.BILINEAR)` of `image`, as planes.
    func pilResize(_ image: DecodedImage, width: Int, height: Int) throws -> [UInt8] {
        let dir = temporaryFolder()
        let input = dir.appendingPathComponent("in"), output = dir.appendingPathComponent("out")
        let n = image.width * image.height
        let interleaved = (0..<n * image.channels).map { image.pixels[($0 % image.channels) * n + $0 / image.channels] }
        try Foundation.Data(interleaved).write(to: input)
        let script = """
            import sys
            from PIL import Image
            mode, w, h, W, H, src, dst = sys.argv[1], *map(int, sys.argv[2:6]), sys.argv[6], sys.argv[7]
            im = Image.frombytes(mode, (w, h), open(src, "rb").read())
            open(dst, "wb").write(im.resize((W, H), Image.BILINEAR).tobytes())
            """
        try runPython(["-c", script, image.channels == 1 ? "L" : "RGB", "\(image.width)", "\(image.height)", "\(width)", "\(height)",
                       input.path, output.path])
        let out = [UInt8](try Foundation.Data(contentsOf: output))
        let m = width * height
        guard out.count == m * image.channels else { throw DataError("PIL wrote \(out.count) bytes") }
        return (0..<m * image.channels).map { out[($0 % m) * image.channels + $0 / m] }
    }

    /// `temporaryDirectory()` as a URL (removed when the test ends).
    func temporaryFolder() -> URL { URL(fileURLWithPath: temporaryDirectory()) }

    @discardableResult
    func runPython(_ arguments: [String]) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw DataError("python3 exited with \(process.terminationStatus)") }
        return process.terminationStatus
    }
}

/// SplitMix64: reproducible test pixels.
private struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
