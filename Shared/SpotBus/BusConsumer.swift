import Foundation
import Logging
import Metrics
import ServiceLifecycle
import SpotModels
import Synchronization

/// Consumes one queue on its own connection with manual acks and a bounded prefetch.
///
/// Deliveries are handed to the handler in batches of up to `maxBatch` (1 by default; a
/// service that commits several messages in one database transaction asks for more). A
/// delivery is acked only after its handler returned (for services: after their database
/// commit). What happens when the handler throws depends on why:
///
/// - a dependency is out (`TransientFailure`: the database restarting, the broker pushing
///   back): the batch is held — not handed back, so no delivery limit counts it — and tried
///   again with backoff (up to `outageBackoffCap`) until it succeeds or the service shuts down
///   (then it goes back to the queue unacked). An outage of any length dead-letters nothing.
/// - the message cannot be decoded or breaks a domain rule (`ValidationError`): it is
///   dead-lettered at once with `invalid_message: <json path>: <rule>`; no retry would change it.
///   A batch handler names its invalid messages in its result and commits the others, so one
///   invalid message costs the rest of its batch nothing.
/// - anything else: each message of the batch is retried on its own, so one poison message
///   cannot hold the others back, up to `maxAttempts` deliveries; then it is published to
///   `spotguard.dlx` with the reason in `x-spotguard-error` and acked.
///
/// The queue's own `x-delivery-limit` catches messages whose handler crashes the process every
/// time. Dead letters are kept in `spotguard.dead-letters`; `DeadLetters` lists and replays them.
public final class BusConsumer: Service, Sendable {
    public typealias Handler = @Sendable (Delivery) async throws -> Void
    /// Returns the invalid messages of the batch (by index) with why; it handled all others.
    public typealias BatchHandler = @Sendable ([Delivery]) async throws -> [Int: ValidationError]

    public struct Configuration: Sendable {
        public var queue: String
        public var prefetch: UInt16 = 100
        /// Batches handled at once.
        public var concurrency = 1
        /// Most deliveries handed to the handler at once; never more than `prefetch`.
        public var maxBatch = 1
        /// How long a batch that is not full waits for more deliveries.
        public var batchLinger: Duration = .milliseconds(5)
        public var maxAttempts = Topology.maxHandlerAttempts
        public var retryBackoff: Duration = .milliseconds(100)
        /// Longest pause between attempts while a dependency is out.
        public var outageBackoffCap: Duration = .seconds(5)

        public init(queue: String) {
            self.queue = queue
        }
    }

    let configuration: Configuration
    let worker: AMQPWorker
    let deadLetters: BusPublisher
    let handler: BatchHandler
    let logger: Logger
    private let pending: DeliveryBuffer

    /// - Parameter deadLetters: the service's publisher, used to dead-letter with a reason.
    public init(
        endpoint: AMQPEndpoint, topology: Topology = .standard, configuration: Configuration, deadLetters: BusPublisher,
        logger: Logger, batchHandler: @escaping BatchHandler
    ) {
        self.configuration = configuration
        self.deadLetters = deadLetters
        self.handler = batchHandler
        self.logger = logger
        let pending = DeliveryBuffer()
        self.pending = pending
        self.worker = AMQPWorker(
            endpoint: endpoint, topology: topology,
            role: ConnectionRole(confirms: false, consume: .init(queue: configuration.queue, prefetch: configuration.prefetch, noAck: false)),
            confirmTimeout: .seconds(5), logger: logger, onDelivery: { pending.push($0) })
    }

    public convenience init(
        endpoint: AMQPEndpoint, topology: Topology = .standard, configuration: Configuration, deadLetters: BusPublisher,
        logger: Logger, handler: @escaping Handler
    ) {
        self.init(
            endpoint: endpoint, topology: topology, configuration: configuration, deadLetters: deadLetters, logger: logger,
            batchHandler: { batch in
                var invalid: [Int: ValidationError] = [:]
                for (i, delivery) in batch.enumerated() {
                    do {
                        try await handler(delivery)
                    } catch {
                        guard let reason = Self.invalid(error) else { throw error }
                        invalid[i] = reason
                    }
                }
                return invalid
            })
    }

    public var isConnected: Bool { worker.isConnected }

