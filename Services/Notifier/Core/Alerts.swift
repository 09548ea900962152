import Foundation
import SpotModels

/// What one bus event means to a person: a notification to write (or none). Pure, so every
/// mapping is unit-tested without a broker.
public struct NotificationDraft: Sendable, Equatable {
    public enum Severity: String, Sendable {
        case info, warning, critical
    }

    public var clientId: UUID?
    public var agentId: UUID?
    public var severity: Severity
    /// The event type (`failover.completed`, …): what webhook filters match.
    public var eventType: String
    /// A finer kind (`agent_offline`, `interpolated_share`, …).
    public var kind: String
    public var title: String
    public var message: String
    /// Drafts with the same key within the collapse window are one notification counted up;
    /// nil: never collapsed (each failover, each switch is its own).
    public var collapseKey: String?
    public var details: [String: String]

    /// The notification of one event, or nil when the event is not worth one (a promotion that
    /// a `failover.completed` already reports).
    public static func of(routingKey: String, body: Data) throws -> NotificationDraft? {
        let decoder = WireJSON.decoder(routingKey: routingKey)
        func payload<P: Codable & Sendable>(_ type: P.Type) throws -> P { try decoder.decode(Envelope<P>.self, from: body).payload }
        switch routingKey {
        case RoutingKey.qualityAlert:
            return quality(try payload(QualityAlert.self))
        case RoutingKey.failoverCompleted, RoutingKey.failoverFailed, RoutingKey.replicaPromoted:
            return failover(routingKey, try payload(FailoverReport.self))
        case RoutingKey.agentOffline, RoutingKey.replicaAlert:
            return agentAlert(routingKey, try payload(AgentAlert.self))
        case RoutingKey.switchReported:
            let report = try payload(SwitchReported.self)
            try report.validate()
            return switched(report)
        default:
            return nil
        }
    }

    static func quality(_ a: QualityAlert) -> NotificationDraft {
        let severity: Severity = a.severity == "critical" || a.severity == "error" ? .critical : a.severity == "info" ? .info : .warning
        let titles: [QualityAlert.Kind: String] = [
            .interpolatedShare: "Prices mostly interpolated", .gapUnfilled: "Price gap not filled", .rejectedBurst: "Many reports rejected",
        ]
        var details = a.details
        if let pool = a.poolId { details["pool_id"] = pool.rawValue }
        let scope = [a.clientId?.lowercased, a.agentId?.lowercased, a.poolId?.rawValue].map { $0 ?? "-" }.joined(separator: ":")
        return NotificationDraft(
            clientId: a.clientId, agentId: a.agentId, severity: severity, eventType: RoutingKey.qualityAlert, kind: a.kind.rawValue,
            title: titles[a.kind] ?? "Data quality", message: a.message, collapseKey: "quality:\(a.kind.rawValue):\(scope)", details: details)
    }

    static func failover(_ routingKey: String, _ r: FailoverReport) -> NotificationDraft? {
        var details = ["trigger": r.trigger.rawValue]
        details["old_instance_id"] = r.oldInstanceId
        details["new_instance_id"] = r.newInstanceId
        details["replica_id"] = r.replicaId?.lowercased
        details["failover_time_ms"] = r.failoverTimeMs.map(String.init)
        let moved = "\(r.oldInstanceId ?? "the old instance") → \(r.newInstanceId ?? "the replica")"
        switch routingKey {
        case RoutingKey.failoverCompleted:
            let time = r.failoverTimeMs.map { " in \($0) ms" } ?? ""
            return NotificationDraft(
                clientId: r.clientId, agentId: r.agentId, severity: .warning, eventType: routingKey, kind: "failover_completed",
                title: "Failover completed", message: "Termination notice: the workload moved \(moved)\(time).", collapseKey: nil,
                details: details)
        case RoutingKey.failoverFailed:
            return NotificationDraft(
                clientId: r.clientId, agentId: r.agentId, severity: .critical, eventType: routingKey, kind: "failover_failed",
                title: "Failover failed",
                message: "Termination notice for \(r.oldInstanceId ?? "an instance") without a ready replica: \(r.reason ?? "no reason given").",
                collapseKey: nil, details: details)
        default:
            // a failover's promotion is told by failover.completed; a manual or rebalance one here
            guard r.eventId == nil else { return nil }
            return NotificationDraft(
                clientId: r.clientId, agentId: r.agentId, severity: .info, eventType: routingKey, kind: "replica_promoted",
                title: "Replica promoted", message: "The replica took over (\(r.trigger.rawValue)): \(moved).", collapseKey: nil, details: details)
        }
    }

    static func agentAlert(_ routingKey: String, _ a: AgentAlert) -> NotificationDraft {
        var details: [String: String] = [:]
        details["replica_id"] = a.replicaId?.lowercased
        details["since"] = a.since.map(Timestamp.format)
        let offline = routingKey == RoutingKey.agentOffline
        return NotificationDraft(
            clientId: a.clientId, agentId: a.agentId, severity: .warning, eventType: routingKey, kind: a.kind,
            title: offline ? "Agent offline" : "Replica problem", message: a.message,
            collapseKey: "\(routingKey):\(a.kind):\(a.agentId.lowercased)", details: details)
    }

    static func switched(_ s: SwitchReported) -> NotificationDraft {
        func side(_ x: SwitchReported.Side) -> String {
            [x.instanceType?.rawValue, x.az?.rawValue, x.mode.rawValue].compactMap { $0 }.joined(separator: " ")
        }
        var details = ["old_instance_id": s.old.instanceId.rawValue, "new_instance_id": s.new.instanceId.rawValue]
        details["command_id"] = s.commandId?.lowercased
        return NotificationDraft(
            clientId: s.clientId, agentId: s.agentId, severity: .info, eventType: RoutingKey.switchReported, kind: "switch_completed",
            title: "Instance switched",
            message: "\(s.old.instanceId.rawValue) (\(side(s.old))) → \(s.new.instanceId.rawValue) (\(side(s.new))).",
            collapseKey: nil, details: details)
    }
}
