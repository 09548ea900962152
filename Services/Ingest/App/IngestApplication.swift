import Hummingbird
import Logging
import SpotBus
import SpotRuntime
import SpotStore

/// Builds the ingest HTTP application over a store and a publisher. The publisher runs as a
/// service of the application: it connects before the server accepts requests and closes
/// after the server stopped (outstanding confirms are awaited).
public func buildIngestApplication(
    configuration: IngestConfiguration, store: PostgresStore, publisher: BusPublisher, logger: Logger
) -> some ApplicationProtocol {
    let directory = ClientDirectory(store: store, ttl: configuration.tokenCacheTTL)
    let router = Router()
    router.add(middleware: ErrorMiddleware())
    router.add(middleware: MetricsMiddleware())
    router.addOperationalRoutes(readiness: [
        ReadinessCheck(name: "broker") { publisher.isConnected },
        ReadinessCheck(name: "database") { await store.ping() },
    ])
    let rejections = RejectionMonitor(threshold: configuration.rejectedAlertPerMinute, publisher: publisher, logger: logger)
    IngestController(directory: directory, publisher: publisher, configuration: configuration, rejections: rejections)
        .addRoutes(to: router)
    return Application(
        router: router,
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "spotguard-ingest"),
        services: [publisher],
        logger: logger)
}
