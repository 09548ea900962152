import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// One HTTP exchange; the EC2, IMDS and agent API clients speak through it (AsyncHTTPClient in
/// production, a scripted one in unit tests).
public protocol HTTPTransport: Sendable {
    func send(_ request: URLRequest) async throws -> (status: Int, headers: [String: String], body: Data)
}

/// The request did not get an answer: refused, reset, timed out. It may or may not have arrived.
public struct TransportFailure: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// AsyncHTTPClient on its shared event loops. Not Foundation's URLSession: on Linux its libcurl
/// integration keeps a write source armed on a socket that waits for an answer, so each open
/// long-poll spun a core at 30–70 % (an agent's command poll is open almost all the time; the
/// bench's agents starved the whole machine into multi-second stalls, docs/benchmarks.md).
public struct HTTPClientTransport: HTTPTransport {
    let timeout: TimeAmount
    /// nil: always direct (the instance metadata service).
    let proxies: ProxySettings?
    /// A PEM file of certificates to trust besides the system's.
    let caBundle: String?
    /// The largest answer read (EC2's largest describe pages are a few MB).
    static let maxBody = 64 << 20

    /// How long an agent gives each request to SpotGuard: past the longest command long-poll.
    public static let agentTimeout: TimeInterval = 35

    /// The process's proxy settings (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`; `ProxySettings`).
    public static let environmentProxies = ProxySettings(environment: ProcessInfo.processInfo.environment)

    /// One client (connection pool) per way out — direct, or through each proxy — for the
    /// process, never shut down. A refused connection fails its request at once instead of
    /// being tried again until the request's deadline: every caller retries on its own schedule
    /// (the agent's spool, the AWS calls' backoff), and a server that is away must not hold a
    /// 35 s long-poll slot per attempt. No redirects: none of SpotGuard's peers answer with one,
    /// and a bearer token must not follow one elsewhere.
    static let clients = Mutex<[Route: HTTPClient]>([:])

    struct Route: Hashable {
        var proxy: ProxySettings.Proxy?
        /// PEM certificates trusted besides the system's (a private CA in front of SpotGuard).
        var caBundle: String?
    }

    static func client(through proxy: ProxySettings.Proxy?, trusting caBundle: String?) -> HTTPClient {
        clients.withLock { clients in
            let route = Route(proxy: proxy, caBundle: caBundle)
            if let client = clients[route] { return client }
            var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow, timeout: .init(connect: .seconds(5)))
            if let caBundle {
                var tls = TLSConfiguration.makeClientConfiguration()
                tls.additionalTrustRoots = [.file(caBundle)]
                configuration.tlsConfiguration = tls
            }
            configuration.connectionPool.retryConnectionEstablishment = false
            configuration.decompression = .disabled
            if let proxy {
                let login = proxy.credentials.map { $0.split(separator: ":", maxSplits: 1).map(String.init) }
                configuration.proxy = .server(
                    host: proxy.host, port: proxy.port,
                    authorization: login.map { .basic(username: $0[0], password: $0.count > 1 ? $0[1] : "") })
            }
            let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
            clients[route] = client
            return client
        }
    }

    /// `timeout` bounds each exchange from its start to the last byte of the answer; `proxies`
    /// says which requests go through a proxy (nil: none).
    public init(timeout: TimeInterval = 10, proxies: ProxySettings? = HTTPClientTransport.environmentProxies, caBundle: String? = nil) {
        self.timeout = .milliseconds(Int64(timeout * 1000))
        self.proxies = proxies
        self.caBundle = caBundle
    }

    public func send(_ request: URLRequest) async throws -> (status: Int, headers: [String: String], body: Data) {
        guard let url = request.url?.absoluteString else { throw TransportFailure("a request without a URL") }
        var outgoing = HTTPClientRequest(url: url)
        outgoing.method = HTTPMethod(rawValue: request.httpMethod ?? "GET")
        for (name, value) in request.allHTTPHeaderFields ?? [:] { outgoing.headers.add(name: name, value: value) }
        if let body = request.httpBody { outgoing.body = .bytes(ByteBuffer(bytes: body)) }
        do {
            let client = Self.client(through: request.url.flatMap { proxies?.proxy(for: $0) }, trusting: caBundle)
            let response = try await client.execute(outgoing, timeout: timeout)
            let body = try await response.body.collect(upTo: Self.maxBody)
            var headers: [String: String] = [:]
            for (name, value) in response.headers { headers[name.lowercased()] = value }
            return (Int(response.status.code), headers, Data(body.readableBytesView))
        } catch let cancelled as CancellationError {
            throw cancelled
        } catch {
            throw TransportFailure("\(url): \(error)")
        }
    }
}
