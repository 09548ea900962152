import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import SpotBus
import SpotModels
import SpotRuntime
import SpotStore

/// Everything one `spotguard-replicas` process runs: the answering consumer on
/// `spotguard.replicas`, the reconciler, the outbox relay, and health/metrics over HTTP.
public struct ReplicaService: Sendable {
    public let coordinator: Coordinator
    public let reconciler: Reconciler
    public let relay: OutboxRelay
    public let consumer: BusConsumer
    public let publisher: BusPublisher

    public init(configuration: ReplicaConfiguration, store: PostgresStore, amqp: AMQPEndpoint, logger: Logger) {
        publisher = BusPublisher(endpoint: amqp, logger: logger)
        let relay = OutboxRelay(store: store, publisher: publisher, logger: logger, name: configuration.workerName)
        self.relay = relay
        let coordinator = Coordinator(store: store, configuration: configuration, notify: { relay.notify() })
        self.coordinator = coordinator
        reconciler = Reconciler(
            coordinator: coordinator, leadership: Leadership(store: store, lease: configuration.leaderLease, holder: configuration.workerName), logger: logger)
        var consumerConfiguration = BusConsumer.Configuration(queue: "spotguard.replicas")
        consumerConfiguration.concurrency = configuration.concurrency
        consumerConfiguration.prefetch = UInt16(configuration.concurrency * 2)
        consumer = .responder(endpoint: amqp, configuration: consumerConfiguration, publisher: publisher, logger: logger) { delivery in
            try await Self.answer(delivery, coordinator: coordinator, logger: logger)
        }
    }

    /// Decodes a relayed call and answers it; what cannot be decoded is answered 400 (a retry
    /// would not help), a database outage 503 at once: the caller is waiting and retries
    /// itself, so holding the call until the database is back would only answer nobody.
    static func answer(_ delivery: Delivery, coordinator: Coordinator, logger: Logger) async throws -> [UInt8] {
        // an older broker may still route events here; only calls are answered
        guard delivery.routingKey.hasPrefix(ReplicaOperation.routingPrefix), delivery.replyTo != nil else { return [] }
        let reply: APIReply
        do {
            let envelope = try delivery.decode(ReplicaRequest.self)
            reply = try await coordinator.answer(envelope.payload, requestId: envelope.id)
        } catch is DecodingError {
            logger.warning("undecodable call", metadata: ["bus.routing_key": "\(delivery.routingKey)"])
            reply = APIReply(status: 400, body: ErrorBody(code: "bad_request", message: "the relayed call could not be decoded").json)
        } catch  where error.isTransientFailure {
            let e = APIError.databaseUnavailable
            reply = APIReply(status: Int(e.status.code), body: ErrorBody(code: e.code, message: e.message).json)
        }
        return Array(try WireJSON.encoder().encode(reply))
    }

    public func application(configuration: ReplicaConfiguration, store: PostgresStore, logger: Logger) -> some ApplicationProtocol {
        let (consumer, publisher) = (self.consumer, self.publisher)
        return workerApplication(
            name: "spotguard-replicas", host: configuration.host, port: configuration.port, http: configuration.http,
            brokerConnected: { consumer.isConnected && publisher.isConnected }, store: store,
            services: [publisher, relay, consumer, reconciler], logger: logger)
    }
}
