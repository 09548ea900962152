import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import NIOCore
import NIOHTTPTypes

/// The HTTP side every SpotGuard service shares: how long a connection may take — idle
/// between requests (and while its request head trickles in), and to send a whole request once
/// its head arrived, so a client that stalls or trickles is disconnected instead of holding a
/// connection for ever — and the failed-authentication limit (`AuthFailureLimiter`).
public struct HTTPSettings: Sendable {
    public var idle: Duration
    public var requestRead: Duration
    public var authFailures: AuthFailureLimiter

    public init(idle: Duration = .seconds(60), requestRead: Duration = .seconds(60), authFailures: AuthFailureLimiter = AuthFailureLimiter(limit: 30)) {
        self.idle = idle
        self.requestRead = requestRead
        self.authFailures = authFailures
    }

    /// `SPOTGUARD_HTTP_IDLE_SECONDS` (default 60), `SPOTGUARD_HTTP_READ_SECONDS` (default 60),
    /// `SPOTGUARD_AUTH_FAILURE_LIMIT` and `SPOTGUARD_TRUSTED_PROXIES`.
    public init(env: EnvironmentReader) throws {
        self.init(
            idle: .seconds(try env.int("SPOTGUARD_HTTP_IDLE_SECONDS", default: 60, range: 1...3600)),
            requestRead: .seconds(try env.int("SPOTGUARD_HTTP_READ_SECONDS", default: 60, range: 1...3600)),
            authFailures: try AuthFailureLimiter.fromEnvironment(env))
    }

    /// Connections the kernel completes before the server accepts them. Hummingbird's default,
    /// 256, overflows when a fleet-wide event makes agents connect at once faster than a busy
    /// process accepts: the kernel then drops their handshakes, and each retries after 1, 3, 7,
    /// 15, 31 s, past the agent's timeout, instead of being answered or refused at once. The
    /// kernel caps it at `net.core.somaxconn` (4,096 on current Linux).
    public static let backlog = 4096

    /// Where and as what the service listens.
    public func listening(host: String, port: Int, name: String) -> ApplicationConfiguration {
        .init(address: .hostname(host, port: port), serverName: name, backlog: Self.backlog)
    }

    /// The HTTP/1.1 server every SpotGuard service runs.
    public var server: HTTPServerBuilder {
        let read = TimeAmount.nanoseconds(Int64(requestRead / .nanoseconds(1)))
        return .http1(
            configuration: .init(
                additionalChannelHandlers: [RequestReadDeadline(limit: read)],
                idleTimeout: .nanoseconds(Int64(idle / .nanoseconds(1)))))
    }
}

extension HTTPField.Name {
    /// When the server read a request's head (`NIODeadline` uptime nanoseconds): set by the
    /// server on every request, replacing any copy a client sent.
    public static let spotguardReceived = Self("SpotGuard-Received")!
}

/// Closes a connection whose request (head to end of body) is not fully received within
/// `limit` of its head, and stamps each head with the time it was read (`spotguardReceived`):
/// how long a request then waits for a thread to handle it is how overloaded the process is.
final class RequestReadDeadline: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    let limit: TimeAmount
    private var deadline: Scheduled<Void>?

    init(limit: TimeAmount) { self.limit = limit }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(var head):
            deadline?.cancel()
            let channel = context.channel
            deadline = context.eventLoop.scheduleTask(in: limit) { channel.close(promise: nil) }
            head.headerFields[.spotguardReceived] = String(NIODeadline.now().uptimeNanoseconds)
            context.fireChannelRead(wrapInboundOut(.head(head)))
            return
        case .end:
            deadline?.cancel()
            deadline = nil
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
    }
}
