import Logging
import Metrics
import ServiceLifecycle
import SpotModels

/// Publishes with confirms and the mandatory flag on its own connection. `publish` returns
/// only after the broker acked the message; a nack, a return (unroutable), a timeout or a lost
/// connection throw `BusError`. Any number of publishes may await confirms at once.
///
/// As a `Service`, `run()` keeps the connection (reconnecting with backoff) until graceful
/// shutdown, then waits for outstanding confirms before it closes.
public final class BusPublisher: Service, Sendable {
    let worker: AMQPWorker
    private let published = Counter(label: "spotguard_bus_published_total")
    private let logger: Logger

    public init(endpoint: AMQPEndpoint, topology: Topology = .standard, confirmTimeout: Duration = .seconds(5), logger: Logger) {
        self.logger = logger
        self.worker = AMQPWorker(
            endpoint: endpoint, topology: topology, role: ConnectionRole(confirms: true, consume: nil),
            confirmTimeout: confirmTimeout, logger: logger)
    }

    /// True while the connection is up (readiness).
    public var isConnected: Bool { worker.isConnected }
    public func run() async throws { await worker.runUntilGracefulShutdown() }
    /// For code that manages the lifetime itself (tools, tests): start now, `shutdown()` later.
    public func start() { worker.start() }
    public func shutdown() async { await worker.stop() }

    public func publish(_ message: OutgoingMessage) async throws {
        do {
            try await worker.publish(message)
            published.increment()
            BusTap.shared?.record(.published, exchange: message.exchange, routingKey: message.routingKey, body: message.body)
        } catch let error as BusError {
            Counter(label: "spotguard_bus_publish_failures_total", dimensions: [("code", error.code.rawValue)]).increment()
            throw error
        }
    }

    public func publish<P>(_ envelope: Envelope<P>) async throws {
        try await publish(OutgoingMessage(envelope: envelope))
    }

    /// Deletes a queue (tests and tools).
    public func deleteQueue(_ name: String) async throws { try await worker.deleteQueue(name) }
}

extension AMQPWorker {
    /// The `run()` of a service that is one connection: connect, keep the connection until
    /// graceful shutdown, then close it.
    func runUntilGracefulShutdown() async {
        start()
        try? await gracefulShutdown()
        await stop()
    }
}
