/// SplitMix64: a small, fast generator whose sequence is fixed by its seed, so synthetic
/// markets, replays, fault schedules and tests that draw random data repeat exactly.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return Self.mix(state)
    }

    public static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Draws that depend only on what they are about (seed, a name, an index), not on the order in
/// which they are asked: the same seed gives the same market, bands and faults however the run
/// interleaves.
public enum Draw {
    /// A number in [0, 1) for this seed, key and index.
    public static func unit(_ seed: UInt64, _ key: String, _ index: Int = 0) -> Double {
        let x = SplitMix64.mix(seed ^ SplitMix64.mix(hash(key) ^ SplitMix64.mix(UInt64(bitPattern: Int64(index)))))
        return Double(x >> 11) / Double(UInt64(1) << 53)
    }

    /// A generator of its own for this seed and key.
    public static func generator(_ seed: UInt64, _ key: String) -> SplitMix64 { SplitMix64(seed: SplitMix64.mix(seed ^ hash(key))) }

    /// FNV-1a of the key's bytes.
    static func hash(_ key: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in key.utf8 {
            h ^= UInt64(byte)
            h &*= 0x100_0000_01B3
        }
        return h
    }
}
