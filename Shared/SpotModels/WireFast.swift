import Foundation

// The wire JSON's hot path. A price report is read from HTTP, written to the bus and read back
// by the SEF once per report, and Foundation's coders (a tree of values, key conversion, the
// `Codable` machinery) cost more per price point than storing it. The few types on that path
// read and write their JSON by hand, byte for byte what `WireJSON`'s coders give (tests compare
// both over random values); everything else, and every input a hand reader does not take,
// goes through the coders, which give the same value or the error.

/// A type with a hand-written reader of its plain wire form.
public protocol WireReadable {
    /// The value, or nil when the bytes are anything but the plain form this reader knows
    /// (an escape in a string, an unknown or repeated key, another key spelling, a wrong
    /// type, an invalid field, another schema version): `WireJSON.decode` then hands them to
    /// `WireJSON.decoder()`, whose value or error is the answer.
    static func read(_ reader: inout WireReader, routingKey: String?) -> Self?
}

/// A type with a hand-written writer giving exactly `WireJSON.encoder()`'s bytes.
public protocol WireWritable {
    func write(_ writer: inout WireWriter)
}

extension WireJSON {
    /// Decodes `bytes` in the wire JSON (for a bus message, with the routing key it came with).
    public static func decode<T: Decodable>(_ type: T.Type, from bytes: some ContiguousBytes, routingKey: String? = nil) throws -> T {
        if let readable = T.self as? any WireReadable.Type, let value = bytes.withUnsafeBytes({ readPlain(readable, $0, routingKey) }) as? T {
            return value
        }
        let data = bytes as? Data ?? bytes.withUnsafeBytes { Data($0) }
        return try decoder(routingKey: routingKey).decode(T.self, from: data)
    }

    /// `value` in the wire JSON.
    public static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        if let writable = value as? any WireWritable {
            var writer = WireWriter()
            writable.write(&writer)
            return writer.bytes
        }
        return Array(try encoder().encode(value))
    }

    /// The hand reader's value, nil where it steps aside.
    static func readPlain<R: WireReadable>(_ type: R.Type, _ bytes: UnsafeRawBufferPointer, _ routingKey: String?) -> R? {
        var reader = WireReader(bytes)
        guard let value = R.read(&reader, routingKey: routingKey), reader.atEnd else { return nil }
        return value
    }
}

/// The member names a hand reader knows, matched as bytes (at most 64).
public struct WireKeys: Sendable {
    private let names: [[UInt8]]

    public init(_ names: String...) {
        precondition(names.count <= 64)
        self.names = names.map { Array($0.utf8) }
    }

    func index(of key: UnsafeRawBufferPointer) -> Int? {
        names.firstIndex { $0.count == key.count && $0.withUnsafeBytes { memcmp($0.baseAddress!, key.baseAddress!, key.count) == 0 } }
    }
}

/// Reads plain JSON from bytes; every method gives nil (or false) where the hand reader
/// should step aside.
public struct WireReader {
    private let bytes: UnsafeRawBufferPointer
    private var at = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    /// Nothing but whitespace is left.
    var atEnd: Bool {
        mutating get {
            skipSpace()
            return at == bytes.count
        }
    }

    private mutating func skipSpace() {
        while at < bytes.count, bytes[at] == 0x20 || bytes[at] == 0x0A || bytes[at] == 0x0D || bytes[at] == 0x09 { at += 1 }
    }

    private mutating func take(_ byte: UInt8) -> Bool {
        skipSpace()
        guard at < bytes.count, bytes[at] == byte else { return false }
        at += 1
        return true
    }

    /// Reads an object whose member names are among `keys`, handing each member's place in
    /// `keys` to `member`, which reads its value; an unknown or repeated key, false from
    /// `member` or bad syntax abandons the object.
    public mutating func object(_ keys: WireKeys, _ member: (inout WireReader, Int) -> Bool) -> Bool {
        guard take(0x7B) else { return false }  // {
        if take(0x7D) { return true }  // }
        var seen: UInt64 = 0
        repeat {
            guard take(0x22) else { return false }
            let start = at
            while at < bytes.count, bytes[at] != 0x22, bytes[at] != 0x5C { at += 1 }
            guard at < bytes.count, bytes[at] == 0x22, let index = keys.index(of: UnsafeRawBufferPointer(rebasing: bytes[start..<at])),
                seen & (1 << index) == 0
            else { return false }
            at += 1
            seen |= 1 << index
            guard take(0x3A), member(&self, index) else { return false }  // :
        } while take(0x2C)  // ,
        return take(0x7D)
    }

    /// Reads an array, `element` reading each element.
    public mutating func array(_ element: (inout WireReader) -> Bool) -> Bool {
        guard take(0x5B) else { return false }  // [
        if take(0x5D) { return true }  // ]
        repeat {
            guard element(&self) else { return false }
        } while take(0x2C)
        return take(0x5D)
    }

    /// A `null`, consumed; false (nothing consumed) for anything else.
    public mutating func null() -> Bool {
        skipSpace()
        guard bytes.count - at >= 4, bytes[at] == 0x6E, bytes[at + 1] == 0x75, bytes[at + 2] == 0x6C, bytes[at + 3] == 0x6C else { return false }
        at += 4
        return true
    }

