import Foundation

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The EC2 Query API (Version 2016-11-15) through `AWSCaller`, with `nextToken` pagination.
public struct EC2Client: Sendable {
    public var aws: AWSCaller
    public var endpoint: URL { aws.endpoint }
    public var region: String { aws.region }
    /// Attempts per call, the first included.
    public var maxAttempts: Int {
        get { aws.maxAttempts }
        set { aws.maxAttempts = newValue }
    }
    public var backoffBase: Duration {
        get { aws.backoffBase }
        set { aws.backoffBase = newValue }
    }
    public var backoffCap: Duration {
        get { aws.backoffCap }
        set { aws.backoffCap = newValue }
    }
    /// The time requests are signed at (`ClockOffset.shared` unless set).
    public var clock: ClockOffset {
        get { aws.clock }
        set { aws.clock = newValue }
    }

    public init(region: String, endpoint: URL? = nil, credentials: any CredentialsSource, transport: any HTTPTransport = HTTPClientTransport(timeout: 20)) {
        aws = AWSCaller(
            service: "ec2", region: region, endpoint: endpoint ?? URL(string: "https://ec2.\(region).amazonaws.com/")!, credentials: credentials,
            transport: transport)
    }

    /// From the standard environment: `AWS_REGION` (or `AWS_DEFAULT_REGION`), the endpoint
    /// override `AWS_ENDPOINT_URL_EC2` (or `AWS_ENDPOINT_URL`), credentials as `DefaultCredentials`.
    public static func fromEnvironment(
        _ env: [String: String] = ProcessInfo.processInfo.environment, region fallback: String? = nil, imds: IMDSClient? = nil
    )
        throws -> EC2Client
    {
        guard let region = env["AWS_REGION"] ?? env["AWS_DEFAULT_REGION"] ?? fallback else {
            throw AWSError.malformed("no region: set AWS_REGION")
        }
        return EC2Client(
            region: region, endpoint: AWSCaller.endpoint("EC2", env), credentials: DefaultCredentials(env: env, imds: imds ?? IMDSClient(env: env)))
    }

    /// One call; `parameters` are the action's own (`InstanceId.1`, `Filter.1.Name`, …).
    public func call(_ action: String, _ parameters: [(String, String)] = []) async throws -> XMLNode {
        try await aws.query(action, version: "2016-11-15", parameters)
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
