import Foundation
import SpotModels

/// A value sent as a statement parameter, in PostgreSQL's text format (or, where it has one,
/// its binary format: bytes are sent as they are instead of as twice as much hex).
public protocol PGEncodable: Sendable {
    var pgText: String { get }
    var pgBinary: [UInt8]? { get }
}

extension PGEncodable {
    public var pgBinary: [UInt8]? { nil }
}

/// A value read from a result column in text format.
public protocol PGDecodable {
    init(pgText: String) throws
}

/// An enum of SpotModels stored as its raw text (the tables' CHECK constraints name the same
/// values); a value the enum does not know is a decoding error.
public protocol PGTextEnum: PGEncodable, PGDecodable, RawRepresentable where RawValue == String {}

extension PGTextEnum {
    public var pgText: String { rawValue }
    public init(pgText: String) throws {
        guard let value = Self(rawValue: pgText) else { throw PGError(.decoding, message: "\(Self.self) has no value \(pgText)") }
        self = value
    }
}

extension AgentStatus: PGTextEnum {}
extension CommandStatus: PGTextEnum {}
extension SwitchTrigger: PGTextEnum {}

extension String: PGEncodable, PGDecodable {
    public var pgText: String { self }
    public init(pgText: String) { self = pgText }
}

extension Int: PGEncodable, PGDecodable {
    public var pgText: String { String(self) }
    public init(pgText: String) throws {
        guard let v = Int(pgText) else { throw PGError(.decoding, message: "not an integer: \(pgText.prefix(40))") }
        self = v
    }
}

extension Int64: PGEncodable, PGDecodable {
    public var pgText: String { String(self) }
    public init(pgText: String) throws {
        guard let v = Int64(pgText) else { throw PGError(.decoding, message: "not an integer: \(pgText.prefix(40))") }
        self = v
    }
}

extension Double: PGEncodable, PGDecodable {
    public var pgText: String { "\(self)" }
    public init(pgText: String) throws {
        guard let v = Double(pgText) else { throw PGError(.decoding, message: "not a number: \(pgText.prefix(40))") }
        self = v
    }
}

extension Bool: PGEncodable, PGDecodable {
    public var pgText: String { self ? "t" : "f" }
    public init(pgText: String) throws {
        switch pgText {
        case "t", "true": self = true
        case "f", "false": self = false
        default: throw PGError(.decoding, message: "not a boolean: \(pgText.prefix(40))")
        }
    }
}

extension UUID: PGEncodable, PGDecodable {
    public var pgText: String { lowercased }
    public init(pgText: String) throws {
        guard let v = UUID(uuidString: pgText) else { throw PGError(.decoding, message: "not a uuid: \(pgText.prefix(40))") }
        self = v
    }
}

