import Hummingbird
import Logging
import ServiceLifecycle
import SpotStore

/// The HTTP side of a service that works off the bus (SEF, coordinator, decision engine):
/// health, readiness (broker and database) and metrics, plus any routes `configure` adds,
/// with the service's workers running as services of the application.
public func workerApplication(
    name: String, host: String, port: Int, http: HTTPSettings, brokerConnected: @escaping @Sendable () -> Bool, store: PostgresStore,
    services: [any Service], logger: Logger, configure: (Router<ServiceRequestContext>) -> Void = { _ in }
) -> some ApplicationProtocol {
    let router = Router.service(
        authFailures: http.authFailures,
        readiness: [
            ReadinessCheck(name: "broker") { brokerConnected() },
            ReadinessCheck(name: "database") { await store.ping() },
        ])
    configure(router)
    return Application(
        router: router, server: http.server, configuration: http.listening(host: host, port: port, name: name),
        services: services + [AuthFailureSharing(limiter: http.authFailures, store: store, logger: logger)], logger: logger)
}
