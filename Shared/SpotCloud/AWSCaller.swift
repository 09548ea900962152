import Foundation

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// What went wrong with a call to an AWS service (EC2, ELBv2, Route 53).
public enum AWSError: Error, Equatable, CustomStringConvertible {
    /// The service refused the request (`<Error><Code>`), e.g. `InvalidInstanceID.NotFound`,
    /// `InsufficientInstanceCapacity`, `UnauthorizedOperation`, `TargetGroupNotFound`.
    case refused(status: Int, code: String, message: String, requestId: String?)
    /// Still throttled, or still failing with 5xx, after the retries.
    case throttled(code: String, attempts: Int)
    case server(status: Int, body: String, attempts: Int)
    /// An answer that is not the XML the service sends.
    case malformed(String)

    public var code: String? {
        switch self {
        case .refused(_, let code, _, _), .throttled(let code, _): code
        default: nil
        }
    }

    public var description: String {
        switch self {
        case .refused(let status, let code, let message, let id): "AWS \(status) \(code): \(message) (request \(id ?? "-"))"
        case .throttled(let code, let attempts): "AWS throttled (\(code)) after \(attempts) attempts"
        case .server(let status, let body, let attempts): "AWS server error \(status) after \(attempts) attempts: \(body.prefix(200))"
        case .malformed(let why): "AWS answer not understood: \(why)"
        }
    }

    /// Refusals of a request signed at a time too far from the service's: the SDKs correct
    /// their clock from the answer's `Date` and send again; so does `AWSCaller`.
    static let clockSkewCodes: Set<String> = ["RequestExpired", "RequestTimeTooSkewed", "InvalidSignatureException", "SignatureDoesNotMatch"]

    static let throttlingCodes: Set<String> = [
        "Throttling", "ThrottlingException", "RequestLimitExceeded", "RequestThrottled", "TooManyRequestsException",
        "ProvisionedThroughputExceededException", "SlowDown", "PriorRequestNotComplete",
    ]
}

/// One AWS service endpoint: requests signed with SigV4, XML answers, `<Error><Code>` as
/// `AWSError.refused`, throttling and 5xx (XML or not) and lost connections retried with
/// full-jitter exponential backoff. Requests are signed at `clock`'s time; a refusal for clock
/// skew corrects it from the answer's `Date` and is sent again at once. The EC2, ELBv2, Route 53
/// and S3 clients all call through it.
public struct AWSCaller: Sendable {
    public let endpoint: URL
    public let region: String
    public let service: String
    let credentials: any CredentialsSource
    let transport: any HTTPTransport
    let signer: SigV4Signer
    /// Attempts per call, the first included.
    public var maxAttempts = 4
    /// The backoff's base and cap: attempt n waits a random time up to min(cap, base × 2ⁿ).
    public var backoffBase: Duration = .milliseconds(200)
    public var backoffCap: Duration = .seconds(5)
    /// The time requests are signed at.
    public var clock = ClockOffset.shared

    public init(service: String, region: String, endpoint: URL, credentials: any CredentialsSource, transport: any HTTPTransport) {
        self.service = service
        self.region = region
        self.endpoint = endpoint
        self.credentials = credentials
        self.transport = transport
        signer = SigV4Signer(region: region, service: service)
    }

    /// The endpoint from the standard environment: `AWS_ENDPOINT_URL_<SERVICE>` (the SDKs'
    /// service-specific name, e.g. `EC2`, `ELASTIC_LOAD_BALANCING_V2`, `ROUTE_53`), else
    /// `AWS_ENDPOINT_URL`, else nil (the service's public endpoint).
    public static func endpoint(_ serviceKey: String, _ env: [String: String]) -> URL? {
        (env["AWS_ENDPOINT_URL_\(serviceKey)"] ?? env["AWS_ENDPOINT_URL"]).flatMap { URL(string: $0) }
    }

    /// A Query-protocol call (EC2, ELBv2): a form-encoded POST of `Action`, `Version` and the
    /// action's parameters.
    public func query(_ action: String, version: String, _ parameters: [(String, String)]) async throws -> XMLNode {
        let body = Data(
            ([("Action", action), ("Version", version)] + parameters)
                .map { "\(SigV4Signer.uriEncode($0.0))=\(SigV4Signer.uriEncode($0.1))" }.joined(separator: "&").utf8)
        return try await send(action, method: "POST", path: nil, contentType: "application/x-www-form-urlencoded; charset=utf-8", body: body)
    }

    /// One signed request; `path` is appended to the endpoint (REST services such as Route 53).
    public func send(_ what: String, method: String, path: String?, contentType: String?, body: Data) async throws -> XMLNode {
        let data = try await exchange(what, method: method, path: path, contentType: contentType, body: body)
        guard let xml = try? XMLNode.parse(data) else { throw AWSError.malformed("\(what) answered without XML") }
        return xml
    }

    /// One signed request whose successful answer is returned as it is (S3 objects); `headers`
    /// are sent and signed besides those SigV4 adds.
    public func exchange(
        _ what: String, method: String, path: String?, contentType: String?, headers extra: [(String, String)] = [], body: Data
    ) async throws -> Data {
        let url = path.map { endpoint.appending(path: $0.hasPrefix("/") ? String($0.dropFirst()) : $0) } ?? endpoint
        var attempt = 0
        while true {
            attempt += 1
            var request = URLRequest(url: url)
            request.httpMethod = method
            request.httpBody = body.isEmpty && method == "GET" ? nil : body
            var headers: [(String, String)] = extra
            if let contentType { headers.append(("Content-Type", contentType)) }
            for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
            let signed = signer.sign(
                method: method, url: url, headers: headers, body: body, credentials: try await credentials.credentials(), date: clock.now())
            for (name, value) in signed.headers { request.setValue(value, forHTTPHeaderField: name) }

            let retryable: AWSError
            do {
                let sent = clock.local()
                let (status, answerHeaders, data) = try await transport.send(request)
                if (200..<300).contains(status) { return data }
                let xml = try? XMLNode.parse(data)
                if let error = xml?.all("Error").first, let code = error.value("Code") {
                    let refused = AWSError.refused(
                        status: status, code: code, message: error.value("Message") ?? "",
                        requestId: xml?.value("RequestID") ?? xml?.value("RequestId") ?? xml?.value("requestId"))
                    if AWSError.clockSkewCodes.contains(code), attempt < maxAttempts,
                        clock.observe(header: answerHeaders["date"], sent: sent, received: clock.local())
                    {
                        continue  // signed again at the corrected time
                    }
                    guard AWSError.throttlingCodes.contains(code) || status >= 500 else { throw refused }
                    retryable =
                        AWSError.throttlingCodes.contains(code)
                        ? .throttled(code: code, attempts: attempt) : .server(status: status, body: code, attempts: attempt)
                } else if status >= 500 || status == 429 {
                    retryable = .server(status: status, body: String(decoding: data.prefix(500), as: UTF8.self), attempts: attempt)
                } else {
                    throw AWSError.malformed("\(what) answered \(status): \(String(decoding: data.prefix(200), as: UTF8.self))")
                }
            } catch let e as TransportFailure {
                // connection refused, reset, timed out: the request may not have arrived
                retryable = .server(status: 0, body: e.description, attempts: attempt)
            }
            guard attempt < maxAttempts else { throw retryable }
            let cap = min(backoffCap, backoffBase * (1 << min(attempt, 16)))
            try await Task.sleep(for: .nanoseconds(Int64.random(in: 0...max(1, Int64(cap / .nanoseconds(1))))))
        }
    }
}
