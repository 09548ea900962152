import DecisionCore
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import SpotBus
import SpotFleet
import SpotMarket
import SpotModels
import SpotRuntime
import SpotStore
import Synchronization

/// Everything one `spotguard-decisions` process runs: the pass loop, the consumer of
/// `spotguard.decisions`, the outbox relay (command wake-ups) and health/metrics over HTTP.
///
/// Switch reports are recorded as they come; interruption signals make the next pass run at
/// once; clean prices are read from the database at pass time, so their messages are only
/// acknowledged.
public struct DecisionService: Sendable {
    public let pass: DecisionPass
    let loop: PassLoop
    let relay: OutboxRelay
    let consumer: BusConsumer
    let publisher: BusPublisher

    public init(configuration: DecisionConfiguration, store: PostgresStore, amqp: AMQPEndpoint, bands: [String: [String: AdvisorBand]], logger: Logger) {
        publisher = BusPublisher(endpoint: amqp, logger: logger)
        let relay = OutboxRelay(store: store, publisher: publisher, logger: logger, name: configuration.workerName)
        self.relay = relay
        pass = DecisionPass(store: store, configuration: configuration, bands: bands)
        let savings = SavingsAccounting(store: store, interval: configuration.savingsInterval, workerName: configuration.workerName)
        let loop = PassLoop(pass: pass, savings: savings, tick: configuration.tick, notify: { relay.notify() }, logger: logger)
        self.loop = loop
        let recorder = SwitchRecorder()
        consumer = BusConsumer(endpoint: amqp, configuration: .init(queue: "spotguard.decisions"), deadLetters: publisher, logger: logger) {
            delivery in
            switch delivery.routingKey {
            case RoutingKey.switchReported:
                let report = try delivery.decode(SwitchReported.self).payload
                try report.validate()
                try await store.transaction { try recorder.apply(report, on: $0) }
            case RoutingKey.interruptionRebalance, RoutingKey.interruptionTermination:
                loop.wake()
            default:
                break  // clean prices are read from the database at pass time
            }
        }
    }

    public func application(configuration: DecisionConfiguration, store: PostgresStore, logger: Logger) -> some ApplicationProtocol {
        let (consumer, publisher) = (self.consumer, self.publisher)
        return workerApplication(
            name: "spotguard-decisions", host: configuration.host, port: configuration.port, http: configuration.http,
            brokerConnected: { consumer.isConnected && publisher.isConnected }, store: store,
            services: [publisher, relay, consumer, loop, Self.retention(configuration: configuration, store: store, logger: logger)], logger: logger)
    }

    /// The retention job `decisions.retention`: the decision history, and the fleet's finished
    /// commands and event log (their rules are the fleet's; this service runs them).
    public static func retention(configuration: DecisionConfiguration, store: PostgresStore, logger: Logger) -> RetentionService {
        let rules = [
            RetentionRule("agent_decision_history") { conn, cutoff in
                try conn.execute("DELETE FROM agent_decision_history WHERE decided_at < $1", [cutoff])
            },
            // the accounting periods behind savings days long settled
            RetentionRule("replica_cost_log") { conn, cutoff in try conn.execute("DELETE FROM replica_cost_log WHERE period_end < $1", [cutoff]) },
            // after the decision history: the commands of decisions just pruned go in the same run
            RetentionRule("commands") { conn, cutoff in try Commands.prune(before: cutoff, on: conn) },
            RetentionRule("system_events") { conn, cutoff in try SystemEvents.prune(before: cutoff, on: conn) },
        ]
        return RetentionService(
            job: "decisions.retention", rules: rules, policy: configuration.retention, worker: configuration.workerName, store: store,
            logger: logger)
    }
}

/// Runs the pass whenever it is due, or at once when woken, and the savings accounting when due.
final class PassLoop: Service, Sendable {
    let pass: DecisionPass
    let savings: SavingsAccounting
    let notify: @Sendable () -> Void
    let logger: Logger
    let worker: PeriodicWorker
    /// Set by `wake()`: the next pass runs even if not due (waiting for a copy running one).
    private let forceNext = Atomic<Bool>(false)

    init(pass: DecisionPass, savings: SavingsAccounting, tick: Duration, notify: @escaping @Sendable () -> Void, logger: Logger) {
        self.pass = pass
        self.savings = savings
        self.notify = notify
        self.logger = logger
        worker = PeriodicWorker("decision-pass", every: tick, runAtStart: false)
    }

    func wake() {
        forceNext.store(true, ordering: .relaxed)
        worker.wake()
    }

    func run() async throws {
        await worker.run {
            do {
                let force = forceNext.exchange(false, ordering: .relaxed)
                if let summary = try await pass.run(force: force), summary.switches > 0 {
                    notify()
                    logger.info("decision pass", metadata: ["switches": "\(summary.switches)", "agents": "\(summary.agents)", "pools": "\(summary.pools)"])
                }
            } catch {
                logger.warning("decision pass failed", metadata: ["error": "\(error)"])
            }
            do {
                if let summary = try await savings.run(force: false), summary.unpricedHours > 0 {
                    logger.notice("savings: hours without a price left out", metadata: ["hours": "\(summary.unpricedHours)"])
                }
            } catch {
                logger.warning("savings accounting failed", metadata: ["error": "\(error)"])
            }
        }
    }
}
