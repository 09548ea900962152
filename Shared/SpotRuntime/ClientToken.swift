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

    public init?(_ text: String, kind: String = client) {
        let parts = text.split(separator: "_", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == kind, parts[1].count == 16, parts[1].allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber) }),
            (32...128).contains(parts[2].count), parts[2].allSatisfy({ $0.isHexDigit })
        else { return nil }
        self.init(kind: kind, keyId: String(parts[1]), secret: String(parts[2]))
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
        guard let header, header.count < 512 else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        return String(parts[1]).trimmingCharacters(in: .whitespaces)
    }
}
