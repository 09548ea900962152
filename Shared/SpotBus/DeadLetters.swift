import Foundation
import Logging
import SpotModels
import Synchronization

/// The dead letters in `spotguard.dead-letters`, for an operator: list them, and send those
/// of one service's queue back to that queue once the cause is fixed.
///
/// A replayed message goes to its queue directly (the default exchange), so only the service
/// that failed it sees it again, and keeps its message id: consumers are idempotent on it, so
/// replaying a message that was meanwhile handled, or replaying twice, changes nothing. Dead
/// letters are read with manual acks; those not replayed go back to the queue unchanged when
/// the connection closes.
public enum DeadLetters {
    public struct Letter: Sendable, Encodable {
        public var messageId: String?
        /// The queue whose consumer gave up on it.
        public var queue: String?
        public var routingKey: String
        public var exchange: String?
        public var reason: String?
        public var attempts: Int?
        public var deadLetteredAt: String?
        public var bytes: Int

        init(_ d: Delivery) {
            messageId = d.messageId
            // set by a consumer; the broker's own dead-lettering (delivery limit) names the queue too
            queue = d.headers["x-spotguard-queue"] ?? d.headers["x-first-death-queue"]
            routingKey = d.routingKey
            exchange = d.headers["x-spotguard-exchange"] ?? d.headers["x-first-death-exchange"]
            reason = d.headers["x-spotguard-error"] ?? d.headers["x-first-death-reason"]
            attempts = d.headers["x-spotguard-attempts"].flatMap { Int($0) }
            deadLetteredAt = d.headers["x-spotguard-dead-lettered-at"]
            bytes = d.body.count
        }
    }

    /// Every dead letter now in the queue (at most `limit`), optionally only those of `queue`.
    public static func list(endpoint: AMQPEndpoint, queue: String? = nil, limit: Int = 10_000, logger: Logger) async throws -> [Letter] {
        try await read(endpoint: endpoint, limit: limit, logger: logger) { deliveries, _ in
            deliveries.map(Letter.init).filter { queue == nil || $0.queue == queue }
        }
    }

    /// Sends the dead letters of `queue` (all of them, or those whose message id is in `ids`)
    /// back to it; returns those replayed. Each is acked only after the broker confirmed its replay.
    public static func replay(
        endpoint: AMQPEndpoint, queue: String, ids: Set<String>? = nil, limit: Int = 10_000, logger: Logger
    ) async throws -> [Letter] {
        try await read(endpoint: endpoint, limit: limit, logger: logger) { deliveries, worker in
            var replayed: [Letter] = []
            for d in deliveries {
                let letter = Letter(d)
                guard letter.queue == queue, ids.map({ letter.messageId.map($0.contains) ?? false }) ?? true else { continue }
                var message = OutgoingMessage(exchange: "", routingKey: queue, body: d.body, messageId: d.messageId ?? UUID().uuidString.lowercased())
                message.headers = d.headers.filter { !$0.key.hasPrefix("x-") }
                message.headers[ReplayHeader.routingKey] = d.routingKey
                message.headers[ReplayHeader.exchange] = letter.exchange ?? Topology.eventsExchange
                try await worker.publish(message)
                worker.ack(d)
                replayed.append(letter)
            }
            return replayed
        }
    }

    /// Takes the queue's ready messages (until none came for `idle`), runs `body` on them, and
    /// closes the connection: what `body` did not ack goes back to the queue.
    static func read<T: Sendable>(
        endpoint: AMQPEndpoint, limit: Int, idle: Duration = .milliseconds(500), logger: Logger,
        _ body: @Sendable ([Delivery], AMQPWorker) async throws -> T
    ) async throws -> T {
        let received = Mutex<[Delivery]>([])
        let worker = AMQPWorker(
            endpoint: endpoint, topology: Topology(queues: []),
            role: ConnectionRole(
                confirms: true, consume: .init(queue: Topology.deadLetterQueue, prefetch: UInt16(clamping: limit), noAck: false)),
            confirmTimeout: .seconds(10), logger: logger, onDelivery: { d in received.withLock { $0.append(d) } })
        worker.start()
        let deadline = ContinuousClock.now + endpoint.connectTimeout * 2
        while !worker.isConnected {
            guard ContinuousClock.now < deadline else {
                await worker.stop()
                throw BusError(.notConnected, "no connection to \(endpoint)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        var seen = -1
        while seen != received.withLock({ $0.count }), seen < limit {
            seen = received.withLock { $0.count }
            try await Task.sleep(for: idle)
        }
        do {
            let result = try await body(received.withLock { $0 }, worker)
            await worker.stop()
            return result
        } catch {
            await worker.stop()
            throw error
        }
    }
}
