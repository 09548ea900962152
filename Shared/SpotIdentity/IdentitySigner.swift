import Crypto
import Foundation
import SwiftASN1
import _CryptoExtras

/// Signs identity documents as AWS does for `instance-identity/rsa2048`: a DER CMS SignedData
/// with the document attached, SHA-256, signed attributes (content type, signing time, message
/// digest) and an RSA PKCS #1 v1.5 signature, without certificates. Used by the metadata mocks
/// of the tests and the simulator, with a test key whose certificate ingest is told to trust.
public struct IdentitySigner: Sendable {
    let key: _RSA.Signing.PrivateKey
    let issuer: [UInt8]
    let serial: [UInt8]

    /// - Parameters: a PEM RSA private key and the PEM certificate of its public key.
    public init(keyPEM: String, certificatePEM: String) throws {
        key = try _RSA.Signing.PrivateKey(pemRepresentation: keyPEM)
        let certificate = try PEMDocument(pemString: certificatePEM).derBytes
        let tbs = try children(of: try children(of: try DER.parse(certificate), "Certificate")[0], "TBSCertificate")
        let offset = tbs.first?.identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific) ? 1 : 0
        serial = Array(tbs[offset].encodedBytes)
        issuer = Array(tbs[offset + 2].encodedBytes)
    }

    /// The base64 signature of `document`, as IMDS serves it.
    public func pkcs7(_ document: [UInt8], signedAt: Date = Date()) throws -> String {
        let sha256 = DERWriter.sequence(DERWriter.oid([2, 16, 840, 1, 101, 3, 4, 2, 1]) + DERWriter.null)
        let data = DERWriter.oid([1, 2, 840, 113_549, 1, 7, 1])
        let attributes = [
            DERWriter.sequence(DERWriter.oid([1, 2, 840, 113_549, 1, 9, 3]) + DERWriter.set(data)),
            DERWriter.sequence(DERWriter.oid([1, 2, 840, 113_549, 1, 9, 5]) + DERWriter.set(DERWriter.utcTime(signedAt))),
            DERWriter.sequence(DERWriter.oid([1, 2, 840, 113_549, 1, 9, 4]) + DERWriter.set(DERWriter.octets(Array(SHA256.hash(data: document))))),
        ].sorted { $0.lexicographicallyPrecedes($1) }.flatMap { $0 }
        let signature = try key.signature(for: DERWriter.set(attributes), padding: .insecurePKCS1v1_5).rawRepresentation
        let signerInfo = DERWriter.sequence(
            DERWriter.integer(1) + DERWriter.sequence(issuer + serial) + sha256 + DERWriter.tagged(0xA0, attributes)
                + DERWriter.sequence(DERWriter.oid([1, 2, 840, 113_549, 1, 1, 1]) + DERWriter.null) + DERWriter.octets(Array(signature)))
        let signedData = DERWriter.sequence(
            DERWriter.integer(1) + DERWriter.set(sha256) + DERWriter.sequence(data + DERWriter.tagged(0xA0, DERWriter.octets(document)))
                + DERWriter.set(signerInfo))
        let contentInfo = DERWriter.sequence(DERWriter.oid([1, 2, 840, 113_549, 1, 7, 2]) + DERWriter.tagged(0xA0, signedData))
        return Data(contentInfo).base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed])
    }
}

/// Just enough DER to write a SignedData.
enum DERWriter {
    static func tagged(_ tag: UInt8, _ content: [UInt8]) -> [UInt8] {
        var length: [UInt8]
        if content.count < 0x80 {
            length = [UInt8(content.count)]
        } else {
            var n = content.count
            length = []
            while n > 0 {
                length.insert(UInt8(n & 0xff), at: 0)
                n >>= 8
            }
            length.insert(0x80 | UInt8(length.count), at: 0)
        }
        return [tag] + length + content
    }
    static func sequence(_ content: [UInt8]) -> [UInt8] { tagged(0x30, content) }
    static func set(_ content: [UInt8]) -> [UInt8] { tagged(0x31, content) }
    static func octets(_ content: [UInt8]) -> [UInt8] { tagged(0x04, content) }
    static let null: [UInt8] = [0x05, 0x00]
    static func integer(_ value: UInt8) -> [UInt8] { tagged(0x02, [value]) }
    static func oid(_ arcs: [UInt]) -> [UInt8] {
        var body: [UInt8] = [UInt8(arcs[0] * 40 + arcs[1])]
        for arc in arcs.dropFirst(2) {
            var chunk: [UInt8] = [UInt8(arc & 0x7f)]
            var rest = arc >> 7
            while rest > 0 {
                chunk.insert(UInt8(rest & 0x7f) | 0x80, at: 0)
                rest >>= 7
            }
            body += chunk
        }
        return tagged(0x06, body)
    }
    static func utcTime(_ date: Date) -> [UInt8] {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyMMddHHmmss'Z'"
        return tagged(0x17, Array(formatter.string(from: date).utf8))
    }
}
