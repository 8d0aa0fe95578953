import Engine

/// `--dataset synthetic:N`: a seeded, learnable 10-class task on 28x28 byte images, for tests and
/// benchmarks of any size. Each class has a random prototype image; a sample is its class's
/// prototype plus noise, so an MLP learns it in an epoch or two but not trivially in one step.
public enum Synthetic {
    public static let classes = 10
    public static let side = 28

    /// `split` 0 is the training set, 1 the test set: same prototypes, different samples.
    public static func make(count: Int, seed: UInt64, split: UInt64) -> Dataset {
        let n = side * side
        var protoRNG = RandomStream(seed: seed, stream: 0x5E7)
        var prototypes = [Float](repeating: 0, count: classes * n)
        for i in 0..<prototypes.count { prototypes[i] = protoRNG.nextUnitFloat() }
        var rng = RandomStream(seed: seed, stream: 0x5E8 + split)
        var pixels = [UInt8](repeating: 0, count: count * n)
        var labels = [Int32](repeating: 0, count: count)
        for s in 0..<count {
            let c = Int(rng.next() % UInt64(classes))
            labels[s] = Int32(c)
            for j in 0..<n {
                let v = 0.5 * prototypes[c * n + j] + 0.5 * rng.nextUnitFloat()
                pixels[s * n + j] = UInt8(max(0, min(255, v * 255)))
            }
        }
        // Counts always agree here, so this cannot throw.
        return try! Dataset(name: split == 0 ? "train" : "test", sampleShape: Shape(1, side, side),
                            classNames: (0..<classes).map(String.init), pixels: pixels, labels: labels)
    }
}
