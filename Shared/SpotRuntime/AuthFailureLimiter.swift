import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Metrics
import NIOCore
import ServiceLifecycle
import SpotModels
import SpotStore
import Synchronization

/// The request context of every SpotGuard HTTP service: Hummingbird's basic one plus the peer's
/// address, which the failed-authentication limit counts by.
public struct ServiceRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }
}

/// Counts failed authentications (answers of 401) in one-minute windows, separately per client
/// address and per presented token key id. Past the limit for either, a failing request is
/// answered 429 `too_many_failed_attempts` with `Retry-After` instead of 401 — but a request
/// that carries a valid token is never refused, so a neighbour behind the same NAT or proxy,
/// or the same client with its rotated token, is not locked out. Token secrets are 256-bit
/// random, so guessing is hopeless anyway: the limit tells a guesser or a misconfigured fleet
/// to back off and makes either visible (`spotguard_auth_blocked_total`).
///
/// The counts are shared by every copy of every service through the `auth_failures` table
/// (`AuthFailureSharing` adds this process's counts and reads everyone's once a second), so the
/// limit is the limit of the deployment, not of one process. The client address is the peer's,
/// or, when the peer is a trusted proxy (`SPOTGUARD_TRUSTED_PROXIES`), the right-most address of
/// `X-Forwarded-For` that is not a trusted proxy.
public final class AuthFailureLimiter: Sendable {
    public enum Scope: String, Sendable {
        case address
        case key
    }

    struct Subject: Hashable, Sendable {
        var scope: Scope
        var value: String
    }

    struct State {
        var window: Int64 = 0
        /// This process's failures in the window.
        var local: [Subject: Int] = [:]
        /// Failures not yet added to the shared counts.
        var unsent: [Subject: Int] = [:]
        /// Everyone's counts in the window, as last read.
        var shared: [Subject: Int] = [:]
    }

    /// Failed attempts allowed per subject and minute (0: no limit).
    public let limit: Int
    public let trustedProxies: [CIDR]
    private let state = Mutex(State())
    private static let maxSubjects = 100_000

    public init(limit: Int, trustedProxies: [CIDR] = []) {
        self.limit = limit
        self.trustedProxies = trustedProxies
    }

    /// `SPOTGUARD_AUTH_FAILURE_LIMIT` failures per minute and subject (default 30; 0 turns it
    /// off) and `SPOTGUARD_TRUSTED_PROXIES` (comma-separated addresses or CIDR blocks).
    public static func fromEnvironment(_ env: EnvironmentReader = EnvironmentReader()) throws -> AuthFailureLimiter {
        let proxies = try (env.string("SPOTGUARD_TRUSTED_PROXIES") ?? "").split(separator: ",").map { part in
            let text = part.trimmingCharacters(in: .whitespaces)
            guard let block = CIDR(text) else {
                throw ConfigurationError(variable: "SPOTGUARD_TRUSTED_PROXIES", problem: "'\(text)' is not an address or CIDR block")
            }
            return block
        }
        return AuthFailureLimiter(limit: try env.int("SPOTGUARD_AUTH_FAILURE_LIMIT", default: 30, range: 0...1_000_000), trustedProxies: proxies)
    }

    static func window(_ now: Date) -> Int64 { Int64(now.timeIntervalSince1970) / 60 }

    /// Seconds until the window ends when one of the subjects failed more than `limit` times in
    /// it, else nil.
    func blocked(_ subjects: [Subject], now: Date = Date()) -> Int? {
        guard limit > 0 else { return nil }
        let window = Self.window(now)
        let reached = state.withLock { s -> Bool in
            guard s.window == window else { return false }
            return subjects.contains { max(s.local[$0] ?? 0, s.shared[$0] ?? 0) > limit }
        }
        guard reached else { return nil }
        return max(1, Int((window + 1) * 60 - Int64(now.timeIntervalSince1970)))
    }

    func recordFailure(_ subjects: [Subject], now: Date = Date()) {
        guard limit > 0 else { return }
        let window = Self.window(now)
        state.withLock { s in
            if s.window != window {
                s = State(window: window)
            }
            if s.local.count >= Self.maxSubjects { s.local.removeAll() }
            for subject in subjects {
                s.local[subject, default: 0] += 1
                s.unsent[subject, default: 0] += 1
            }
        }
    }