    public func run() async throws {
        worker.start()
        let maxBatch = max(1, min(configuration.maxBatch, Int(configuration.prefetch)))
        await withDiscardingTaskGroup { group in
            var running = 0
            let done = AsyncStream.makeStream(of: Void.self)
            var doneIterator = done.stream.makeAsyncIterator()
            // graceful shutdown and cancellation both end the intake
            await withTaskCancellationHandler {
                await withGracefulShutdownHandler {
                    while true {
                        if running >= configuration.concurrency {
                            await doneIterator.next()
                            running -= 1
                        }
                        // deliveries taken after shutdown began are not started: they go back to
                        // the queue when the connection closes
                        guard let batch = await pending.take(max: maxBatch, linger: configuration.batchLinger),
                            !Task.isShuttingDownGracefully
                        else { break }
                        running += 1
                        group.addTask {
                            await self.handle(batch)
                            done.continuation.yield()
                        }
                    }
                } onGracefulShutdown: {
                    self.pending.finish()
                }
            } onCancel: {
                self.pending.finish()
            }
            // graceful shutdown: take no more deliveries; the group waits for running handlers
            await worker.cancelConsumer()
        }
        await worker.stop()
        pending.finish()
    }

    func handle(_ batch: [Delivery]) async {
        let failure: Failure
        switch await attemptHoldingThroughOutages(batch) {
        case .handled(let invalid):
            await settle(batch, invalid: invalid)
            return
        case .failed(let f): failure = f
        }
        if case .shutdown = failure { return }  // unacked: back to the queue when the connection closes
        if batch.count > 1 {
            logger.warning(
                "batch handler failed; retrying its messages one by one",
                metadata: ["bus.queue": "\(configuration.queue)", "bus.batch": "\(batch.count)", "bus.error": "\(failure)"])
            for delivery in batch { await handleOne(delivery) }
        } else {
            await failed(batch[0], failure)
        }
    }

    private func handleOne(_ delivery: Delivery) async {
        switch await attemptHoldingThroughOutages([delivery]) {
        case .handled(let invalid): await settle([delivery], invalid: invalid)
        case .failed(.shutdown): return
        case .failed(let failure): await failed(delivery, failure)
        }
    }

    /// Acks what the handler handled and dead-letters what it found invalid.
    private func settle(_ batch: [Delivery], invalid: [Int: ValidationError]) async {
        var handled = 0
        for (i, delivery) in batch.enumerated() {
            if let reason = invalid[i] {
                await deadLetter(delivery, reason: Self.reason(reason), attempts: delivery.deliveryCount + 1)
            } else {
                worker.ack(delivery)
                BusTap.shared?.record(.consumed, delivery)
                handled += 1
            }
        }
        Counter(label: "spotguard_bus_consumed_total", dimensions: [("queue", configuration.queue)]).increment(by: handled)
    }

    /// `x-spotguard-error` of an invalid message.
    static func reason(_ invalid: ValidationError) -> String {
        "invalid_message: \(invalid.field ?? "$"): \(invalid.code): \(invalid.message)"
    }

    enum Failure: CustomStringConvertible {
        case shutdown
        case error(any Error)

        var description: String {
            switch self {
            case .shutdown: "shutting down"
            case .error(let e): "\(e)"
            }
        }
    }

    enum Attempt {
        case handled(invalid: [Int: ValidationError])
        case failed(Failure)
    }

