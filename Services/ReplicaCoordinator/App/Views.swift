import Foundation
import ReplicaCore
import SpotModels

// Request bodies (snake_case on the wire). Every field is optional in Swift so a missing one
// is reported by the coordinator's own checks with its field name.

struct CreateReplicaBody: Decodable {
    var poolId: String?
    var excludeZones: [String]?
    var maxHourlyCost: Double?
    var createdBy: String?
    var tags: JSONValue?
}

struct PromoteBody: Decodable {
    var demoteOldPrimary: Bool?
    var waitForSync: Bool?
}

struct EmergencyBody: Decodable {
    var signalType: String?
    var terminationTime: Date?
    var instanceId: String?
    var poolId: String?
    var preferredZones: [String]?
    var excludeZones: [String]?
    var urgency: String?
}

struct TerminationBody: Decodable {
    var instanceId: String?
    var terminationTime: Date?
    var replicaId: UUID?
}

struct InterruptionBody: Decodable {
    var signalType: String?
    var signalTime: Date?
    /// Seed 002's form: seconds since 1970.
    var timestamp: Double?
    var terminationTime: Date?
    var instanceId: String?
    var replicaId: UUID?
}

struct SyncBody: Decodable {
    var syncStatus: String?
    /// The version of the workload's state the replica holds (`state_versions`), if any.
    var stateVersion: Int64?
    var syncLatencyMs: Int?
    var stateTransferProgress: Double?
    var status: String?
    var instanceId: String?
}

struct CommandResultBody: Decodable {
    var status: String?
    var instanceId: String?
    var errorMessage: String?
    var result: JSONValue?
}

// Command payloads and events.

struct LaunchPayload: Encodable {
    var replicaId: UUID
    var replicaType: String
    var poolId: String
    var instanceType: String
    var region: String
    var az: String
}

struct PromotePayload: Codable {
    var replicaId: UUID
    var oldInstanceId: String?
    var newInstanceId: String
    var trigger: SwitchTrigger
    /// Where the workload's traffic enters: the promoted agent moves it to its instance.
    var traffic: TrafficConfig
    /// A failover whose completion waits for the traffic: its interruption event and time.
    var eventId: UUID?
    var failoverTimeMs: Int?
    var completesFailover: Bool
}

/// The old primary's fence: its stop hook runs once its target groups drained it.
struct FencePayload: Codable {
    var instanceId: String
    var newInstanceId: String
    var drainSeconds: Int
    var reason: String
}

struct TrafficView: Encodable {
    var agentId: UUID
    var traffic: TrafficConfig
}

struct ConfigChanged: Codable, Sendable {
    var agentId: UUID
    var clientId: UUID
    var changes: [String: JSONValue]
}

// Answers (seed 000's shapes, plus what an operator needs).

struct PoolView: Encodable {
    var id: String
    var name: String
    var instanceType: String
    var region: String
    var az: String

    init?(_ id: String?) {
        guard let id, let pool = PoolID(rawValue: id) else { return nil }
        self.id = id
        name = id
        instanceType = pool.instanceType.rawValue
        region = pool.region.rawValue
        az = pool.az.rawValue
    }
}

struct ReplicaView: Encodable {
    struct Cost: Encodable {
        var hourly: Double?
        var total: Double?
    }
    var id: UUID
    var instanceId: String?
    var type: String
    var status: String
    var syncStatus: String
    var syncLatencyMs: Int?
    var stateTransferProgress: Double
    /// The version of the workload's state the replica holds, and since when it lacks a newer one.
    var stateVersion: Int64?
    var stateLagSeconds: Double?
    var pool: PoolView?
    var cost: Cost
    var createdBy: String
    var createdAt: Date
    var readyAt: Date?
    var promotedAt: Date?
    var terminatedAt: Date?
    var failureReason: String?
    var ageSeconds: Int
    var isActive: Bool
    var tags: JSONValue

