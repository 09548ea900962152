import Hummingbird
import Logging
import SpotBus
import SpotFleet
import SpotRuntime
import SpotStore

/// Builds the ingest HTTP application over a store and a publisher. The publisher runs as a
/// service of the application: it connects before the server accepts requests and closes
/// after the server stopped (outstanding confirms are awaited).
public func buildIngestApplication(
    configuration: IngestConfiguration, store: PostgresStore, amqp: AMQPEndpoint, logger: Logger
) -> some ApplicationProtocol {
    let publisher = BusPublisher(endpoint: amqp, confirmTimeout: configuration.publishTimeout, logger: logger)
    let requester = BusRequester(endpoint: amqp, logger: logger)
    let mailbox = CommandMailbox()
    let wakeUps = CommandWakeUps(endpoint: amqp, mailbox: mailbox, publisher: publisher, logger: logger)
    let directory = ClientDirectory(store: store, ttl: configuration.tokenCacheTTL)
    let access = AccessUpdates(endpoint: amqp, directory: directory, publisher: publisher, logger: logger)
    let router = Router.service(
        authFailures: configuration.http.authFailures,
        readiness: [
            ReadinessCheck(name: "broker") { publisher.isConnected && requester.isConnected && wakeUps.isConnected && access.isConnected },
            ReadinessCheck(name: "database") { await store.ping() },
        ])
    let rejections = RejectionMonitor(threshold: configuration.rejectedAlertPerMinute, publisher: publisher, logger: logger)
    IngestController(
        directory: directory, publisher: publisher, configuration: configuration, rejections: rejections,
        replicas: ReplicaRelay(requester: requester, timeout: configuration.relayTimeout, producer: "spotguard-ingest"),
        mailbox: mailbox, store: store, stateTransfers: Admission(limit: configuration.stateTransferConcurrency),
        stateChunks: Admission(limit: configuration.stateChunkConcurrency)
    ).addRoutes(to: router)
    return Application(
        router: router, server: configuration.http.server,
        configuration: configuration.http.listening(host: configuration.host, port: configuration.port, name: "spotguard-ingest"),
        services: [
            publisher, requester, wakeUps, access, AuthFailureSharing(limiter: configuration.http.authFailures, store: store, logger: logger),
            RetentionService.ingest(configuration: configuration, store: store, logger: logger),
        ],
        logger: logger)
}
