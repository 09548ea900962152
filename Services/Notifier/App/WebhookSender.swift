import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import SpotModels

#if canImport(Glibc)
import Glibc
#endif

/// Sends one webhook to a URL a customer gave, as such a URL must be sent from inside a
/// deployment: never to an internal address (loopback, private, link-local — the instance
/// metadata service —, unique-local …: `CIDR.nonPublic`) unless the operator allows it
/// (`SPOTGUARD_WEBHOOK_ALLOW_NETWORKS`); the name is resolved once, every address it resolves
/// to is checked, and the connection goes to the checked address (the name is still what TLS
/// verifies and what `Host` says), so a name that resolves elsewhere a second time changes
/// nothing. Redirects are not followed. One attempt has one deadline for everything —
/// resolving, connecting, sending and the answer's head — and the answer's body is never read.
/// What goes wrong is said without the URL, which may carry a secret (Slack's do).
struct WebhookSender: Sendable {
    enum Outcome: Sendable, Equatable {
        /// The receiver answered with this status (2xx: delivered).
        case answered(Int)
        /// No answer; worth trying again later.
        case failed(String)
        /// Never to be sent: the URL is not allowed (no retry changes that).
        case refused(String)
    }

    typealias Resolver = @Sendable (_ host: String) async -> [[UInt8]]

    let allowed: [CIDR]
    let deadline: Duration
    let resolve: Resolver

    init(allowed: [CIDR], deadline: Duration, resolve: @escaping Resolver = WebhookSender.systemResolve) {
        self.allowed = allowed
        self.deadline = deadline
        self.resolve = resolve
    }

    struct DeadlinePassed: Error {}

    func post(url text: String, headers: [(String, String)], body: [UInt8]) async -> Outcome {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme),
            let host = url.host, !host.isEmpty, url.user == nil
        else { return .refused("the URL is not an http(s) URL") }
        do {
            return try await withThrowingTaskGroup(of: Outcome.self) { group in
                group.addTask { try await self.attempt(url: url, host: host, headers: headers, body: body) }
                group.addTask {
                    try await Task.sleep(for: self.deadline)
                    throw DeadlinePassed()
                }
                defer { group.cancelAll() }
                return try await group.next() ?? .failed("no answer")
            }
        } catch is DeadlinePassed {
            return .failed("no answer within \(deadline)")
        } catch {
            return .failed("the attempt failed")
        }
    }

    private func attempt(url: URL, host: String, headers: [(String, String)], body: [UInt8]) async throws -> Outcome {
        // an address literal (brackets stripped) is checked as it is; a name by what it resolves to
        let bare = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
        var addresses: [[UInt8]]
        if let literal = CIDR.parse(bare) { addresses = [literal] } else { addresses = await resolve(bare) }
        guard !addresses.isEmpty else { return .failed("the host name does not resolve") }
        guard addresses.allSatisfy({ CIDR.isReachable($0, allowed: allowed) }) else {
            return .refused("the URL leads to an internal address")
        }
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow, decompression: .disabled)
        configuration.timeout = .init(connect: .nanoseconds(Int64(deadline / .nanoseconds(1))), read: .nanoseconds(Int64(deadline / .nanoseconds(1))))
        configuration.httpVersion = .http1Only
        configuration.dnsOverride = [bare: Self.text(of: addresses[0])]
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        let outcome = await send(url: url, headers: headers, body: body, with: client)
        try? await client.shutdown()
        return outcome
    }

    private func send(url: URL, headers: [(String, String)], body: [UInt8], with client: HTTPClient) async -> Outcome {
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = .POST
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(bytes: body))
        do {
            // only the status counts: the answer's body is never read, so no receiver can make the
            // notifier hold it (the connection closes with the client)
            let response = try await client.execute(request, timeout: .nanoseconds(Int64(deadline / .nanoseconds(1))))
            return .answered(Int(response.status.code))
        } catch let error as HTTPClientError where error == .connectTimeout || error == .readTimeout || error == .deadlineExceeded {
            return .failed("no answer within \(deadline)")
        } catch {
            return .failed("could not connect, send or read the answer")
        }
    }

    static func text(of address: [UInt8]) -> String {
        var buffer = [CChar](repeating: 0, count: 64)
        let family = address.count == 4 ? AF_INET : AF_INET6
        _ = address.withUnsafeBytes { raw in inet_ntop(family, raw.baseAddress, &buffer, socklen_t(buffer.count)) }
        return String(cString: buffer)
    }

    /// The addresses a name resolves to (getaddrinfo, off the cooperative threads).
    static let systemResolve: Resolver = { host in
        await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                var hints = addrinfo()
                hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
                var list: UnsafeMutablePointer<addrinfo>?
                guard getaddrinfo(host, nil, &hints, &list) == 0 else { return continuation.resume(returning: []) }
                defer { freeaddrinfo(list) }
                var found: [[UInt8]] = []
                var node = list
                while let n = node {
                    if n.pointee.ai_family == AF_INET, let a = n.pointee.ai_addr {
                        a.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                            found.append(withUnsafeBytes(of: sin.pointee.sin_addr) { Array($0) })
                        }
                    } else if n.pointee.ai_family == AF_INET6, let a = n.pointee.ai_addr {
                        a.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                            found.append(withUnsafeBytes(of: sin6.pointee.sin6_addr) { Array($0) })
                        }
                    }
                    node = n.pointee.ai_next
                }
                continuation.resume(returning: found)
            }
        }
    }
}