    /// A string without escapes, in valid UTF-8.
    public mutating func string() -> String? {
        guard take(0x22) else { return nil }  // "
        let start = at
        while at < bytes.count {
            let b = bytes[at]
            if b == 0x22 {
                at += 1
                return String(validating: UnsafeRawBufferPointer(rebasing: bytes[start..<at - 1]), as: UTF8.self)
            }
            guard b >= 0x20, b != 0x5C else { return nil }  // a control character, or an escape
            at += 1
        }
        return nil
    }

    /// A finite number.
    public mutating func number() -> Double? {
        guard let text = numberText(), let value = Double(text), value.isFinite else { return nil }
        return value
    }

    /// A number written as a whole number.
    public mutating func integer() -> Int? {
        guard let text = numberText(), !text.contains(".") else { return nil }
        return Int(text)
    }

    /// The text of a number as JSON's grammar writes it, without an exponent.
    private mutating func numberText() -> String? {
        skipSpace()
        let start = at
        func digits() -> Int {
            let from = at
            while at < bytes.count, (0x30...0x39).contains(bytes[at]) { at += 1 }
            return at - from
        }
        if at < bytes.count, bytes[at] == 0x2D { at += 1 }  // -
        let leadingZero = at < bytes.count && bytes[at] == 0x30
        let whole = digits()
        guard whole > 0, !(leadingZero && whole > 1) else { return nil }
        if at < bytes.count, bytes[at] == 0x2E {  // .
            at += 1
            guard digits() > 0 else { return nil }
        }
        // An exponent is left to the decoder: Foundation's refuses some valid ones (`0.00e5`,
        // `-0.0e+2`), and the hand reader must agree with it. Swift writes one only below 0.0001.
        if at < bytes.count, bytes[at] | 0x20 == 0x65 { return nil }  // e or E
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<at]), as: UTF8.self)
    }

    // Typed readers, each nil where `WireJSON.decoder()` would not give the same value.

    public mutating func uuid() -> UUID? { string().flatMap(UUID.init(uuidString:)) }
    public mutating func date() -> Date? { string().flatMap(Timestamp.parse) }
    public mutating func raw<T: RawRepresentable>(_ type: T.Type) -> T? where T.RawValue == String { string().flatMap(T.init(rawValue:)) }
    /// An optional value: `null` is nil, else `value` must read it.
    public mutating func optional<T>(_ value: (inout Self) -> T?) -> T?? {
        if null() { return .some(nil) }
        return value(&self).map { .some($0) }
    }
}

/// Writes JSON as `WireJSON.encoder()` does: no whitespace, members in the order the caller
/// writes them (sorted, as the encoder sorts them; a nil optional left out), `/` unescaped,
/// numbers as Swift prints them. Commas go between values by themselves.
public struct WireWriter {
    public private(set) var bytes: [UInt8] = []
    private var needsComma = false

    public init(capacity: Int = 512) { bytes.reserveCapacity(capacity) }

    private mutating func separate() {
        if needsComma { bytes.append(0x2C) }
        needsComma = true
    }

    public mutating func beginObject() {
        separate()
        bytes.append(0x7B)
        needsComma = false
    }

    public mutating func endObject() {
        bytes.append(0x7D)
        needsComma = true
    }

    public mutating func beginArray() {
        separate()
        bytes.append(0x5B)
        needsComma = false
    }

    public mutating func endArray() {
        bytes.append(0x5D)
        needsComma = true
    }

    /// A member's key; its value is the next thing written.
    public mutating func key(_ key: StaticString) {
        separate()
        bytes.append(0x22)
        bytes.append(contentsOf: UnsafeBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount))
        bytes += [0x22, 0x3A]
        needsComma = false
    }

    public mutating func string(_ s: String) {
        separate()
        bytes.append(0x22)
        for b in s.utf8 {
            switch b {
            case 0x22: bytes += [0x5C, 0x22]
            case 0x5C: bytes += [0x5C, 0x5C]
            case 0x08: bytes += [0x5C, 0x62]
            case 0x0C: bytes += [0x5C, 0x66]
            case 0x0A: bytes += [0x5C, 0x6E]
            case 0x0D: bytes += [0x5C, 0x72]
            case 0x09: bytes += [0x5C, 0x74]
            case 0..<0x20: bytes += [0x5C, 0x75, 0x30, 0x30, Self.hex[Int(b >> 4)], Self.hex[Int(b & 0x0F)]]
            default: bytes.append(b)
            }
        }
        bytes.append(0x22)
    }

    private static let hex = Array("0123456789abcdef".utf8)

    /// A finite number as the encoder writes it: Swift's shortest form, without a trailing `.0`.
    public mutating func number(_ d: Double) {
        separate()
        var text = d.description
        if text.hasSuffix(".0") { text.removeLast(2) }
        bytes += text.utf8
    }

    public mutating func integer(_ i: Int) {
        separate()
        bytes += String(i).utf8
    }

    public mutating func bool(_ b: Bool) {
        separate()
        bytes += (b ? "true" : "false").utf8
    }

    /// A UUID as `uuidString` gives it, as the encoder writes it.
    public mutating func uuid(_ u: UUID) { string(u.uppercased) }
    public mutating func date(_ d: Date) { string(Timestamp.format(d)) }
    public mutating func raw<T: RawRepresentable>(_ v: T) where T.RawValue == String { string(v.rawValue) }

    /// `key` and its value, left out when `value` is nil.
    public mutating func member<T>(_ key: StaticString, ifPresent value: T?, _ write: (inout Self, T) -> Void) {
        guard let value else { return }
        self.key(key)
        write(&self, value)
    }
}