extension Date: PGEncodable, PGDecodable {
    /// Sent as `YYYY-MM-DD HH:MM:SS.ffffff+00`, which `timestamptz` reads to the microsecond.
    public var pgText: String {
        let micros = (timeIntervalSince1970 * 1_000_000).rounded()
        var seconds = Int(floor(micros / 1_000_000))
        let fraction = Int(micros - Double(seconds) * 1_000_000)
        var t = tm()
        gmtime_r(&seconds, &t)
        let year = Int(t.tm_year) + 1900
        guard (1...9999).contains(year) else {
            // year 0 and before are 1 BC and before in PostgreSQL (which has no year 0)
            return String(
                format: "%04d-%02d-%02d %02d:%02d:%02d.%06d+00%@", year > 0 ? year : 1 - year, Int(t.tm_mon) + 1, Int(t.tm_mday),
                Int(t.tm_hour), Int(t.tm_min), Int(t.tm_sec), fraction, year > 0 ? "" : " BC")
        }
        // by hand: String(format:) costs about 5 us here, and the SEF sends four per price point
        var out = [UInt8](repeating: 0, count: 29)
        func put(_ value: Int, at offset: Int, digits: Int) {
            var v = value
            for i in stride(from: offset + digits - 1, through: offset, by: -1) {
                out[i] = UInt8(48 + v % 10)
                v /= 10
            }
        }
        put(Int(t.tm_year) + 1900, at: 0, digits: 4)
        put(Int(t.tm_mon) + 1, at: 5, digits: 2)
        put(Int(t.tm_mday), at: 8, digits: 2)
        put(Int(t.tm_hour), at: 11, digits: 2)
        put(Int(t.tm_min), at: 14, digits: 2)
        put(Int(t.tm_sec), at: 17, digits: 2)
        put(fraction, at: 20, digits: 6)
        for (i, c) in [(4, "-"), (7, "-"), (10, " "), (13, ":"), (16, ":"), (19, "."), (26, "+"), (27, "0"), (28, "0")] as [(Int, Character)] {
            out[i] = c.asciiValue!
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Reads `timestamptz` output (`2025-11-23 10:00:00.123456+00`, any offset, `T` or space).
    public init(pgText: String) throws {
        let bad = PGError(.decoding, message: "not a timestamptz: \(pgText.prefix(40))")
        let bc = pgText.hasSuffix(" BC")
        let u = Array((bc ? pgText.dropLast(3) : Substring(pgText)).utf8)
        func int(_ from: Int, _ count: Int) throws -> Int {
            guard from + count <= u.count else { throw bad }
            var v = 0
            for b in u[from..<(from + count)] {
                guard (48...57).contains(b) else { throw bad }
                v = v * 10 + Int(b - 48)
            }
            return v
        }
        guard u.count >= 19, u[4] == 45, u[7] == 45, u[10] == 32 || u[10] == 84, u[13] == 58, u[16] == 58 else { throw bad }
        var t = tm()
        t.tm_year = Int32((bc ? 1 - (try int(0, 4)) : try int(0, 4)) - 1900)
        t.tm_mon = Int32(try int(5, 2) - 1)
        t.tm_mday = Int32(try int(8, 2))
        t.tm_hour = Int32(try int(11, 2))
        t.tm_min = Int32(try int(14, 2))
        t.tm_sec = Int32(try int(17, 2))
        var i = 19
        var fraction = 0.0
        if i < u.count, u[i] == 46 {
            var scale = 0.1
            i += 1
            while i < u.count, (48...57).contains(u[i]) {
                fraction += Double(u[i] - 48) * scale
                scale /= 10
                i += 1
            }
        }
        var offset = 0
        if i < u.count {
            guard u[i] == 43 || u[i] == 45 else { throw bad }
            let sign = u[i] == 43 ? 1 : -1
            let hours = try int(i + 1, 2)
            var minutes = 0
            if i + 3 < u.count { minutes = try int(u[i + 3] == 58 ? i + 4 : i + 3, 2) }
            offset = sign * (hours * 3600 + minutes * 60)
        }
        self = Date(timeIntervalSince1970: Double(timegm(&t) - offset) + fraction)
    }
}

/// `bytea`: sent in binary format as statement parameters, read in hex format (text results),
/// hex in COPY.
public struct PGBytes: PGEncodable, PGDecodable, Equatable {
    public var bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public var pgBinary: [UInt8]? { bytes }

    public var pgText: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8](repeating: 0, count: 2 + bytes.count * 2)
        out[0] = 92  // backslash
        out[1] = 120  // x
        for (i, b) in bytes.enumerated() {
            out[2 + 2 * i] = digits[Int(b >> 4)]
            out[3 + 2 * i] = digits[Int(b & 0x0f)]
        }
        return String(decoding: out, as: UTF8.self)
    }

    public init(pgText: String) throws {
        guard pgText.hasPrefix("\\x"), pgText.count % 2 == 0 else { throw PGError(.decoding, message: "not hex bytea") }
        var out: [UInt8] = []
        out.reserveCapacity(pgText.utf8.count / 2)
        var it = pgText.utf8.dropFirst(2).makeIterator()
        while let hi = it.next(), let lo = it.next() {
            guard let h = Self.nibble(hi), let l = Self.nibble(lo) else { throw PGError(.decoding, message: "not hex bytea") }
            out.append(h << 4 | l)
        }
        bytes = out
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: c - 48
        case 97...102: c - 87
        case 65...70: c - 55
        default: nil
        }
    }
}

/// A one-dimensional array parameter (`$1::uuid[]`), every element quoted, so one statement
/// can carry a whole batch through `unnest`.
public struct PGArray: PGEncodable {
    public let pgText: String

    public init(_ values: some Sequence<(any PGEncodable)?>) {
        // built as bytes: appending unicode scalars one by one was half of the SEF's CPU per batch
        var out: [UInt8] = [0x7B]  // {
        out.reserveCapacity(values.underestimatedCount * 40 + 2)
        var first = true
        for value in values {
            if !first { out.append(0x2C) }  // ,
            first = false
            guard let value else {
                out.append(contentsOf: "NULL".utf8)
                continue
            }
            out.append(0x22)  // "
            var text = value.pgText
            text.withUTF8 { bytes in
                for b in bytes {
                    if b == 0x22 || b == 0x5C { out.append(0x5C) }
                    out.append(b)
                }
            }
            out.append(0x22)
        }
        out.append(0x7D)  // }
        pgText = String(decoding: out, as: UTF8.self)
    }

    public init<T: PGEncodable>(_ values: [T]) {
        self.init(values.lazy.map { $0 as (any PGEncodable)? })
    }
}
