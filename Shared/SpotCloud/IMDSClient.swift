import Foundation

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A spot interruption notice (`spot/instance-action`).
public struct InstanceAction: Sendable, Equatable, Decodable {
    /// `terminate`, `stop` or `hibernate`.
    public var action: String
    public var time: Date
}

public enum IMDSError: Error, Equatable, CustomStringConvertible {
    case status(Int, path: String)
    case unreachable(String)
    case malformed(String)

    public var description: String {
        switch self {
        case .status(let s, let path): "IMDS answered \(s) for \(path)"
        case .unreachable(let why): "IMDS unreachable: \(why)"
        case .malformed(let why): "IMDS answer not understood: \(why)"
        }
    }
}

/// The instance metadata service, version 2 only: a session token from `PUT
/// /latest/api/token` (TTL 6 h by default), renewed when 80 % of its life is gone and once at
/// once when a read answers 401. `AWS_EC2_METADATA_SERVICE_ENDPOINT` overrides the address.
public actor IMDSClient {
    public let endpoint: URL
    let transport: any HTTPTransport
    let tokenTTL: Int
    var token: (value: String, renewAt: Date)?

    /// Never through a proxy: the metadata service answers only the instance itself.
    public init(
        endpoint: URL = URL(string: "http://169.254.169.254")!, tokenTTL: Int = 21_600,
        transport: any HTTPTransport = HTTPClientTransport(timeout: 2, proxies: nil)
    ) {
        self.endpoint = endpoint
        self.tokenTTL = tokenTTL
        self.transport = transport
    }

    public init(env: [String: String]) {
        let url = env["AWS_EC2_METADATA_SERVICE_ENDPOINT"].flatMap { URL(string: $0) } ?? URL(string: "http://169.254.169.254")!
        self.init(endpoint: url)
    }

    func url(_ path: String) -> URL { URL(string: endpoint.absoluteString.trimmingCharacters(in: CharacterSet(charactersIn: "/")) + path)! }

    func sessionToken(renew: Bool) async throws -> String {
        if !renew, let token, token.renewAt > Date() { return token.value }
        var request = URLRequest(url: url("/latest/api/token"))
        request.httpMethod = "PUT"
        request.setValue(String(tokenTTL), forHTTPHeaderField: "X-aws-ec2-metadata-token-ttl-seconds")
        let (status, _, body) = try await exchange(request)
        guard status == 200, let value = String(data: body, encoding: .utf8), !value.isEmpty else { throw IMDSError.status(status, path: "/latest/api/token") }
        token = (value, Date().addingTimeInterval(Double(tokenTTL) * 0.8))
        return value
    }

    func exchange(_ request: URLRequest) async throws -> (Int, [String: String], Data) {
        do {
            return try await transport.send(request)
        } catch {
            throw IMDSError.unreachable("\(error)")
        }
    }

    /// The body of a metadata path, or nil on 404 (a notice not given, a value not set).
    public func get(_ path: String) async throws -> String? {
        for attempt in 0..<2 {
            var request = URLRequest(url: url(path))
            request.setValue(try await sessionToken(renew: attempt > 0), forHTTPHeaderField: "X-aws-ec2-metadata-token")
            let (status, _, body) = try await exchange(request)
            switch status {
            case 200: return String(decoding: body, as: UTF8.self)
            case 404: return nil
            case 401 where attempt == 0: continue  // the token expired or the service restarted
            default: throw IMDSError.status(status, path: path)
            }
        }
        throw IMDSError.status(401, path: path)
    }

    func required(_ path: String) async throws -> String {
        guard let value = try await get(path)?.trimmingCharacters(in: .whitespacesAndNewlines), !value.isEmpty else {
            throw IMDSError.status(404, path: path)
        }
        return value
    }

    public func instanceId() async throws -> String { try await required("/latest/meta-data/instance-id") }
    public func instanceType() async throws -> String { try await required("/latest/meta-data/instance-type") }
    public func availabilityZone() async throws -> String { try await required("/latest/meta-data/placement/availability-zone") }
    public func amiId() async throws -> String? { try await get("/latest/meta-data/ami-id")?.trimmingCharacters(in: .whitespacesAndNewlines) }
    /// The region, from `placement/region`, else the zone without its letter.
    public func region() async throws -> String {
        if let region = try await get("/latest/meta-data/placement/region")?.trimmingCharacters(in: .whitespacesAndNewlines), !region.isEmpty { return region }
        return String(try await availabilityZone().dropLast())
    }
    /// `spot` or `on-demand`.
    public func lifeCycle() async throws -> String { try await required("/latest/meta-data/instance-life-cycle") }
    /// The instance identity document, exactly as served (its signature covers these bytes).
    public func identityDocument() async throws -> String {
        let path = "/latest/dynamic/instance-identity/document"
        guard let document = try await get(path), !document.isEmpty else { throw IMDSError.status(404, path: path) }
        return document
    }
    /// The document's PKCS7 signature (RSA-2048, SHA-256), base64.
    public func identitySignature() async throws -> String { try await required("/latest/dynamic/instance-identity/rsa2048") }

    static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            guard let date = EC2Client.date(text) else { throw IMDSError.malformed("time \(text)") }
            return date
        }
        return d
    }

    /// The interruption notice, nil until one is given.
    public func spotInstanceAction() async throws -> InstanceAction? {
        guard let body = try await get("/latest/meta-data/spot/instance-action") else { return nil }
        do {
            return try Self.decoder().decode(InstanceAction.self, from: Data(body.utf8))
        } catch {
            throw IMDSError.malformed("spot/instance-action: \(body.prefix(200))")
        }
    }

    /// The rebalance recommendation's notice time, nil until one is given.
    public func rebalanceRecommendation() async throws -> Date? {
        struct Notice: Decodable { var noticeTime: Date }
        guard let body = try await get("/latest/meta-data/events/recommendations/rebalance") else { return nil }
        do {
            return try Self.decoder().decode(Notice.self, from: Data(body.utf8)).noticeTime
        } catch {
            throw IMDSError.malformed("events/recommendations/rebalance: \(body.prefix(200))")
        }
    }

    /// The instance profile's temporary credentials.
    public func instanceProfileCredentials() async throws -> AWSCredentials {
        let base = "/latest/meta-data/iam/security-credentials/"
        guard let role = try await get(base)?.split(whereSeparator: \.isNewline).first.map(String.init) else {
            throw CredentialsError(description: "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or attach an instance profile")
        }
        struct Profile: Decodable {
            var AccessKeyId: String
            var SecretAccessKey: String
            var Token: String?
            var Expiration: Date?
        }
        let body = try await required(base + role)
        guard let p = try? Self.decoder().decode(Profile.self, from: Data(body.utf8)) else { throw IMDSError.malformed("credentials of \(role)") }
        return AWSCredentials(accessKeyId: p.AccessKeyId, secretAccessKey: p.SecretAccessKey, sessionToken: p.Token, expiration: p.Expiration)
    }
}
