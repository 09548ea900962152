import Foundation

/// A value sent as a statement parameter, in PostgreSQL's text format.
public protocol PGEncodable: Sendable {
    var pgText: String { get }
}

/// A value read from a result column in text format.
public protocol PGDecodable {
    init(pgText: String) throws
}

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
    public var pgText: String { uuidString.lowercased() }
    public init(pgText: String) throws {
        guard let v = UUID(uuidString: pgText) else { throw PGError(.decoding, message: "not a uuid: \(pgText.prefix(40))") }
        self = v
    }
}

extension Date: PGEncodable, PGDecodable {
    /// Sent as ISO 8601 in UTC with microseconds, which `timestamptz` reads exactly.
    public var pgText: String { formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)) }

    /// Reads `timestamptz` output (`2025-11-23 10:00:00.123456+00`) regardless of the session's
    /// time zone offset.
    public init(pgText: String) throws {
        var s = pgText.replacingOccurrences(of: " ", with: "T")
        // "+00" → "+00:00"
        if let sign = s.lastIndex(where: { $0 == "+" || $0 == "-" }), s.distance(from: sign, to: s.endIndex) == 3 {
            s += ":00"
        }
        if let d = try? Date(s, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) {
            self = d
        } else if let d = try? Date(s, strategy: Date.ISO8601FormatStyle()) {
            self = d
        } else {
            throw PGError(.decoding, message: "not a timestamptz: \(pgText.prefix(40))")
        }
    }
}

/// `bytea`, sent and read in hex format.
public struct PGBytes: PGEncodable, PGDecodable, Equatable {
    public var bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public var pgText: String { "\\x" + bytes.map { String(format: "%02x", $0) }.joined() }

    public init(pgText: String) throws {
        guard pgText.hasPrefix("\\x"), pgText.count % 2 == 0 else { throw PGError(.decoding, message: "not hex bytea") }
        var out: [UInt8] = []
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

/// A JSON document for `jsonb` columns, passed as its text.
public struct PGJSON: PGEncodable, PGDecodable, Equatable {
    public var text: String
    public init(text: String) { self.text = text }
    public var pgText: String { text }
    public init(pgText: String) { text = pgText }
}
