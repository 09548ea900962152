import Foundation

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// What went wrong with an EC2 call.
public enum EC2Error: Error, Equatable, CustomStringConvertible {
    /// EC2 refused the request (`<Errors><Error><Code>`), e.g. `InvalidInstanceID.NotFound`,
    /// `InsufficientInstanceCapacity`, `UnauthorizedOperation`.
    case refused(status: Int, code: String, message: String, requestId: String?)
    /// Still throttled, or still failing with 5xx, after the retries.
    case throttled(code: String, attempts: Int)
    case server(status: Int, body: String, attempts: Int)
    /// An answer that is not the XML EC2 sends.
    case malformed(String)

    public var code: String? {
        switch self {
        case .refused(_, let code, _, _), .throttled(let code, _): code
        default: nil
        }
    }

    public var description: String {
        switch self {
        case .refused(let status, let code, let message, let id): "EC2 \(status) \(code): \(message) (request \(id ?? "-"))"
        case .throttled(let code, let attempts): "EC2 throttled (\(code)) after \(attempts) attempts"
        case .server(let status, let body, let attempts): "EC2 server error \(status) after \(attempts) attempts: \(body.prefix(200))"
        case .malformed(let why): "EC2 answer not understood: \(why)"
        }
    }

    static let throttlingCodes: Set<String> = [
        "Throttling", "ThrottlingException", "RequestLimitExceeded", "RequestThrottled", "TooManyRequestsException",
        "ProvisionedThroughputExceededException", "SlowDown",
    ]
}

/// The EC2 Query API (Version 2016-11-15): form-encoded POSTs signed with SigV4, XML answers
/// read by local name, `nextToken` pagination, `<Errors>` as `EC2Error.refused`, throttling
/// and 5xx (XML or not) retried with full-jitter exponential backoff.
public struct EC2Client: Sendable {
    public let endpoint: URL
    public let region: String
    let credentials: any CredentialsSource
    let transport: any HTTPTransport
    let signer: SigV4Signer
    /// Attempts per call, the first included.
    public var maxAttempts = 4
    /// The backoff's base and cap: attempt n waits a random time up to min(cap, base × 2ⁿ).
    public var backoffBase: Duration = .milliseconds(200)
    public var backoffCap: Duration = .seconds(5)

    public init(region: String, endpoint: URL? = nil, credentials: any CredentialsSource, transport: any HTTPTransport = URLSessionTransport(timeout: 20)) {
        self.region = region
        self.endpoint = endpoint ?? URL(string: "https://ec2.\(region).amazonaws.com/")!
        self.credentials = credentials
        self.transport = transport
        signer = SigV4Signer(region: region, service: "ec2")
    }

    /// From the standard environment: `AWS_REGION` (or `AWS_DEFAULT_REGION`), the endpoint
    /// override `AWS_ENDPOINT_URL_EC2` (or `AWS_ENDPOINT_URL`), credentials as `DefaultCredentials`.
    public static func fromEnvironment(
        _ env: [String: String] = ProcessInfo.processInfo.environment, region fallback: String? = nil, imds: IMDSClient? = nil
    )
        throws -> EC2Client
    {
        guard let region = env["AWS_REGION"] ?? env["AWS_DEFAULT_REGION"] ?? fallback else {
            throw EC2Error.malformed("no region: set AWS_REGION")
        }
        let endpoint = (env["AWS_ENDPOINT_URL_EC2"] ?? env["AWS_ENDPOINT_URL"]).flatMap { URL(string: $0) }
        return EC2Client(region: region, endpoint: endpoint, credentials: DefaultCredentials(env: env, imds: imds ?? IMDSClient(env: env)))
    }

    /// One call; `parameters` are the action's own (`InstanceId.1`, `Filter.1.Name`, …).
    public func call(_ action: String, _ parameters: [(String, String)] = []) async throws -> XMLNode {
        let body = Data(
            ([("Action", action), ("Version", "2016-11-15")] + parameters)
                .map { "\(SigV4Signer.uriEncode($0.0))=\(SigV4Signer.uriEncode($0.1))" }.joined(separator: "&").utf8)
        var attempt = 0
        while true {
            attempt += 1
            var request = URLRequest(url: endpoint)
            request.httpMethod = "POST"
            request.httpBody = body
            let contentType = "application/x-www-form-urlencoded; charset=utf-8"
            request.setValue(contentType, forHTTPHeaderField: "Content-Type")
            let signed = signer.sign(
                method: "POST", url: endpoint, headers: [("Content-Type", contentType)], body: body, credentials: try await credentials.credentials(),
                date: Date())
            for (name, value) in signed.headers { request.setValue(value, forHTTPHeaderField: name) }

            let retryable: EC2Error
            do {
                let (status, _, data) = try await transport.send(request)
                let xml = try? XMLNode.parse(data)
                if (200..<300).contains(status) {
                    guard let xml else { throw EC2Error.malformed("\(action) answered \(status) without XML") }
                    return xml
                }
                if let error = xml?.all("Error").first, let code = error.value("Code") {
                    let refused = EC2Error.refused(
                        status: status, code: code, message: error.value("Message") ?? "",
                        requestId: xml?.value("RequestID") ?? xml?.value("RequestId") ?? xml?.value("requestId"))
                    guard EC2Error.throttlingCodes.contains(code) || status >= 500 else { throw refused }
                    retryable =
                        EC2Error.throttlingCodes.contains(code)
                        ? .throttled(code: code, attempts: attempt) : .server(status: status, body: code, attempts: attempt)
                } else if status >= 500 || status == 429 {
                    retryable = .server(status: status, body: String(decoding: data.prefix(500), as: UTF8.self), attempts: attempt)
                } else {
                    throw EC2Error.malformed("\(action) answered \(status): \(String(decoding: data.prefix(200), as: UTF8.self))")
                }
            } catch let e as URLError {
                // connection refused, reset, timed out: the request may not have arrived
                retryable = .server(status: 0, body: "\(e.code)", attempts: attempt)
            }
            guard attempt < maxAttempts else { throw retryable }
            let cap = min(backoffCap, backoffBase * (1 << min(attempt, 16)))
            try await Task.sleep(for: .nanoseconds(Int64.random(in: 0...max(1, Int64(cap / .nanoseconds(1))))))
        }
    }

    /// Calls a paginated action until `nextToken` is absent or empty; `items` picks a page's items.
    public func paginate(_ action: String, _ parameters: [(String, String)], items: (XMLNode) -> [XMLNode], maxPages: Int = 100) async throws -> [XMLNode] {
        var all: [XMLNode] = []
        var token: String?
        for _ in 0..<maxPages {
            let page = try await call(action, parameters + (token.map { [("NextToken", $0)] } ?? []))
            all += items(page)
            token = page.value("nextToken")
            if token?.isEmpty ?? true { return all }
        }
        return all
    }
}
