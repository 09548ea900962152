import Crypto
import Foundation
import SwiftASN1
import _CryptoExtras

/// An EC2 instance identity document (IMDS `/latest/dynamic/instance-identity/document`): what
/// AWS itself says the instance is. Only the fields SpotGuard relies on are read.
public struct InstanceIdentity: Codable, Sendable, Equatable {
    public var instanceId: String
    public var accountId: String
    public var region: String
    public var availabilityZone: String
    public var instanceType: String
    public var imageId: String?
    public var pendingTime: String?
    public var architecture: String?
    public var privateIp: String?

    public init(
        instanceId: String, accountId: String, region: String, availabilityZone: String, instanceType: String, imageId: String? = nil,
        pendingTime: String? = nil, architecture: String? = "x86_64", privateIp: String? = nil
    ) {
        self.instanceId = instanceId
        self.accountId = accountId
        self.region = region
        self.availabilityZone = availabilityZone
        self.instanceType = instanceType
        self.imageId = imageId
        self.pendingTime = pendingTime
        self.architecture = architecture
        self.privateIp = privateIp
    }

    /// The document as IMDS serves it (pretty-printed JSON, the bytes that are signed).
    public var document: [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return Array((try? encoder.encode(self)) ?? Data())
    }
}

/// Why an identity was refused; `code` is the API's machine-readable reason.
public struct IdentityError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: String
    public var description: String
    init(_ code: String, _ description: String) {
        self.code = code
        self.description = description
    }
    static func malformed(_ what: String) -> IdentityError { IdentityError("malformed_signature", "the PKCS7 signature is malformed: \(what)") }
}

/// Checks the PKCS7 (RSA-2048, SHA-256) signature of an instance identity document — IMDS
/// `/latest/dynamic/instance-identity/rsa2048`, base64 DER SignedData — against the trusted
/// certificates: AWS's published regional RSA-2048 certificates in production, a test
/// certificate the metadata mocks sign with in tests. The signer is whichever trusted key
/// verifies the signature over the signed attributes, whose message digest must be SHA-256 of
/// the document; certificates inside the signature are ignored (AWS sends none).
public struct IdentityVerifier: Sendable {
    let keys: [_RSA.Signing.PublicKey]

    /// - Parameter pemBundle: one or more `CERTIFICATE` PEM blocks.
    public init(pemBundle: String) throws {
        let documents = try PEMDocument.parseMultiple(pemString: pemBundle).filter { $0.discriminator == "CERTIFICATE" }
        keys = try documents.map { try _RSA.Signing.PublicKey(derRepresentation: try Self.subjectPublicKeyInfo(ofCertificate: $0.derBytes)) }
        guard !keys.isEmpty else { throw IdentityError("no_certificates", "the bundle holds no certificate") }
    }

    public var certificateCount: Int { keys.count }

    /// The identity the document states, once the signature over it is proven.
    public func verify(document: [UInt8], pkcs7 base64: String) throws -> InstanceIdentity {
        let text = base64.filter { !$0.isWhitespace }.replacingOccurrences(of: "-----BEGINPKCS7-----", with: "")
            .replacingOccurrences(of: "-----ENDPKCS7-----", with: "")
        guard let der = Data(base64Encoded: text) else { throw IdentityError.malformed("not base64") }
        let signed: SignedData
        do {
            signed = try SignedData(Array(der))
        } catch let e as IdentityError {
            throw e
        } catch {
            throw IdentityError.malformed("\(error)")
        }
        if let attached = signed.content, attached != document {
            throw IdentityError("document_mismatch", "the document is not the one the signature carries")
        }
        guard signed.digestAlgorithm == Self.sha256 else {
            throw IdentityError("unsupported_signature", "only SHA-256 (RSA-2048) signatures are accepted; use the rsa2048 document signature")
        }
        guard signed.messageDigest == Array(SHA256.hash(data: document)) else {
            throw IdentityError("invalid_signature", "the signature does not cover this document")
        }
        let signature = _RSA.Signing.RSASignature(rawRepresentation: signed.signature)
        guard keys.contains(where: { $0.isValidSignature(signature, for: signed.signedAttributes, padding: .insecurePKCS1v1_5) }) else {
            throw IdentityError("invalid_signature", "no trusted certificate signed this document")
        }
        do {
            return try JSONDecoder().decode(InstanceIdentity.self, from: Data(document))
        } catch {
            throw IdentityError("malformed_document", "the identity document is not an instance identity document")
        }
    }

