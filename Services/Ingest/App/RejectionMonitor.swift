import Foundation
import Logging
import SpotBus
import SpotModels
import Synchronization

/// Counts each client's rejected submissions (4xx for bad input) per minute and raises one
/// `quality.alert` (`rejected_burst`) when a client passes the threshold within a minute: a
/// misbehaving or misconfigured agent fleet shows up before its data is missed.
final class RejectionMonitor: Sendable {
    struct Window {
        var minute: Int64
        var count: Int
        var reasons: [String: Int]
        var alerted: Bool
    }

    let threshold: Int
    let publisher: BusPublisher
    let logger: Logger
    private let windows = Mutex<[UUID: Window]>([:])

    init(threshold: Int, publisher: BusPublisher, logger: Logger) {
        self.threshold = threshold
        self.publisher = publisher
        self.logger = logger
    }

    /// Records one rejection; returns the alert when this one crossed the threshold.
    func record(client: UUID, reason: String, now: Date = Date()) -> QualityAlert? {
        let minute = Int64(now.timeIntervalSince1970 / 60)
        let crossed = windows.withLock { all -> Window? in
            if all.count > 10_000 { all = all.filter { $0.value.minute == minute } }
            var w = all[client].flatMap { $0.minute == minute ? $0 : nil } ?? Window(minute: minute, count: 0, reasons: [:], alerted: false)
            w.count += 1
            w.reasons[reason, default: 0] += 1
            let fire = !w.alerted && w.count >= threshold
            if fire { w.alerted = true }
            all[client] = w
            return fire ? w : nil
        }
        guard let w = crossed else { return nil }
        let top = w.reasons.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.prefix(3).map { "\($0.key)=\($0.value)" }
        return QualityAlert(
            kind: .rejectedBurst, severity: "warning", clientId: client,
            message: "\(w.count) submissions rejected within a minute (\(top.joined(separator: ", ")))",
            details: ["rejected": String(w.count), "top_reasons": top.joined(separator: ",")], detectedAt: now)
    }

    /// Records the rejection and, when it crossed the threshold, publishes the alert without
    /// holding up the caller's answer.
    func reject(client: UUID, reason: String) {
        guard let alert = record(client: client, reason: reason) else { return }
        let (publisher, logger) = (self.publisher, self.logger)
        Task {
            do {
                try await publisher.publish(Envelope(type: RoutingKey.qualityAlert, producer: "spotguard-ingest", payload: alert))
            } catch {
                logger.warning("could not publish a rejected-data alert", metadata: ["bus.error": "\(error)"])
            }
        }
    }
}