    /// Runs the handler; while it fails because a dependency is out, waits and runs it again.
    private func attemptHoldingThroughOutages(_ batch: [Delivery]) async -> Attempt {
        var pause = Duration.milliseconds(200)
        var held = false
        while true {
            do {
                let invalid = try await handler(batch)
                if held {
                    logger.notice("dependency back; held messages handled", metadata: ["bus.queue": "\(configuration.queue)"])
                }
                return .handled(invalid: invalid)
            } catch  where error.isTransientFailure {
                if Task.isShuttingDownGracefully || Task.isCancelled { return .failed(.shutdown) }
                if !held {
                    logger.warning(
                        "a dependency is out; holding messages until it is back",
                        metadata: ["bus.queue": "\(configuration.queue)", "bus.batch": "\(batch.count)", "bus.error": "\(error)"])
                }
                held = true
                Counter(label: "spotguard_bus_outage_retries_total", dimensions: [("queue", configuration.queue)]).increment()
                let wait = pause
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) }
                pause = min(pause * 2, configuration.outageBackoffCap)
            } catch {
                if let invalid = Self.invalid(error), batch.count == 1 { return .handled(invalid: [0: invalid]) }
                return .failed(.error(error))
            }
        }
    }

    /// What is wrong with the message itself, when that is why the handler failed: it cannot be
    /// decoded, or a domain rule refuses it (`ValidationError`). No retry would change it.
    public static func invalid(_ error: any Error) -> ValidationError? {
        if let invalid = error as? ValidationError { return invalid }
        if let decoding = error as? DecodingError { return ValidationError(decoding: decoding) }
        return nil
    }

    /// A message whose handler failed for a reason of its own: given back for another try
    /// until its attempts run out, then dead-lettered with the error.
    private func failed(_ delivery: Delivery, _ failure: Failure) async {
        let attempt = delivery.deliveryCount + 1
        logger.warning(
            "message handler failed",
            metadata: [
                "bus.queue": "\(configuration.queue)", "bus.message_id": "\(delivery.messageId ?? "-")",
                "bus.attempt": "\(attempt)", "bus.error": "\(failure)",
            ])
        if attempt >= configuration.maxAttempts {
            await deadLetter(delivery, reason: "\(failure)", attempts: attempt)
        } else {
            try? await Task.sleep(for: configuration.retryBackoff * attempt)
            worker.nack(delivery, requeue: true)
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
        message.headers["x-spotguard-dead-lettered-at"] = Timestamp.format(Date())
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

extension BusConsumer {
    /// A consumer of a queue of this process's own, bound to `bindings`: for hints every copy
    /// of a service needs (wake-ups, cache invalidations). The queue is transient (gone with
    /// its process); a hint whose handler fails is dropped rather than retried.
    public static func processQueue(
        _ prefix: String, bindings: [String], endpoint: AMQPEndpoint, publisher: BusPublisher, prefetch: UInt16 = 100, logger: Logger,
        handler: @escaping Handler
    ) -> BusConsumer {
        let queue = "\(prefix).\(UUID().uuidString.lowercased())"
        var configuration = Configuration(queue: queue)
        configuration.prefetch = prefetch
        configuration.maxAttempts = 1
        return BusConsumer(
            endpoint: endpoint, topology: .standard.adding(.init(name: queue, bindings: bindings, transient: true)),
            configuration: configuration, deadLetters: publisher, logger: logger, handler: handler)
    }
}

/// Deliveries the connection thread received and no handler has taken yet.
final class DeliveryBuffer: Sendable {
    private struct State {
        var items: [Delivery] = []
        var head = 0
        var waiter: CheckedContinuation<Void, Never>?
        var finished = false
        var count: Int { items.count - head }

        mutating func takeWaiter() -> CheckedContinuation<Void, Never>? {
            defer { waiter = nil }
            return waiter
        }
    }
    private let state = Mutex(State())

    func push(_ delivery: Delivery) {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.items.append(delivery)
            return s.takeWaiter()
        }
        waiter?.resume()
    }

    /// Makes every present and future `take` return nil.
    func finish() {
        state.withLock { s in
            s.finished = true
            return s.takeWaiter()
        }?.resume()
    }

    /// Waits for a delivery, then up to `linger` for the batch to fill; nil once finished.
    func take(max: Int, linger: Duration) async -> [Delivery]? {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { s -> Bool in
                if s.count > 0 || s.finished { return true }
                s.waiter = c
                return false
            }
            if ready { c.resume() }
        }
        if max > 1, state.withLock({ !$0.finished && $0.count < max }) {
            try? await Task.sleep(for: linger)
        }
        return state.withLock { s -> [Delivery]? in
            if s.finished { return nil }
            let n = Swift.min(max, s.count)
            let batch = Array(s.items[s.head..<(s.head + n)])
            s.head += n
            if s.head > 1024 && s.head * 2 > s.items.count {
                s.items.removeFirst(s.head)
                s.head = 0
            }
            return batch
        }
    }
}
