// libFuzzer target "image": `ImageFile.decode(bytes:name:channels:)` on any input; the magic bytes pick
// libpng or libjpeg, so one target reaches both decoders (the seeds hold PNGs and JPEGs). A decoded
// image is then converted, resized and encoded again, checking each result.
// Built with Sources/Data/ImageFile.swift, libpng and libjpeg by Scripts/fuzz.sh; see Fuzz/README.md.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    let image: DecodedImage
    do {
        image = try ImageFile.decode(bytes: bytes, name: "fuzz")
    } catch {
        _ = "\(error)"  // the message is built from the input too
        return 0
    }
    let (w, h, c) = (image.width, image.height, image.channels)
    expect(c == 1 || c == 3, "\(c) channels")
    expect(w > 0 && h > 0 && image.pixels.count == c * h * w, "\(image.pixels.count) samples for \(c)x\(h)x\(w)")
    expect(w * h * c <= ImageFile.maxSamples, "\(w)x\(h)x\(c) is over the sample limit")

    // The checks below decode again and compare, which takes seconds near the sample limit under ASan.
    guard w * h <= 1 << 20 else { return 0 }

    // Decoding to a channel count is decoding, then converting.
    for n in [1, 3] {
        do {
            let other = try ImageFile.decode(bytes: bytes, name: "fuzz", channels: n)
            expect(other == image.converted(channels: n), "decode(channels: \(n)) differs from decode().converted")
        } catch {
            expect(false, "decoded once, then failed with channels \(n): \(error)")
        }
    }

    // Small images: resampling stays within each plane's range, and both encoders round-trip.
    guard w * h <= 1 << 14 else { return 0 }
    let newHeight = 1 + size % 37, newWidth = 1 + (size / 37) % 41
    let resized = image.resized(height: newHeight, width: newWidth)
    expect(resized.pixels.count == c * newHeight * newWidth, "resized to \(resized.pixels.count) samples")
    for p in 0..<c {
        let plane = image.pixels[(p * w * h)..<((p + 1) * w * h)]
        let out = resized.pixels[(p * newHeight * newWidth)..<((p + 1) * newHeight * newWidth)]
        expect(out.min()! >= plane.min()! && out.max()! <= plane.max()!, "resizing left plane \(p)'s range")
    }
    expect(image.resized(height: h, width: w) == image, "identity resize changed the pixels")
    do {
        let png = try ImageFile.encodePNG(image)
        expect(try ImageFile.decode(bytes: png, name: "fuzz.png") == image, "PNG round trip differs")
        let jpeg = try ImageFile.decode(bytes: try ImageFile.encodeJPEG(image, quality: 75), name: "fuzz.jpg")
        expect(jpeg.width == w && jpeg.height == h && jpeg.channels == c, "JPEG round trip is \(jpeg.channels)x\(jpeg.height)x\(jpeg.width)")
    } catch {
        expect(false, "re-encoding a decoded image failed: \(error)")
    }
    return 0
}

/// Like `precondition`, but the message survives -O, so a finding's log says which property broke.
func expect(_ condition: @autoclosure () throws -> Bool, _ message: @autoclosure () -> String) {
    if (try? condition()) != true { fatalError(message()) }
}