    /// Adds this process's new failures to the shared counts and reads everyone's for the
    /// current window (the subjects over the limit).
    public func share(on conn: PGConnection, now: Date = Date()) throws {
        guard limit > 0 else { return }
        let window = Self.window(now)
        let unsent = state.withLock { s -> [Subject: Int] in
            defer { s.unsent = [:] }
            return s.window == window ? s.unsent : [:]
        }
        let start = Date(timeIntervalSince1970: TimeInterval(window * 60))
        if !unsent.isEmpty {
            let items = Array(unsent)
            _ = try conn.execute(
                """
                INSERT INTO auth_failures (window_start, scope, subject, failures)
                SELECT $1, s, v, n FROM unnest($2::text[], $3::text[], $4::int[]) AS u(s, v, n)
                ON CONFLICT (window_start, scope, subject) DO UPDATE SET failures = auth_failures.failures + EXCLUDED.failures
                """,
                [start, PGArray(items.map(\.key.scope.rawValue)), PGArray(items.map(\.key.value)), PGArray(items.map(\.value))])
        }
        var shared: [Subject: Int] = [:]
        for row in try conn.query(
            "SELECT scope, subject, failures FROM auth_failures WHERE window_start = $1 AND failures > $2", [start, limit])
        {
            guard let scope = Scope(rawValue: try row.decode(String.self, at: 0)) else { continue }
            shared[Subject(scope: scope, value: try row.decode(String.self, at: 1))] = try row.decode(Int.self, at: 2)
        }
        _ = try conn.execute("DELETE FROM auth_failures WHERE window_start < $1", [start.addingTimeInterval(-600)])
        state.withLock { s in
            if s.window != window { s = State(window: window) }
            s.shared = shared
        }
    }

    /// The client's address: the peer's, or the one a trusted proxy says it forwarded for.
    func clientAddress(peer: String?, forwardedFor: [String]) -> String {
        guard let peer else { return "unknown" }
        guard !trustedProxies.isEmpty, trustedProxies.contains(where: { $0.contains(peer) }) else { return peer }
        // right to left: each hop was added by the proxy in front of it; the first hop that is
        // not one of ours is the client as far as our proxies can tell
        let hops = forwardedFor.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
        for hop in hops.reversed() where !trustedProxies.contains(where: { $0.contains(hop) }) {
            return CIDR(hop) != nil ? hop : peer
        }
        return hops.first ?? peer
    }
}

/// Applies an `AuthFailureLimiter` to every route but the health probes and the metrics.
public struct AuthFailureMiddleware<Context: RemoteAddressRequestContext>: RouterMiddleware {
    let limiter: AuthFailureLimiter

    public init(_ limiter: AuthFailureLimiter) { self.limiter = limiter }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard limiter.limit > 0, !request.uri.path.hasPrefix("/health/"), request.uri.path != "/metrics" else { return try await next(request, context) }
        let address = limiter.clientAddress(peer: context.remoteAddress?.ipAddress, forwardedFor: request.headers[values: HTTPField.Name("X-Forwarded-For")!])
        var subjects = [AuthFailureLimiter.Subject(scope: .address, value: address)]
        if let key = ClientToken.bearer(request.headers[.authorization]).flatMap({ ClientToken($0) })?.keyId {
            subjects.append(.init(scope: .key, value: key))
        }
        do {
            let response = try await next(request, context)
            guard response.status == .unauthorized else { return response }
            try failed(subjects)
            return response
        } catch let error as any HTTPResponseError where error.status == .unauthorized {
            try failed(subjects)
            throw error
        }
    }

    /// Counts the failure; past the limit, the answer becomes 429.
    private func failed(_ subjects: [AuthFailureLimiter.Subject]) throws {
        limiter.recordFailure(subjects)
        if let seconds = limiter.blocked(subjects) {
            Counter(label: "spotguard_auth_blocked_total").increment()
            throw APIError(
                .tooManyRequests, code: "too_many_failed_attempts",
                message: "too many failed authentication attempts from this address or for this key; retry later", retryAfterSeconds: seconds)
        }
    }
}

/// Once a second, adds this process's failed authentications to the shared counts and reads
/// everyone's (see `AuthFailureLimiter`).
public struct AuthFailureSharing: Service {
    let limiter: AuthFailureLimiter
    let store: PostgresStore
    let logger: Logger

    public init(limiter: AuthFailureLimiter, store: PostgresStore, logger: Logger) {
        self.limiter = limiter
        self.store = store
        self.logger = logger
    }

    public func run() async throws {
        guard limiter.limit > 0 else { return try await gracefulShutdown() }
        let (limiter, store) = (self.limiter, self.store)
        await PeriodicWorker("auth-failure-sharing", every: .seconds(1)).run {
            do {
                try await store.withConnection { try limiter.share(on: $0) }
            } catch {
                logger.debug("sharing failed-authentication counts failed", metadata: ["error": "\(error)"])
            }
        }
    }
}
