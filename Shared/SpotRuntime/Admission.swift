import Hummingbird
import Metrics
import Synchronization

/// At most `limit` holders at once; `enter` never waits (a full house is answered 503 at once).
public final class Admission: Sendable {
    public let limit: Int
    private let held = Mutex(0)

    public init(limit: Int) { self.limit = limit }

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
/// agent's spool retries it with backoff.
public struct AdmissionMiddleware<Context: RequestContext>: RouterMiddleware {
    let admission: Admission

    public init(_ admission: Admission) { self.admission = admission }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard admission.enter() else {
            Counter(label: "spotguard_http_shed_total").increment()
            throw APIError.overloaded
        }
        defer { admission.leave() }
        return try await next(request, context)
    }
}
