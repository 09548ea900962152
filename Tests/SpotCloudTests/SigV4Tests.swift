import Foundation
import SpotCloud
import Testing

/// AWS's published Signature Version 4 test suite (credentials AKIDEXAMPLE, 2015-08-30
/// 12:36:00 UTC, us-east-1, service `service`, host example.amazonaws.com).
@Suite struct SigV4Tests {
    let signer = SigV4Signer(region: "us-east-1", service: "service")
    let credentials = AWSCredentials(accessKeyId: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    let date = Date(timeIntervalSince1970: 1_440_938_160)

    func sign(_ method: String, _ target: String, headers: [(String, String)] = [], body: String = "") -> SigV4Signer.Signed {
        signer.sign(
            method: method, url: URL(string: "https://example.amazonaws.com\(target)")!, headers: headers, body: Data(body.utf8),
            credentials: credentials, date: date)
    }

    @Test(arguments: [
        ("get-vanilla", "GET", "/", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        ("get-vanilla-query-order-key-case", "GET", "/?Param2=value2&Param1=value1", "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
        ("get-vanilla-empty-query-key", "GET", "/?Param1=value1", "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb"),
        ("get-utf8", "GET", "/%E1%88%B4", "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"),
        ("post-vanilla", "POST", "/", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
        ("post-vanilla-query", "POST", "/?Param1=value1", "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"),
    ])
    func publishedVectors(name: String, method: String, target: String, signature: String) {
        let signed = sign(method, target)
        #expect(signed.signature == signature, "\(name)")
        #expect(
            signed.headers.first { $0.0 == "Authorization" }?.1
                == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=\(signature)")
        #expect(signed.headers.contains { $0 == ("X-Amz-Date", "20150830T123600Z") })
    }

    /// post-x-www-form-urlencoded: a signed content type and body, with the suite's canonical
    /// request and string to sign.
    @Test func formBody() {
        let signed = sign("POST", "/", headers: [("Content-Type", "application/x-www-form-urlencoded")], body: "Param1=value1")
        #expect(
            signed.canonicalRequest == """
                POST
                /

                content-type:application/x-www-form-urlencoded
                host:example.amazonaws.com
                x-amz-date:20150830T123600Z

                content-type;host;x-amz-date
                9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e
                """)
        #expect(signed.stringToSign.hasSuffix("\n42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281"))
        #expect(signed.signature == "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a")
    }

    @Test func sessionTokensAreSignedAndSent() {
        var temporary = credentials
        temporary.sessionToken = "token-1"
        let signed = signer.sign(
            method: "GET", url: URL(string: "https://example.amazonaws.com/")!, headers: [], body: Data(), credentials: temporary, date: date)
        #expect(signed.headers.contains { $0 == ("X-Amz-Security-Token", "token-1") })
        #expect(signed.canonicalRequest.contains("\nhost;x-amz-date;x-amz-security-token\n"))
    }

    @Test func formEncodingKeepsOnlyUnreservedCharacters() {
        #expect(SigV4Signer.uriEncode("Linux/UNIX (Amazon VPC)") == "Linux%2FUNIX%20%28Amazon%20VPC%29")
        #expect(SigV4Signer.uriEncode("a-b_c.d~e") == "a-b_c.d~e")
        #expect(SigV4Signer.uriEncode("é=+") == "%C3%A9%3D%2B")
    }
}
