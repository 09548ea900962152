import Crypto
import Foundation

/// A bearer secret: `<kind>_<key id>_<secret>` — `sgt` a client's API token, `sga` an agent's
/// token, `sge` an enrollment secret. The key id (16 lowercase alphanumerics) finds the row; only SHA-256 of the secret is stored, and digests are compared in
/// constant time, so neither the database nor response timing reveals a token.
public struct ClientToken: Sendable, Equatable {
    public static let client = "sgt"
    public static let agent = "sga"
    public static let enrollment = "sge"

    public let kind: String
    public let keyId: String
    public let secret: String

    public static func generate(_ kind: String = client) -> ClientToken {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        var rng = SystemRandomNumberGenerator()
        let keyId = String((0..<16).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] })
        let secret = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &rng)) }.joined()
        return ClientToken(kind: kind, keyId: keyId, secret: secret)
    }

    /// Checked byte by byte: it runs on every agent request, where Unicode character
    /// properties cost more than the rest of authentication.
    public init?(_ text: String, kind: String = client) {
        let bytes = text.utf8
        let parts = bytes.split(separator: UInt8(ascii: "_"), maxSplits: 3, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].elementsEqual(kind.utf8), parts[1].count == 16,
            parts[1].allSatisfy({ (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
            (32...128).contains(parts[2].count), parts[2].allSatisfy(Self.isHexDigit)
        else { return nil }
        self.init(kind: kind, keyId: String(decoding: parts[1], as: UTF8.self), secret: String(decoding: parts[2], as: UTF8.self))
    }

    private static func isHexDigit(_ b: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(b)
            || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(b)
    }

    private init(kind: String, keyId: String, secret: String) {
        self.kind = kind
        self.keyId = keyId
        self.secret = secret
    }

    public var text: String { "\(kind)_\(keyId)_\(secret)" }
    public var secretDigest: [UInt8] { Array(SHA256.hash(data: Array(secret.utf8))) }

    public func matches(digest: [UInt8]) -> Bool {
        Self.constantTimeEquals(secretDigest, digest)
    }

    /// Compares every byte whatever the first difference.
    public static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<a.count { diff |= a[i] ^ b[i] }
        return diff == 0
    }

    /// The bearer token of an `Authorization` header value, or nil.
    public static func bearer(_ header: String?) -> String? {
        guard let header, header.utf8.count < 512 else { return nil }
        let bytes = Array(header.utf8)
        let scheme = Array("bearer ".utf8)
        // the scheme's name in any case, then spaces or tabs around the token (bytes, not
        // Foundation's character sets: this runs on every agent request)
        guard bytes.count > scheme.count, zip(bytes, scheme).allSatisfy({ (UInt8(ascii: "A")...UInt8(ascii: "Z") ~= $0 ? $0 | 0x20 : $0) == $1 }) else {
            return nil
        }
        let blank: (UInt8) -> Bool = { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }
        guard let start = bytes[scheme.count...].firstIndex(where: { !blank($0) }), let end = bytes.lastIndex(where: { !blank($0) }) else {
            return ""
        }
        return String(decoding: bytes[start...end], as: UTF8.self)
    }
}