    static let sha256: ASN1ObjectIdentifier = [2, 16, 840, 1, 101, 3, 4, 2, 1]
    static let messageDigestAttribute: ASN1ObjectIdentifier = [1, 2, 840, 113_549, 1, 9, 4]

    /// The parts of a CMS SignedData (RFC 5652) with one signer that the check needs.
    struct SignedData {
        var content: [UInt8]?
        var digestAlgorithm: ASN1ObjectIdentifier
        var messageDigest: [UInt8]?
        /// The DER of the signed attributes as signed: tagged as a SET OF, not [0].
        var signedAttributes: [UInt8]
        var signature: [UInt8]

        init(_ der: [UInt8]) throws {
            let info = try children(of: try BER.parse(der), "ContentInfo")
            guard info.count == 2, let explicit = try children(of: info[1], "content").first else { throw IdentityError.malformed("ContentInfo") }
            let fields = try children(of: explicit, "SignedData")
            guard fields.count >= 4 else { throw IdentityError.malformed("SignedData") }
            let encapsulated = try children(of: fields[2], "EncapsulatedContentInfo")
            if encapsulated.count == 2, let octets = try children(of: encapsulated[1], "eContent").first {
                content = try octetString(octets)
            }
            let signers = try children(of: fields[fields.count - 1], "SignerInfos")
            guard signers.count == 1 else { throw IdentityError.malformed("exactly one signer is expected") }
            let signer = try children(of: signers[0], "SignerInfo")
            guard signer.count >= 6 else { throw IdentityError.malformed("SignerInfo") }
            digestAlgorithm = try ASN1ObjectIdentifier(derEncoded: try children(of: signer[2], "digestAlgorithm")[0])
            let attributes = signer[3]
            guard attributes.identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific) else {
                throw IdentityError.malformed("signed attributes are required")
            }
            var signedBytes = Array(attributes.encodedBytes)
            signedBytes[0] = 0x31
            signedAttributes = signedBytes
            for attribute in try children(of: attributes, "signedAttrs") {
                let parts = try children(of: attribute, "Attribute")
                if parts.count == 2, try ASN1ObjectIdentifier(derEncoded: parts[0]) == IdentityVerifier.messageDigestAttribute,
                    let value = try children(of: parts[1], "messageDigest").first
                {
                    messageDigest = try octetString(value)
                }
            }
            signature = try octetString(signer[5])
        }
    }

    /// The SubjectPublicKeyInfo of an X.509 certificate, as DER.
    static func subjectPublicKeyInfo(ofCertificate der: [UInt8]) throws -> [UInt8] {
        let tbs = try children(of: try children(of: try DER.parse(der), "Certificate")[0], "TBSCertificate")
        // [0] version is optional; then serial, signature, issuer, validity, subject, key
        let offset = tbs.first?.identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific) ? 1 : 0
        guard tbs.count > offset + 5 else { throw IdentityError.malformed("certificate") }
        return Array(tbs[offset + 5].encodedBytes)
    }
}

func children(of node: ASN1Node, _ what: String) throws -> [ASN1Node] {
    guard case .constructed(let nodes) = node.content else { throw IdentityError.malformed(what) }
    return Array(nodes)
}

/// An OCTET STRING's bytes (a BER one may be constructed of segments).
func octetString(_ node: ASN1Node) throws -> [UInt8] {
    switch node.content {
    case .primitive(let bytes): return Array(bytes)
    case .constructed(let parts): return try parts.flatMap { try octetString($0) }
    }
}
