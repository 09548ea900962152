import Hummingbird
import Logging
import Metrics
import Prometheus
import Synchronization

/// Process-wide logging and metrics set-up; call once from `main`, never from tests.
public enum Observability {
    private static let registry = Mutex<PrometheusCollectorRegistry?>(nil)

    public static func bootstrap(level: Logger.Level) {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let collectors = PrometheusCollectorRegistry()
        registry.withLock { $0 = collectors }
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: collectors))
    }

    /// The Prometheus text exposition of every metric recorded so far.
    public static func exposition() -> String {
        guard let r = registry.withLock({ $0 }) else { return "" }
        var buffer: [UInt8] = []
        r.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
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
        router.add(middleware: ErrorMiddleware())
        router.add(middleware: MetricsMiddleware())
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
