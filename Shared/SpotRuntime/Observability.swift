import Foundation
import Hummingbird
import Logging
import Metrics
import Prometheus
import SpotCLI
import Synchronization

/// Process-wide logging and metrics set-up; call once from `main`, never from tests.
public enum Observability {
    private static let registry = Mutex<PrometheusCollectorRegistry?>(nil)

    public static func bootstrap(log level: Logger.Level, format: LogOutput.Format) {
        LogOutput.bootstrap(level: level, format: format)
        let collectors = PrometheusCollectorRegistry()
        registry.withLock { $0 = collectors }
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: collectors))
        // which build runs, as Prometheus's convention has it: a gauge of 1 labelled with it
        Gauge(label: "spotguard_build_info", dimensions: [("revision", Revision.text), ("executable", CommandLineRunner.executable)]).record(1)
    }

    /// The Prometheus text exposition of every metric recorded so far.
    public static func exposition() -> String {
        guard let r = registry.withLock({ $0 }) else { return "" }
        var buffer: [UInt8] = []
        r.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }
}

/// What every request leaves behind, once it is answered (outermost, so it sees the answer an
/// error became):
/// - one `info` log line: `http.method`, `http.path` (without the query, which may carry what is
///   not for a log), `http.status` and `http.duration_ms`, beside the request's `hb.request.id`;
/// - Prometheus series under Prometheus's names (Hummingbird's own middleware says
///   `hb_requests`, `hb_request_duration`): `spotguard_http_requests_total` by method, route
///   (the matched path's pattern, never the path itself, so ids do not multiply the series) and
///   status, `spotguard_http_request_duration_seconds` by method and route, and
///   `spotguard_http_requests_in_flight`.
struct RequestObservationMiddleware<Context: RequestContext>: RouterMiddleware {
    let inFlight = Meter(label: "spotguard_http_requests_in_flight")

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        inFlight.increment()
        func observe(_ status: HTTPResponse.Status) {
            inFlight.decrement()
            let elapsed = ContinuousClock.now - started
            let route = context.endpointPath ?? "unmatched"
            Counter(
                label: "spotguard_http_requests_total",
                dimensions: [("method", request.method.rawValue), ("route", route), ("status", String(status.code))]
            ).increment()
            Timer(label: "spotguard_http_request_duration_seconds", dimensions: [("method", request.method.rawValue), ("route", route)])
                .recordNanoseconds(Int64(elapsed / .nanoseconds(1)))
            context.logger.info(
                "request",
                metadata: [
                    "http.method": .string(request.method.rawValue), "http.path": .string(request.uri.path),
                    "http.status": .stringConvertible(status.code), "http.duration_ms": .string(String(format: "%.1f", elapsed / .milliseconds(1))),
                ])
        }
        do {
            let response = try await next(request, context)
            observe(response.status)
            return response
        } catch let error as any HTTPResponseError {
            observe(error.status)
            throw error
        } catch {
            observe(.internalServerError)
            throw error
        }
    }
}

/// A dependency the readiness probe checks.
public struct ReadinessCheck: Sendable {
    public var name: String
    public var check: @Sendable () async -> Bool

    public init(name: String, check: @escaping @Sendable () async -> Bool) {
        self.name = name
        self.check = check
    }
}

extension Router where Context == ServiceRequestContext {
    /// Every service's router: errors answered as `APIError`s, request metrics, the limit on
    /// failed authentication per address, and the operational routes.
    public static func service(authFailures: AuthFailureLimiter, readiness: [ReadinessCheck]) -> Router<ServiceRequestContext> {
        let router = Router(context: ServiceRequestContext.self)
        router.add(middleware: RequestObservationMiddleware())
        router.add(middleware: ErrorMiddleware())
        router.add(middleware: AuthFailureMiddleware(authFailures))
        router.addOperationalRoutes(readiness: readiness)
        return router
    }
}

extension Router {
    /// `/health/live` (the process answers), `/health/ready` (every dependency reachable: 503
    /// naming the ones that are not) and `/metrics` (Prometheus).
    public func addOperationalRoutes(readiness: [ReadinessCheck]) {
        get("/health/live") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: #"{"status":"live"}"#)))
        }
        get("/health/ready") { _, _ in
            var down: [String] = []
            for r in readiness where await !r.check() { down.append(r.name) }
            let body = down.isEmpty ? #"{"status":"ready"}"# : #"{"status":"not_ready","down":[\#(down.map { "\"\($0)\"" }.joined(separator: ","))]}"#
            return Response(
                status: down.isEmpty ? .ok : .serviceUnavailable, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: body)))
        }
        get("/metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(string: Observability.exposition())))
        }
    }
}
