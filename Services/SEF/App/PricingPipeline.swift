import Foundation
import Metrics
import SEFCore
import ServiceLifecycle
import SpotBus
import SpotFleet
import SpotModels
import SpotRuntime
import SpotStore
import Synchronization

/// The consumer side of the SEF: a batch of `pricing.reported` and `heartbeat.received`
/// messages becomes one transaction, acked only after it committed.
public final class PricingPipeline: Sendable {
    let store: PostgresStore
    let prices: PriceRepository
    /// Wakes the outbox relay after a commit that wrote events.
    let notify: @Sendable () -> Void
    private let knownPools = Mutex<Set<String>>([])

    init(store: PostgresStore, prices: PriceRepository, notify: @escaping @Sendable () -> Void) {
        self.store = store
        self.prices = prices
        self.notify = notify
    }

    /// One handled message of a batch: its rows or heartbeat, and who it says sent it.
    struct Fact: Sendable {
        var index: Int
        var clientId: UUID
        var agentId: UUID
        /// Where the agent is named in the message.
        var agentField = "payload.agent_id"
        var rows: [SubmissionRow] = []
        var beat: HeartbeatReceived?
        var acceptedAt: Date?
    }

    /// Commits the batch's valid messages in one transaction and returns the invalid ones
    /// (undecodable, a broken rule, an agent that is not its client's), which the consumer
    /// dead-letters at once.
    public func handle(_ batch: [Delivery]) async throws -> [Int: ValidationError] {
        var facts: [Fact] = []
        var invalid: [Int: ValidationError] = [:]
        let now = Date()
        let clock = ContinuousClock.now
        let lag = Timer(label: "spotguard_sef_consumer_lag_seconds")
        for (i, delivery) in batch.enumerated() {
            do {
                let fact = try Self.fact(of: delivery, index: i)
                facts.append(fact.fact)
                lag.recordSeconds(max(0, now.timeIntervalSince(fact.occurredAt)))
            } catch {
                guard let reason = BusConsumer.invalid(error) else { throw error }
                invalid[i] = reason
            }
        }
        let decoded = ContinuousClock.now
        Timer(label: "spotguard_sef_phase_seconds", dimensions: [("phase", "decode")]).record(duration: decoded - clock)
        // a database outage is thrown as a transient failure: the consumer holds the batch
        let (report, strangers) = try await apply(facts)
        invalid.merge(strangers) { a, _ in a }
        Timer(label: "spotguard_sef_phase_seconds", dimensions: [("phase", "transaction")]).record(duration: ContinuousClock.now - decoded)
        // from ingest's 202 to the clean row committed (same host clock)
        let committed = Date()
        let latency = Timer(label: "spotguard_sef_accept_to_commit_seconds")
        for fact in facts where strangers[fact.index] == nil {
            if let t = fact.acceptedAt { latency.recordSeconds(max(0, committed.timeIntervalSince(t))) }
        }
        Counter(label: "spotguard_sef_points_total").increment(by: report.newSubmissions)
        Counter(label: "spotguard_sef_redelivered_total").increment(by: report.redelivered)
        Counter(label: "spotguard_sef_duplicates_total").increment(by: max(0, report.duplicatesMarked))
        Counter(label: "spotguard_sef_heartbeats_total").increment(by: report.heartbeatsApplied)
        Self.recordFills(report)
        return invalid
    }