    init(_ r: ReplicaRecord) {
        id = r.id
        instanceId = r.instanceId
        type = r.type.rawValue
        status = r.status.rawValue
        syncStatus = r.lifecycle.syncStatus.rawValue
        syncLatencyMs = r.syncLatencyMs
        stateTransferProgress = r.progress
        stateVersion = r.stateVersion
        stateLagSeconds = r.stateLagSeconds
        pool = PoolView(r.poolId)
        let end = r.terminatedAt ?? r.promotedAt ?? Date()
        let hours = max(0, end.timeIntervalSince(r.createdAt)) / 3600
        cost = Cost(hourly: r.hourlyCost, total: r.hourlyCost.map { ($0 * hours * 10_000).rounded() / 10_000 })
        createdBy = r.createdByUser ?? r.createdBy
        createdAt = r.createdAt
        readyAt = r.readyAt
        promotedAt = r.promotedAt
        terminatedAt = r.terminatedAt
        failureReason = r.failureReason
        ageSeconds = Int(max(0, Date().timeIntervalSince(r.createdAt)))
        isActive = r.status.isActive
        tags = r.tags
    }
}

struct ReplicaList: Encodable {
    var replicas: [ReplicaView]
    var total: Int
}

struct Created: Encodable {
    var success = true
    var replicaId: UUID
    /// Null until the agent launched the instance (seed 000 shows a made-up id here).
    var instanceId: String?
    var pool: PoolView?
    var hourlyCost: Double?
    var status: String
    var replicaType: String
    var message: String
    var urgency: String?

    init(_ r: ReplicaRecord, urgency: String? = nil) {
        replicaId = r.id
        instanceId = r.instanceId
        pool = PoolView(r.poolId)
        hourlyCost = r.hourlyCost
        status = r.status.rawValue
        replicaType = r.type.rawValue
        message =
            r.type == .manual
            ? "Replica is launching. Connect your agent to establish sync."
            : "Emergency replica created. Connect immediately for state sync."
        self.urgency = urgency
    }
}

struct PromotedView: Encodable {
    var success = true
    var message = "Replica promoted to primary"
    var replicaId: UUID
    var newInstanceId: String?
    var oldInstanceId: String?
    var demoted: Bool
    var switchTime: Date?

    init(replica: ReplicaRecord, oldInstanceId: String?, demoted: Bool) {
        replicaId = replica.id
        newInstanceId = replica.instanceId
        self.oldInstanceId = oldInstanceId ?? replica.tags["old_instance_id"]?.string
        self.demoted = demoted
        switchTime = replica.promotedAt ?? Date()
    }
}

struct Terminated: Encodable {
    var success = true
    var message = "Replica terminated"
    var replicaId: UUID
    var terminatedAt: Date
}

struct SyncAnswer: Encodable {
    var success = true
    var message = "Sync status updated"
    var replicaId: UUID
    var status: String
    var syncStatus: String
    var stateVersion: Int64?
    var stateLagSeconds: Double
}

struct ModesView: Encodable {
    var manualReplicaEnabled: Bool
    var autoSwitchEnabled: Bool
    var autoTerminateEnabled: Bool
    var autoReplicaEnabled: Bool
    var terminateWaitSeconds: Int

    init(_ a: AgentRecord) {
        manualReplicaEnabled = a.manualReplicaEnabled
        autoSwitchEnabled = a.autoSwitchEnabled
        autoTerminateEnabled = a.autoTerminateEnabled
        autoReplicaEnabled = a.autoReplicaEnabled
        terminateWaitSeconds = a.terminateWaitSeconds
    }
}

struct ModeChanged: Encodable {
    var success = true
    var manualReplicaEnabled: Bool
    var replica: ReplicaView?
    var terminatedReplicas: Int?
}

struct Switched: Encodable {
    var success = true
    var message = "Switched to the replica; a new replica is launching"
    var oldInstanceId: String?
    var newInstanceId: String?
    var promotedReplicaId: UUID
    var newReplicaId: UUID?
}

struct ResultAnswer: Encodable {
    var success = true
    var commandId: UUID
    var status: CommandStatus
}

struct LastInterruption: Encodable {
    var signalType: String
    var detectedAt: Date
    var action: String?
    var riskScore: Double?
    var failoverTimeMs: Int?
    var success: Bool?
}

struct PriceView: Encodable {
    var spotPrice: Double
    var confidence: Double
    var dataSource: String
}

struct SEFStatus: Encodable {
    var agentId: UUID
    var instanceId: String?
    var poolId: String?
    var status: AgentStatus
    var modes: ModesView
    var replicas: [ReplicaView]
    var lastInterruption: LastInterruption?
    var lastFailoverAt: Date?
    var currentPrice: PriceView?
}
