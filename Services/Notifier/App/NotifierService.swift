import Foundation
import Hummingbird
import Logging
import NotifierCore
import SpotBus
import SpotModels
import SpotRuntime
import SpotStore

/// Everything one `spotguard-notifier` process runs: the consumer of `spotguard.notifier`
/// (alerts, failovers, offline agents, replica problems, switches → notifications and
/// webhook deliveries), the webhook sender, and health/metrics over HTTP. Copies compete on
/// the queue and share deliveries by lease.
public struct NotifierService: Sendable {
    let consumer: BusConsumer
    let publisher: BusPublisher
    public let delivery: WebhookDelivery

    struct MessageHead: Decodable {
        var id: UUID
    }

    public init(configuration: NotifierConfiguration, store: PostgresStore, amqp: AMQPEndpoint, logger: Logger) {
        publisher = BusPublisher(endpoint: amqp, logger: logger)
        let delivery = WebhookDelivery(store: store, configuration: configuration, logger: logger)
        self.delivery = delivery
        let writer = NotificationWriter(store: store, collapseWindow: configuration.collapseWindow)
        consumer = BusConsumer(endpoint: amqp, configuration: .init(queue: "spotguard.notifier"), deadLetters: publisher, logger: logger) {
            message in
            let body = Data(message.body)
            guard let draft = try NotificationDraft.of(routingKey: message.routingKey, body: body) else { return }
            let id = try WireJSON.decoder().decode(MessageHead.self, from: body).id
            let outcome: NotificationWriter.Outcome
            do {
                outcome = try await writer.write(draft, messageId: id)
            } catch let error as PGError where error.sqlState == "23503" {
                // an event about a client or agent this database does not hold (another stack's
                // bus, an integrator's mistake): no retry would change it
                throw ValidationError(code: "unknown_reference", field: "payload", message: error.detail ?? error.message)
            }
            if case .written(_, let deliveries) = outcome, deliveries > 0 { delivery.wake() }
        }
    }

    public func application(configuration: NotifierConfiguration, store: PostgresStore, logger: Logger) -> some ApplicationProtocol {
        let (consumer, publisher) = (self.consumer, self.publisher)
        return workerApplication(
            name: "spotguard-notifier", host: configuration.host, port: configuration.port, http: configuration.http,
            brokerConnected: { consumer.isConnected && publisher.isConnected }, store: store,
            services: [publisher, consumer, delivery, Self.retention(configuration: configuration, store: store, logger: logger)], logger: logger)
    }

    /// The notifier's retention job `notifier.retention` (deleting a notification deletes its
    /// deliveries and reads by cascade).
    public static func retention(configuration: NotifierConfiguration, store: PostgresStore, logger: Logger) -> RetentionService {
        let rules = [
            RetentionRule("notifications") { conn, cutoff in
                try conn.execute("DELETE FROM notifications WHERE created_at < $1", [cutoff])
            },
            RetentionRule("webhook_deliveries") { conn, cutoff in
                try conn.execute("DELETE FROM webhook_deliveries WHERE status <> 'pending' AND created_at < $1", [cutoff])
            },
            RetentionRule("notifier_messages") { conn, cutoff in
                try conn.execute("DELETE FROM notifier_messages WHERE handled_at < $1", [cutoff])
            },
        ]
        return RetentionService(
            job: "notifier.retention", rules: rules, policy: configuration.retention, worker: configuration.workerName, store: store,
            logger: logger)
    }
}
