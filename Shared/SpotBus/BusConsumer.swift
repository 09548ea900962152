import Foundation
import Logging
import Metrics
import ServiceLifecycle
import SpotModels
import Synchronization

/// Consumes one queue on its own connection with manual acks and a bounded prefetch.
///
/// A delivery is acked only after its handler returned (for services: after their database
/// commit). A handler that throws gets the message back after a short backoff, up to
/// `Topology.maxHandlerAttempts` deliveries; then the message is published to `spotguard.dlx`
/// with the failure reason in `x-spotguard-error` and acked. The queue's own
/// `x-delivery-limit` catches messages whose handler crashes the process every time.
public final class BusConsumer: Service, Sendable {
    public typealias Handler = @Sendable (Delivery) async throws -> Void

    public struct Configuration: Sendable {
        public var queue: String
        public var prefetch: UInt16 = 100
        /// Deliveries handled at once.
        public var concurrency = 1
        public var maxAttempts = Topology.maxHandlerAttempts
        public var retryBackoff: Duration = .milliseconds(100)

        public init(queue: String) {
            self.queue = queue
        }
    }

    let configuration: Configuration
    let worker: AMQPWorker
    let deadLetters: BusPublisher
    let handler: Handler
    let logger: Logger
    private let stream: AsyncStream<Delivery>
    private let input: AsyncStream<Delivery>.Continuation

    /// - Parameter deadLetters: the service's publisher, used to dead-letter with a reason.
    public init(
        endpoint: AMQPEndpoint, topology: Topology = .standard, configuration: Configuration, deadLetters: BusPublisher,
        logger: Logger, handler: @escaping Handler
    ) {
        self.configuration = configuration
        self.deadLetters = deadLetters
        self.handler = handler
        self.logger = logger
        let (stream, input) = AsyncStream.makeStream(of: Delivery.self)
        self.stream = stream
        self.input = input
        self.worker = AMQPWorker(
            endpoint: endpoint, topology: topology,
            role: ConnectionRole(confirms: false, consume: .init(queue: configuration.queue, prefetch: configuration.prefetch, noAck: false)),
            confirmTimeout: .seconds(5), logger: logger, onDelivery: { input.yield($0) })
    }

    public var isConnected: Bool { worker.isConnected }

    public func run() async throws {
        worker.start()
        await withDiscardingTaskGroup { group in
            var running = 0
            let done = AsyncStream.makeStream(of: Void.self)
            var doneIterator = done.stream.makeAsyncIterator()
            for await delivery in stream.cancelOnGracefulShutdown() {
                if running >= configuration.concurrency {
                    await doneIterator.next()
                    running -= 1
                }
                // a delivery taken while waiting for a free slot is not started after shutdown
                // began: it goes back to the queue when the connection closes
                if Task.isShuttingDownGracefully { break }
                running += 1
                group.addTask {
                    await self.handle(delivery)
                    done.continuation.yield()
                }
            }
            // graceful shutdown: take no more deliveries; the group waits for running handlers
            await worker.cancelConsumer()
        }
        await worker.stop()
        input.finish()
    }

    func handle(_ delivery: Delivery) async {
        do {
            try await handler(delivery)
            worker.ack(delivery)
            Counter(label: "spotguard_bus_consumed_total", dimensions: [("queue", configuration.queue)]).increment()
        } catch {
            let attempt = delivery.deliveryCount + 1
            logger.warning(
                "message handler failed",
                metadata: [
                    "bus.queue": "\(configuration.queue)", "bus.message_id": "\(delivery.messageId ?? "-")",
                    "bus.attempt": "\(attempt)", "bus.error": "\(error)",
                ])
            if attempt >= configuration.maxAttempts {
                await deadLetter(delivery, reason: "\(error)", attempts: attempt)
            } else {
                try? await Task.sleep(for: configuration.retryBackoff * attempt)
                worker.nack(delivery, requeue: true)
            }
        }
    }

    private func deadLetter(_ delivery: Delivery, reason: String, attempts: Int) async {
        var message = OutgoingMessage(
            exchange: Topology.deadLetterExchange, routingKey: delivery.routingKey, body: delivery.body,
            messageId: delivery.messageId ?? UUID().uuidString.lowercased())
        message.headers = delivery.headers.filter { !$0.key.hasPrefix("x-") }
        message.headers["x-spotguard-error"] = String(reason.prefix(1000))
        message.headers["x-spotguard-queue"] = configuration.queue
        message.headers["x-spotguard-attempts"] = String(attempts)
        message.headers["x-spotguard-exchange"] = delivery.exchange
        do {
            try await deadLetters.publish(message)
            worker.ack(delivery)
            Counter(label: "spotguard_bus_dead_lettered_total", dimensions: [("queue", configuration.queue)]).increment()
            logger.error("message dead-lettered", metadata: ["bus.queue": "\(configuration.queue)", "bus.reason": "\(reason)"])
        } catch {
            // keep it: the broker's delivery limit dead-letters it if this keeps failing
            worker.nack(delivery, requeue: true)
        }
    }
}
