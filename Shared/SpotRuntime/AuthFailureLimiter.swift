import Foundation
import Hummingbird
import Metrics
import NIOCore
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

/// Counts answers of 401 per peer address in fixed windows; an address that reached the limit
/// gets 429 `too_many_failed_attempts` with `Retry-After` for everything (its valid tokens
/// too) until its window ends. Token secrets are 256-bit random, so guessing is hopeless
/// anyway; the limit keeps a guesser or a misconfigured fleet from costing the service work
/// and makes either visible (`spotguard_auth_blocked_total`). Health probes and `/metrics` are
/// never limited.
public final class AuthFailureLimiter: Sendable {
    struct Window {
        var start: ContinuousClock.Instant
        var failures: Int
    }

    /// Failed attempts allowed per address and window (0: no limit).
    public let limit: Int
    public let window: Duration
    private let windows = Mutex<[String: Window]>([:])
    private static let maxAddresses = 100_000

    public init(limit: Int, window: Duration = .seconds(60)) {
        self.limit = limit
        self.window = window
    }

    /// `SPOTGUARD_AUTH_FAILURE_LIMIT` failures per minute and address (default 30; 0 turns it off).
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) -> AuthFailureLimiter {
        AuthFailureLimiter(limit: env["SPOTGUARD_AUTH_FAILURE_LIMIT"].flatMap { Int($0) }.map { max(0, $0) } ?? 30)
    }

    /// Seconds until the address may try again, or nil when it may now.
    func blocked(_ address: String, now: ContinuousClock.Instant = .now) -> Int? {
        guard limit > 0, let w = windows.withLock({ $0[address] }), w.failures >= limit else { return nil }
        let left = w.start + window - now
        guard left > .zero else { return nil }
        return max(1, Int((Double(left.components.seconds) + Double(left.components.attoseconds) / 1e18).rounded(.up)))
    }

    func recordFailure(_ address: String, now: ContinuousClock.Instant = .now) {
        guard limit > 0 else { return }
        windows.withLock { all in
            if all.count >= Self.maxAddresses { all = all.filter { now - $0.value.start < window } }
            if all.count >= Self.maxAddresses { all.removeAll() }
            if let w = all[address], now - w.start < window {
                all[address]?.failures = w.failures + 1
            } else {
                all[address] = Window(start: now, failures: 1)
            }
        }
    }
}

/// Applies an `AuthFailureLimiter` to every route but the health probes and the metrics.
public struct AuthFailureMiddleware<Context: RemoteAddressRequestContext>: RouterMiddleware {
    let limiter: AuthFailureLimiter

    public init(_ limiter: AuthFailureLimiter) { self.limiter = limiter }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard limiter.limit > 0, !request.uri.path.hasPrefix("/health/"), request.uri.path != "/metrics" else { return try await next(request, context) }
        let address = context.remoteAddress?.ipAddress ?? "unknown"
        if let seconds = limiter.blocked(address) {
            Counter(label: "spotguard_auth_blocked_total").increment()
            throw APIError(
                .tooManyRequests, code: "too_many_failed_attempts",
                message: "too many failed authentication attempts from this address; retry later", retryAfterSeconds: seconds)
        }
        do {
            let response = try await next(request, context)
            if response.status == .unauthorized { limiter.recordFailure(address) }
            return response
        } catch let error as any HTTPResponseError where error.status == .unauthorized {
            limiter.recordFailure(address)
            throw error
        }
    }
}
