import Foundation
import SpotModels

/// What the coordinator does about a termination notice (two minutes left), decided from what
/// it read under the agent's lock: the notice, the event already recorded for it (a repeat),
/// and the agent's active replicas. The shell records, promotes, launches and answers as the
/// plan says.
public enum FailoverPlan: Equatable, Sendable {
    /// The notice was answered with a promotion before: the same answer again, nothing more.
    case alreadyPromoted
    /// The instance being reclaimed is this replica's, not the primary's: the replica is lost.
    case replicaLost(UUID)
    /// The instance is neither the agent's primary nor one of its replicas.
    case notPrimary
    /// The replica the agent named is not active for it.
    case namedReplicaNotActive(UUID)
    /// Promote this ready replica now.
    case promote(UUID)
    /// No ready replica. On the first notice the agent is told to snapshot and an emergency
    /// replica is launched unless `emergency` exists already; a repeat answers the same.
    case noReadyReplica(emergency: UUID?, firstNotice: Bool)

    /// A replica as the plan needs it.
    public struct Replica: Equatable, Sendable {
        public var id: UUID
        public var type: ReplicaType
        public var status: ReplicaStatus
        public var instanceId: String?
        public var readyAt: Date?

        public init(id: UUID, type: ReplicaType, status: ReplicaStatus, instanceId: String?, readyAt: Date?) {
            self.id = id
            self.type = type
            self.status = status
            self.instanceId = instanceId
            self.readyAt = readyAt
        }
    }

    /// The notice and what was recorded for it before.
    public struct Notice: Equatable, Sendable {
        /// The instance being reclaimed.
        public var instance: String
        /// The agent's primary instance.
        public var primary: String?
        /// The recorded event's response (`recorded`, `replica_promoted`,
        /// `emergency_snapshot_required`); nil for a first notice.
        public var recordedAction: String?
        /// The replica the recorded event names (an emergency replica launched before).
        public var recordedReplica: UUID?
        /// The replica the agent asks to be promoted, if it names one.
        public var named: UUID?

        public init(instance: String, primary: String?, recordedAction: String?, recordedReplica: UUID?, named: UUID?) {
            self.instance = instance
            self.primary = primary
            self.recordedAction = recordedAction
            self.recordedReplica = recordedReplica
            self.named = named
        }
    }

    public static func decide(_ notice: Notice, active: [Replica]) -> FailoverPlan {
        if notice.recordedAction == "replica_promoted" { return .alreadyPromoted }
        if notice.recordedAction == nil, notice.instance != notice.primary {
            // a replica's instance being reclaimed is a lost replica, not a failover
            if let lost = active.first(where: { $0.instanceId == notice.instance }) { return .replicaLost(lost.id) }
            return .notPrimary
        }
        let candidate: Replica?
        if let named = notice.named {
            guard let replica = active.first(where: { $0.id == named }) else { return .namedReplicaNotActive(named) }
            candidate = replica.status == .ready ? replica : nil
        } else {
            // the freshest ready replica with an instance; manual ones were kept warm on purpose
            candidate = active.filter { $0.status == .ready && $0.instanceId != nil }
                .min { ($0.type == .manual ? 0 : 1, $1.readyAt ?? .distantPast) < ($1.type == .manual ? 0 : 1, $0.readyAt ?? .distantPast) }
        }
        if let candidate { return .promote(candidate.id) }
        return .noReadyReplica(
            emergency: active.first { $0.type == .automaticTermination }?.id ?? notice.recordedReplica,
            firstNotice: notice.recordedAction == nil || notice.recordedAction == "recorded")
    }
}
