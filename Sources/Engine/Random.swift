import CKernels

/// Seeded randomness. Two kinds, both reproducible from integers alone:
/// - `RandomStream`: a sequential generator (xoshiro256**) whose whole state is four words, for
///   parameter init, permutations and synthetic data.
/// - `CounterRandom`: a stateless hash of (key, counter), for dropout masks. A mask element depends
///   only on (seed, step, sample index, layer, element), so it is the same whichever rank computes it
///   and needs no state in a checkpoint.

@inline(__always)
public func splitMix64(_ x: UInt64) -> UInt64 {
    var z = x &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

public struct RandomStream: RandomNumberGenerator, Sendable {
    public var state: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var s = seed
        func next() -> UInt64 { s = splitMix64(s); return s }
        state = (next(), next(), next(), next())
    }

    /// A stream for a named purpose, independent of other purposes under the same seed.
    public init(seed: UInt64, stream: UInt64) {
        self.init(seed: splitMix64(seed ^ splitMix64(stream &* 0x2545_F491_4F6C_DD1D)))
    }

    @inline(__always)
    public mutating func next() -> UInt64 {
        let result = rotl(state.1 &* 5, 7) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = rotl(state.3, 45)
        return result
    }

    /// Uniform in [0, 1) with 24 bits, as a Float.
    @inline(__always)
    public mutating func nextUnitFloat() -> Float { Float(next() >> 40) * 0x1p-24 }

    /// Uniform in [low, high).
    @inline(__always)
    public mutating func uniform(_ low: Float, _ high: Float) -> Float { low + (high - low) * nextUnitFloat() }

    /// Standard normal (Box-Muller).
    public mutating func normal() -> Float {
        let u1 = max(Double(next() >> 11) * 0x1p-53, 1e-300)
        let u2 = Double(next() >> 11) * 0x1p-53
        return Float((-2 * _log(u1)).squareRoot() * _cos(2 * Double.pi * u2))
    }

    @inline(__always) private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }
}

public enum CounterRandom {
    /// Uniform in [0, 1) from a key and a counter.
    @inline(__always)
    public static func unitFloat(key: UInt64, counter: UInt64) -> Float {
        Float(splitMix64(key ^ splitMix64(counter)) >> 40) * 0x1p-24
    }

    /// mask[i] = unitFloat(key, i) >= p ? 1 : 0 for i < count (in C, vectorized: the same bits).
    @inline(__always)
    public static func mask(_ mask: UnsafeMutablePointer<UInt8>, key: UInt64, count: Int, keepAbove p: Float) {
        ckernels_dropout_mask(mask, key, count, p)
    }

    /// A key from four integers (fixed arity: a variadic would allocate an array per call).
    @inline(__always)
    public static func key(_ a: UInt64, _ b: UInt64, _ c: UInt64, _ d: UInt64) -> UInt64 {
        var h: UInt64 = 0x6A09_E667_F3BC_C908
        h = splitMix64(h ^ a)
        h = splitMix64(h ^ b)
        h = splitMix64(h ^ c)
        return splitMix64(h ^ d)
    }
}

@_silgen_name("log") private func _log(_ x: Double) -> Double
@_silgen_name("cos") private func _cos(_ x: Double) -> Double
