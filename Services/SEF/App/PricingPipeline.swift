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

    struct UnknownMessage: Error, CustomStringConvertible {
        var routingKey: String
        var description: String { "no handler for routing key '\(routingKey)'" }
    }

    public func handle(_ batch: [Delivery]) async throws {
        var rows: [SubmissionRow] = []
        var beats: [HeartbeatReceived] = []
        var accepted: [Date] = []
        let now = Date()
        let clock = ContinuousClock.now
        for delivery in batch {
            switch delivery.routingKey {
            case RoutingKey.pricingReported:
                let envelope = try delivery.decode(PricingReported.self)
                // refused here, at the first delivery, rather than by a database CHECK after retries
                try envelope.payload.validate()
                rows += SubmissionRow.rows(of: envelope.payload)
                accepted.append(envelope.payload.receivedAt)
                Timer(label: "spotguard_sef_consumer_lag_seconds").recordSeconds(max(0, now.timeIntervalSince(envelope.occurredAt)))
            case RoutingKey.heartbeatReceived:
                let envelope = try delivery.decode(HeartbeatReceived.self)
                beats.append(envelope.payload)
                Timer(label: "spotguard_sef_consumer_lag_seconds").recordSeconds(max(0, now.timeIntervalSince(envelope.occurredAt)))
            default:
                throw UnknownMessage(routingKey: delivery.routingKey)
            }
        }
        let decoded = ContinuousClock.now
        Timer(label: "spotguard_sef_phase_seconds", dimensions: [("phase", "decode")]).record(duration: decoded - clock)
        // a database outage is thrown as a transient failure: the consumer holds the batch
        let report = try await apply(rows, beats)
        Timer(label: "spotguard_sef_phase_seconds", dimensions: [("phase", "transaction")]).record(duration: ContinuousClock.now - decoded)
        // from ingest's 202 to the clean row committed (same host clock)
        let committed = Date()
        let latency = Timer(label: "spotguard_sef_accept_to_commit_seconds")
        for t in accepted { latency.recordSeconds(max(0, committed.timeIntervalSince(t))) }
        Counter(label: "spotguard_sef_points_total").increment(by: report.newSubmissions)
        Counter(label: "spotguard_sef_redelivered_total").increment(by: report.redelivered)
        Counter(label: "spotguard_sef_duplicates_total").increment(by: max(0, report.duplicatesMarked))
        Counter(label: "spotguard_sef_heartbeats_total").increment(by: report.heartbeatsApplied)
        Self.recordFills(report)
    }

    /// One transaction for the whole batch; returns what changed.
    func apply(_ rows: [SubmissionRow], _ beats: [HeartbeatReceived]) async throws -> ApplyReport {
        let pools = Array(Set(rows.map(\.pool) + Heartbeats.pools(of: beats)))
        let unknown = knownPools.withLock { known in pools.filter { !known.contains($0.rawValue) } }
        let prices = self.prices
        let report = try await store.transaction { conn in
            // their scan rows are added by the next maintenance round, like those of pools created elsewhere
            try Pools.ensure(unknown, on: conn)
            var report = try prices.applySubmissions(rows, on: conn)
            report.heartbeatsApplied = try Heartbeats.apply(beats, on: conn)
            try Self.publish(report, on: conn)
            return report
        }
        knownPools.withLock { known in known.formUnion(unknown.map(\.rawValue)) }
        if !report.cleaned.isEmpty || !report.alerts.isEmpty { notify() }
        return report
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
