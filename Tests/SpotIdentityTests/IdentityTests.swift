import Crypto
import Foundation
import Testing
import _CryptoExtras

@testable import SpotIdentity

/// A signer and the PEM certificate of its key (self-signed in form; the verifier uses only
/// the certificate's public key), made in memory.
func testAuthority(serial: UInt8 = 7) throws -> (signer: IdentitySigner, certificate: String) {
    let key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
    let name = DERWriter.sequence(
        DERWriter.set(DERWriter.sequence(DERWriter.oid([2, 5, 4, 3]) + DERWriter.tagged(0x0c, Array("SpotGuard test identity".utf8)))))
    let algorithm = DERWriter.sequence(DERWriter.oid([1, 2, 840, 113_549, 1, 1, 11]) + DERWriter.null)
    let validity = DERWriter.sequence(DERWriter.utcTime(Date(timeIntervalSince1970: 0)) + DERWriter.utcTime(Date(timeIntervalSince1970: 2e9)))
    let tbs = DERWriter.sequence(
        DERWriter.tagged(0xA0, DERWriter.integer(2)) + DERWriter.integer(serial) + algorithm + name + validity + name + Array(key.publicKey.derRepresentation))
    let signature = try key.signature(for: tbs, padding: .insecurePKCS1v1_5).rawRepresentation
    let certificate = DERWriter.sequence(tbs + algorithm + DERWriter.tagged(0x03, [0] + Array(signature)))
    let pem = "-----BEGIN CERTIFICATE-----\n\(Data(certificate).base64EncodedString(options: .lineLength64Characters))\n-----END CERTIFICATE-----\n"
    return (try IdentitySigner(keyPEM: key.pemRepresentation, certificatePEM: pem), pem)
}

@Suite struct IdentityTests {
    let identity = InstanceIdentity(
        instanceId: "i-0123456789abcdef0", accountId: "123456789012", region: "us-east-1", availabilityZone: "us-east-1a", instanceType: "m5.large",
        imageId: "ami-12345678", pendingTime: "2026-12-01T10:00:00Z")

    @Test func aSignedDocumentIsProvenAndRead() throws {
        let (signer, certificate) = try testAuthority()
        let verifier = try IdentityVerifier(pemBundle: certificate)
        let document = identity.document
        #expect(try verifier.verify(document: document, pkcs7: try signer.pkcs7(document)) == identity)
    }

    @Test func anyTrustedCertificateOfTheBundleMaySign() throws {
        let (first, firstPEM) = try testAuthority(serial: 1)
        let (second, secondPEM) = try testAuthority(serial: 2)
        let verifier = try IdentityVerifier(pemBundle: firstPEM + secondPEM)
        #expect(verifier.certificateCount == 2)
        for signer in [first, second] {
            #expect(try verifier.verify(document: identity.document, pkcs7: try signer.pkcs7(identity.document)).instanceId == identity.instanceId)
        }
    }

    @Test func anEditedDocumentOrAnotherSignerIsRefused() throws {
        let (signer, certificate) = try testAuthority()
        let verifier = try IdentityVerifier(pemBundle: certificate)
        let signature = try signer.pkcs7(identity.document)
        var other = identity
        other.accountId = "999999999999"
        // the attached content differs from the document presented
        #expect(throws: IdentityError.self) { try verifier.verify(document: other.document, pkcs7: signature) }
        let (stranger, _) = try testAuthority()
        let foreign = try stranger.pkcs7(identity.document)
        #expect(
            throws: IdentityError("invalid_signature", "no trusted certificate signed this document"),
            performing: { try verifier.verify(document: identity.document, pkcs7: foreign) })
        #expect(throws: IdentityError.self) { try verifier.verify(document: identity.document, pkcs7: "bm90IGEgc2lnbmF0dXJl") }
        #expect(throws: IdentityError.self) { try verifier.verify(document: identity.document, pkcs7: "%%%") }
    }

    @Test func aFlippedSignatureBitIsRefused() throws {
        let (signer, certificate) = try testAuthority()
        let verifier = try IdentityVerifier(pemBundle: certificate)
        var der = Array(Data(base64Encoded: try signer.pkcs7(identity.document), options: .ignoreUnknownCharacters)!)
        der[der.count - 5] ^= 0x01  // inside the RSA signature, the last field
        #expect(throws: IdentityError.self) { try verifier.verify(document: identity.document, pkcs7: Data(der).base64EncodedString()) }
    }

    /// openssl reads what the signer writes as a valid PKCS7 SignedData (when it is installed).
    @Test func opensslAgreesItIsASignedData() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl") else { return }
        let (signer, certificate) = try testAuthority()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("identity-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let pkcs7 = "-----BEGIN PKCS7-----\n" + (try signer.pkcs7(identity.document)) + "\n-----END PKCS7-----\n"
        try pkcs7.write(to: dir.appendingPathComponent("sig.pem"), atomically: true, encoding: .utf8)
        try certificate.write(to: dir.appendingPathComponent("cert.pem"), atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = [
            "smime", "-verify", "-in", dir.appendingPathComponent("sig.pem").path, "-inform", "PEM", "-certfile", dir.appendingPathComponent("cert.pem").path,
            "-noverify", "-out", dir.appendingPathComponent("out").path,
        ]
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(try Data(contentsOf: dir.appendingPathComponent("out")) == Data(identity.document))
    }
}
