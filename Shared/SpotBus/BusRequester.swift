import Foundation
import Logging
import ServiceLifecycle
import SpotModels
import Synchronization

/// Request/reply over RabbitMQ's direct reply-to: requests carry a correlation id and an
/// expiration equal to the caller's deadline; the reply comes back on this connection.
public final class BusRequester: Service, Sendable {
    public static let replyQueue = "amq.rabbitmq.reply-to"

    final class Waiting: Sendable {
        let continuations = Mutex<[String: CheckedContinuation<Delivery, any Error>]>([:])
        func withLock<T>(_ body: (inout [String: CheckedContinuation<Delivery, any Error>]) -> T) -> T {
            continuations.withLock { body(&$0) }
        }
    }

    let worker: AMQPWorker
    private let waiting: Waiting

    public init(endpoint: AMQPEndpoint, topology: Topology = .standard, logger: Logger) {
        let waiting = Waiting()
        self.waiting = waiting
        self.worker = AMQPWorker(
            endpoint: endpoint, topology: topology,
            role: ConnectionRole(confirms: true, consume: .init(queue: Self.replyQueue, prefetch: 0, noAck: true)),
            confirmTimeout: .seconds(5), logger: logger,
            onDelivery: { reply in
                guard let id = reply.correlationId, let c = waiting.withLock({ $0.removeValue(forKey: id) }) else { return }
                c.resume(returning: reply)
            })
    }

    public var isConnected: Bool { worker.isConnected }
    public func run() async throws { await worker.runUntilGracefulShutdown() }
    public func start() { worker.start() }
    public func shutdown() async { await worker.stop() }

    /// Sends `body` under `routingKey` and waits for the reply until `deadline`.
    public func request(routingKey: String, body: [UInt8], deadline: Duration) async throws -> Delivery {
        let correlationId = UUID().uuidString.lowercased()
        var message = OutgoingMessage(routingKey: routingKey, body: body, messageId: correlationId)
        message.replyTo = Self.replyQueue
        message.correlationId = correlationId
        message.persistent = false
        let (seconds, atto) = deadline.components
        message.expirationMs = Int(seconds) * 1000 + Int(atto / 1_000_000_000_000_000)
        let request = message
        return try await withThrowingTaskGroup(of: Delivery?.self) { group in
            group.addTask {
                try await withCheckedThrowingContinuation { c in
                    self.waiting.withLock { $0[correlationId] = c }
                    Task {
                        do { try await self.worker.publish(request) } catch { self.fail(correlationId, error) }
                    }
                }
            }
            group.addTask {
                // the deadline fails the waiting request (a no-op once it was answered)
                try? await Task.sleep(for: deadline)
                self.fail(correlationId, BusError(.replyTimeout, "no reply within \(deadline)"))
                return nil
            }
            defer { group.cancelAll() }
            while let outcome = try await group.next() {
                if let reply = outcome { return reply }
            }
            throw BusError(.replyTimeout, "no reply within \(deadline)")
        }
    }

    private func fail(_ correlationId: String, _ error: any Error) {
        waiting.withLock { $0.removeValue(forKey: correlationId) }?.resume(throwing: error)
    }

}

extension BusConsumer {
    /// A consumer that answers requests: the handler's result goes back to the requester.
    public static func responder(
        endpoint: AMQPEndpoint, topology: Topology = .standard, configuration: Configuration, publisher: BusPublisher,
        logger: Logger, handler: @escaping @Sendable (Delivery) async throws -> [UInt8]
    ) -> BusConsumer {
        BusConsumer(endpoint: endpoint, topology: topology, configuration: configuration, deadLetters: publisher, logger: logger) {
            request in
            let reply = try await handler(request)
            guard let replyTo = request.replyTo, let correlationId = request.correlationId else { return }
            var message = OutgoingMessage(exchange: "", routingKey: replyTo, body: reply, messageId: UUID().uuidString.lowercased())
            message.correlationId = correlationId
            message.persistent = false
            // a requester that gave up has no reply queue any more: the broker drops the reply
            message.mandatory = false
            try await publisher.publish(message)
        }
    }
}
