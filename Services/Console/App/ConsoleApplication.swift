import Foundation
import Hummingbird
import Logging
import Mustache
import SpotBus
import SpotFleet
import SpotRuntime
import SpotStore

/// Builds the console's HTTP application: the client and admin APIs, the dashboard and the
/// OpenAPI document, with the replica relay's requester as its one bus connection.
public func buildConsoleApplication(
    configuration: ConsoleConfiguration, templates library: MustacheLibrary, store: PostgresStore, amqp: AMQPEndpoint, logger: Logger
) -> some ApplicationProtocol {
    let requester = BusRequester(endpoint: amqp, logger: logger)
    // the console writes `access.changed` to the outbox; its own relay sends it at once
    let publisher = BusPublisher(endpoint: amqp, logger: logger)
    let relay = OutboxRelay(store: store, publisher: publisher, logger: logger, name: "spotguard-console-\(ProcessInfo.processInfo.processIdentifier)")
    let directory = ClientDirectory(store: store, ttl: configuration.tokenCacheTTL, changed: { relay.notify() })
    let access = AccessUpdates(endpoint: amqp, directory: directory, publisher: publisher, logger: logger)
    let router = Router.service(
        authFailures: configuration.http.authFailures,
        readiness: [
            ReadinessCheck(name: "broker") { requester.isConnected && publisher.isConnected && access.isConnected },
            ReadinessCheck(name: "database") { await store.ping() },
        ])
    ConsoleController(
        store: store, directory: directory,
        replicas: ReplicaRelay(requester: requester, timeout: configuration.relayTimeout, producer: "spotguard-console"),
        configuration: configuration, templates: library,
        sessions: Sessions(store: store, lifetime: configuration.sessionLifetime, secure: configuration.secureCookies),
        brokerConnected: { requester.isConnected }
    ).addRoutes(to: router)
    return Application(
        router: router, server: configuration.http.server,
        configuration: configuration.http.listening(host: configuration.host, port: configuration.port, name: "spotguard-console"),
        services: [publisher, requester, relay, access, AuthFailureSharing(limiter: configuration.http.authFailures, store: store, logger: logger)],
        logger: logger)
}

/// The dashboard's Mustache templates, from the console's resource bundle.
public func loadConsoleTemplates() async throws -> MustacheLibrary {
    guard let templates = Bundle.module.url(forResource: "Templates", withExtension: nil) else {
        throw ConfigurationError(variable: "Templates", problem: "are missing from the console's bundle")
    }
    return try await MustacheLibrary(directory: templates.path)
}
