import HTTPTypes
import Hummingbird
import Metrics
import NIOCore
import Synchronization

/// At most `limit` holders at once; `enter` never waits (a full house is answered 503 at once).
public final class Admission: Sendable {
    public let limit: Int
    /// A request that waited longer than this between the server reading its head and its
    /// handler starting is refused (nil: no bound).
    public let maxWait: Duration?
    private let held = Mutex(0)

    public init(limit: Int, maxWait: Duration? = nil) {
        self.limit = limit
        self.maxWait = maxWait
    }

    /// Whether a request the server read at `received` (uptime nanoseconds) waited too long.
    public func waitedTooLong(received: UInt64?, now: UInt64 = NIODeadline.now().uptimeNanoseconds) -> Bool {
        guard let maxWait, let received, now > received else { return false }
        return Duration.nanoseconds(Int64(now - received)) > maxWait
    }

    public func enter() -> Bool {
        held.withLock { n in
            guard n < limit else { return false }
            n += 1
            return true
        }
    }

    public func leave() { held.withLock { $0 -= 1 } }
}

/// Load shedding for the routes it is added to: at most `admission.limit` of their requests in
/// progress; one more is answered at once with 503 `overloaded` and `Retry-After: 1` instead of
/// queueing behind the others. Past its capacity a service would otherwise answer each request
/// later than the last until clients time out (and resend, adding load); refused at once, an
/// agent's spool retries it with backoff. A process short of CPU queues requests before any
/// handler runs, where no count of handlers sees them: a request that waited past
/// `admission.maxWait` since its head was read is refused the same way.
public struct AdmissionMiddleware<Context: RequestContext>: RouterMiddleware {
    let admission: Admission

    public init(_ admission: Admission) { self.admission = admission }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard !admission.waitedTooLong(received: request.headers[.spotguardReceived].flatMap { UInt64($0) }), admission.enter() else {
            Counter(label: "spotguard_http_shed_total").increment()
            throw APIError.overloaded
        }
        defer { admission.leave() }
        return try await next(request, context)
    }
}
