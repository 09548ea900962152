import Crypto
import Foundation

/// AWS credentials; `expiration` is set for temporary ones (instance profile, STS).
public struct AWSCredentials: Sendable, Equatable {
    public var accessKeyId: String
    public var secretAccessKey: String
    public var sessionToken: String?
    public var expiration: Date?

    public init(accessKeyId: String, secretAccessKey: String, sessionToken: String? = nil, expiration: Date? = nil) {
        self.accessKeyId = accessKeyId
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.expiration = expiration
    }
}

/// Signature Version 4 (AWS's published algorithm, checked against its test suite): the
/// canonical request (method, URI, sorted query, lower-cased sorted headers, signed header
/// list, payload SHA-256), the string to sign with the credential scope, and the signing key
/// derived by four HMAC-SHA256 steps from the secret, date, region and service.
public struct SigV4Signer: Sendable {
    public var region: String
    public var service: String

    public init(region: String, service: String) {
        self.region = region
        self.service = service
    }

    public struct Signed: Sendable {
        /// Headers to add to the request: `Authorization`, `X-Amz-Date` and, for temporary
        /// credentials, `X-Amz-Security-Token`.
        public var headers: [(String, String)]
        public var canonicalRequest: String
        public var stringToSign: String
        public var signature: String
    }

    /// Signs a request. `headers` are the ones sent besides those added here; `Host` is taken
    /// from the URL when not among them.
    public func sign(method: String, url: URL, headers: [(String, String)], body: Data, credentials: AWSCredentials, date: Date) -> Signed {
        let amzDate = Self.amzDate(date)
        let day = String(amzDate.prefix(8))
        var all = headers.map { ($0.0.lowercased(), Self.trimmed($0.1)) }
        if !all.contains(where: { $0.0 == "host" }), let host = url.host {
            all.append(("host", url.port.map { "\(host):\($0)" } ?? host))
        }
        all.append(("x-amz-date", amzDate))
        if let token = credentials.sessionToken { all.append(("x-amz-security-token", token)) }
        // one line per header name, repeated values joined with commas in their order
        var merged: [String: [String]] = [:]
        for (name, value) in all { merged[name, default: []].append(value) }
        let names = merged.keys.sorted()
        let canonicalHeaders = names.map { "\($0):\(merged[$0]!.joined(separator: ","))\n" }.joined()
        let signedHeaders = names.joined(separator: ";")

        var path = url.path(percentEncoded: true)
        if path.isEmpty { path = "/" }
        let canonicalRequest = [
            method.uppercased(), path, Self.canonicalQuery(url.query(percentEncoded: true)), canonicalHeaders, signedHeaders,
            Self.hex(SHA256.hash(data: body)),
        ].joined(separator: "\n")
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope, Self.hex(SHA256.hash(data: Data(canonicalRequest.utf8)))].joined(separator: "\n")

        var key = SymmetricKey(data: Data("AWS4\(credentials.secretAccessKey)".utf8))
        for part in [day, region, service, "aws4_request"] {
            key = SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(part.utf8), using: key)))
        }
        let signature = Self.hex(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: key))
        var added = [
            ("Authorization", "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyId)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"),
            ("X-Amz-Date", amzDate),
        ]
        if let token = credentials.sessionToken { added.append(("X-Amz-Security-Token", token)) }
        return Signed(headers: added, canonicalRequest: canonicalRequest, stringToSign: stringToSign, signature: signature)
    }

    /// `20150830T123600Z`
    static func amzDate(_ date: Date) -> String {
        let c = Calendar(identifier: .gregorian).dateComponents(in: TimeZone(identifier: "UTC")!, from: date)
        func two(_ n: Int?) -> String { n.map { $0 < 10 ? "0\($0)" : "\($0)" } ?? "00" }
        return "\(c.year ?? 1970)\(two(c.month))\(two(c.day))T\(two(c.hour))\(two(c.minute))\(two(c.second))Z"
    }

    /// Query parameters decoded, re-encoded the RFC 3986 way and sorted by name, then value.
    static func canonicalQuery(_ query: String?) -> String {
        guard let query, !query.isEmpty else { return "" }
        return query.split(separator: "&", omittingEmptySubsequences: true).map { pair -> (String, String) in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decoded(_ s: Substring) -> String { String(s).replacingOccurrences(of: "+", with: "%20").removingPercentEncoding ?? String(s) }
            return (uriEncode(decoded(parts[0])), uriEncode(parts.count > 1 ? decoded(parts[1]) : ""))
        }
        .sorted { ($0.0, $0.1) < ($1.0, $1.1) }
        .map { "\($0.0)=\($0.1)" }.joined(separator: "&")
    }

    /// Percent-encodes everything but A–Z, a–z, 0–9, `-`, `_`, `.` and `~` (what AWS expects in
    /// query strings and form bodies).
    public static func uriEncode(_ s: String) -> String {
        var out = ""
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF")
                out.append("%")
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0xF)])
            }
        }
        return out
    }

    static func trimmed(_ value: String) -> String {
        value.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ")
    }

    static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        digest.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}