    /// Decodes and checks one message; throws `ValidationError` when it is invalid.
    static func fact(of delivery: Delivery, index: Int) throws -> (fact: Fact, occurredAt: Date) {
        switch delivery.routingKey {
        case RoutingKey.pricingReported, RoutingKey.pricingSubmitted:
            let envelope = try delivery.decode(PricingReported.self)
            // refused here, at the first delivery, rather than by a database CHECK after retries
            try envelope.payload.validate()
            let p = envelope.payload
            let fact = Fact(
                index: index, clientId: p.clientId, agentId: p.agentId,
                agentField: p.routingKey == RoutingKey.pricingSubmitted ? "payload.source_agent_id" : "payload.agent_id",
                rows: SubmissionRow.rows(of: p), acceptedAt: p.receivedAt)
            return (fact, envelope.occurredAt)
        case RoutingKey.heartbeatReceived:
            let envelope = try delivery.decode(HeartbeatReceived.self)
            try envelope.payload.validate()
            let beat = envelope.payload
            return (Fact(index: index, clientId: beat.clientId, agentId: beat.agentId, beat: beat), envelope.occurredAt)
        default:
            throw ValidationError(code: "unknown_routing_key", field: "type", message: "the SEF reads no '\(delivery.routingKey.prefix(80))'")
        }
    }

    /// One transaction for the whole batch; returns what changed and the facts refused because
    /// their agent is not their client's (no such agent, or another client's).
    func apply(_ facts: [Fact]) async throws -> (ApplyReport, [Int: ValidationError]) {
        let prices = self.prices
        try await prices.partitions.ensure(buckets: facts.lazy.flatMap(\.rows).map(\.bucket), now: Date(), store: store)
        let (report, strangers, unknown) = try await store.transaction { conn in
            let strangers = try Self.strangers(facts, on: conn)
            let valid = facts.filter { strangers[$0.index] == nil }
            // only pools of facts that are taken; their scan rows are added by the next
            // maintenance round, like those of pools created elsewhere
            let pools = Set(valid.flatMap { $0.rows.map(\.pool) } + Heartbeats.pools(of: valid.compactMap(\.beat)))
            let unknown = self.knownPools.withLock { known in pools.filter { !known.contains($0.rawValue) } }
            try Pools.ensure(Array(unknown), on: conn)
            var report = try prices.applySubmissions(valid.flatMap(\.rows), on: conn)
            report.heartbeatsApplied = try Heartbeats.apply(valid.compactMap(\.beat), on: conn)
            try Self.publish(report, on: conn)
            return (report, strangers, unknown)
        }
        knownPools.withLock { known in known.formUnion(unknown.map(\.rawValue)) }
        if !report.cleaned.isEmpty || !report.alerts.isEmpty { notify() }
        return (report, strangers)
    }

    /// Facts whose agent is not an agent of their client. Ingest only publishes an agent's
    /// facts under its own client; a publisher on the bus must name both right too.
    static func strangers(_ facts: [Fact], on conn: PGConnection) throws -> [Int: ValidationError] {
        guard !facts.isEmpty else { return [:] }
        var owner: [UUID: UUID] = [:]
        for row in try conn.query("SELECT id, client_id FROM agents WHERE id = ANY($1::uuid[])", [PGArray(Array(Set(facts.map(\.agentId))))]) {
            owner[try row.decode(UUID.self, at: 0)] = try row.decode(UUID.self, at: 1)
        }
        var out: [Int: ValidationError] = [:]
        for fact in facts where owner[fact.agentId] != fact.clientId {
            out[fact.index] = ValidationError(
                code: "unknown_agent", field: fact.agentField, message: "agent \(fact.agentId.lowercased) is not an agent of client \(fact.clientId.lowercased)"
            )
        }
        return out
    }

    /// Writes the report's events to the outbox of the open transaction.
    static func publish(_ report: ApplyReport, on conn: PGConnection) throws {
        if !report.cleaned.isEmpty {
            try Outbox.append(
                Envelope(type: RoutingKey.pricingCleaned, producer: "spotguard-sef", payload: PricingCleaned(prices: report.cleaned)),
                on: conn)
        }
        for alert in report.alerts {
            try Outbox.append(Envelope(type: RoutingKey.qualityAlert, producer: "spotguard-sef", payload: alert), on: conn)
        }
    }

    static func recordFills(_ report: ApplyReport) {
        for (method, n) in report.fills {
            Counter(label: "spotguard_sef_interpolations_total", dimensions: [("method", method.rawValue)]).increment(by: n)
        }
    }
}
