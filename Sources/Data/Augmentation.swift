import Engine

/// `--augment crop:P,flip`: torchvision's `RandomCrop(size, padding=P)` followed by
/// `RandomHorizontalFlip()`, on (C, H, W) byte images while a training batch is gathered.
///
/// Each draw is a hash of (seed, epoch, sample index), never of a generator's position, so a sample
/// is augmented the same way whichever rank gathers it and however many ranks there are, and a
/// resumed run repeats it without saving any state.
public struct Augmentation: Equatable, Codable, Sendable {
    /// Zero padding on every side before the crop back to the image's size (0: no crop).
    public var cropPadding = 0
    public var flip = false
    public var seed: UInt64 = 0

    public init(cropPadding: Int = 0, flip: Bool = false, seed: UInt64 = 0) {
        self.cropPadding = cropPadding
        self.flip = flip
        self.seed = seed
    }

    /// `crop:P`, `flip`, comma-separated; `none` for nothing.
    public init(parsing text: String, seed: UInt64) throws {
        self.seed = seed
        for item in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces).lowercased() }) {
            if item == "flip" {
                flip = true
            } else if item.hasPrefix("crop:"), let p = Int(item.dropFirst(5)), p >= 0, p <= 1024 {
                cropPadding = p
            } else if item == "none" {
                continue
            } else {
                throw DataError("invalid --augment '\(text)': expected crop:PADDING and/or flip, e.g. crop:4,flip")
            }
        }
    }

    public var isActive: Bool { cropPadding > 0 || flip }

    public var description: String {
        var parts: [String] = []
        if cropPadding > 0 { parts.append("crop:\(cropPadding)") }
        if flip { parts.append("flip") }
        return parts.isEmpty ? "none" : parts.joined(separator: ",")
    }

    /// The draws for one sample: crop offsets in 0...2P and whether to flip.
    public func draws(sample: Int, epoch: Int) -> (dy: Int, dx: Int, flip: Bool) {
        let key = CounterRandom.key(seed, 0xA06_0000, UInt64(epoch), UInt64(sample))
        let span = UInt64(2 * cropPadding + 1)
        let dy = cropPadding > 0 ? Int(splitMix64(key ^ 1) % span) : cropPadding
        let dx = cropPadding > 0 ? Int(splitMix64(key ^ 2) % span) : cropPadding
        let f = flip && CounterRandom.unitFloat(key: key, counter: 3) < 0.5
        return (dy, dx, f)
    }

    /// Writes sample `src` (C, H, W bytes) cropped and flipped into `dst`, each byte through its
    /// channel's `table` row (normalization). Padding is byte 0, as torchvision pads before
    /// normalizing.
    @inline(__always)
    public func apply(_ src: UnsafePointer<UInt8>, into dst: UnsafeMutablePointer<Float>, shape: Shape,
                      table: UnsafePointer<Float>, sample: Int, epoch: Int) {
        let (c, h, w) = shape.rank == 3 ? (shape.dims[0], shape.dims[1], shape.dims[2]) : (1, 1, shape.count)
        let (dy, dx, f) = draws(sample: sample, epoch: epoch)
        let p = cropPadding
        for ch in 0..<c {
            let t = table + ch * 256
            let pad = t[0]
            for y in 0..<h {
                let sy = y + dy - p
                let row = dst + (ch * h + y) * w
                guard sy >= 0 && sy < h else {
                    row.update(repeating: pad, count: w)
                    continue
                }
                let srow = src + (ch * h + sy) * w
                for x in 0..<w {
                    // Crop first, then flip the cropped image: output x shows cropped column w-1-x.
                    let cx = f ? w - 1 - x : x
                    let sx = cx + dx - p
                    row[x] = sx >= 0 && sx < w ? t[Int(srow[sx])] : pad
                }
            }
        }
    }
}
