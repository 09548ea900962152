import Foundation

/// Where a replica is in its life (seed 000): launching → syncing → ready → promoted, or
/// terminated / failed from any active state.
public enum ReplicaStatus: String, Codable, Sendable, CaseIterable {
    case launching, syncing, ready, promoted, terminated, failed

    /// Launching, syncing and ready replicas cost money and count as the agent's standby.
    public var isActive: Bool { self == .launching || self == .syncing || self == .ready }
}

public enum ReplicaType: String, Codable, Sendable, CaseIterable {
    case manual
    case automaticRebalance = "automatic-rebalance"
    case automaticTermination = "automatic-termination"
}

public enum SyncStatus: String, Codable, Sendable, CaseIterable {
    case initializing, syncing, synced
    case outOfSync = "out-of-sync"
}

/// The two interruption signals EC2 gives a spot instance.
public enum InterruptionSignal: String, Codable, Sendable, CaseIterable {
    case rebalanceRecommendation = "rebalance-recommendation"
    case terminationNotice = "termination-notice"

    /// A signal as agents name it: seed-written agents say `instance-termination` for a
    /// termination notice, accepted as its alias.
    public init?(named text: String) {
        self.init(rawValue: text == "instance-termination" ? Self.terminationNotice.rawValue : text)
    }
}

/// What an agent is asked to do; it executes with its own instance role (DESIGN principle 5).
public enum CommandKind: String, Codable, Sendable, CaseIterable {
    case launchReplica = "launch_replica"
    case promote, terminate, `switch`, snapshot
    /// Asks a replica's agent how its silent primary's instance is (DescribeInstances).
    case checkPrimary = "check_primary"
    /// The old primary stops serving (its stop hook) once the traffic has left it.
    case fence

    /// A switch or a promotion makes an instance the primary: one issued before another
    /// instance became the primary must not run (see `commands.primary_epoch`).
    public var actsAsPrimary: Bool { self == .switch || self == .promote }

    /// How long an agent holds a command it fetched before it is handed out again, unless the
    /// agent renews it while it works (a terminate's wait comes on top). As long as the work
    /// usually takes, so a command is handed out twice only when its agent stopped answering.
    public var lease: Duration {
        switch self {
        case .promote, .terminate, .checkPrimary: .seconds(120)
        // a fence waits out the target groups' deregistration delay first
        case .fence: .seconds(600)
        case .launchReplica: .seconds(600)
        case .switch, .snapshot: .seconds(1800)
        }
    }
}

/// The replica operations the coordinator answers over the bus (`rpc.replicas.<operation>`);
/// the HTTP services only authenticate and relay them.
public enum ReplicaOperation: String, Codable, Sendable, CaseIterable {
    case createReplica = "create_replica"
    case listReplicas = "list_replicas"
    case promoteReplica = "promote_replica"
    case deleteReplica = "delete_replica"
    case createEmergencyReplica = "create_emergency_replica"
    case terminationImminent = "termination_imminent"
    case syncStatus = "sync_status"
    case interruption
    case enableManualReplica = "enable_manual_replica"
    case disableManualReplica = "disable_manual_replica"
    case manualSwitch = "manual_switch"
    case sefStatus = "sef_status"
    case setModes = "set_modes"
    case commandResult = "command_result"
    case getTraffic = "get_traffic"
    case setTraffic = "set_traffic"

    /// Every call's routing key starts with this.
    public static let routingPrefix = "rpc.replicas."
    public var routingKey: String { Self.routingPrefix + rawValue }
}

/// One relayed API call: who asked (already authenticated and owner-checked), about what,
/// with the HTTP body as it came (the coordinator validates it).
public struct ReplicaRequest: Codable, Sendable {
    public var operation: ReplicaOperation
    public var clientId: UUID
    public var agentId: UUID
    public var replicaId: UUID?
    public var commandId: UUID?
    public var query: [String: String]
    public var body: String?
    /// When the HTTP service received the call: failover time is measured from here.
    public var receivedAt: Date

    public init(
        operation: ReplicaOperation, clientId: UUID, agentId: UUID, replicaId: UUID? = nil, commandId: UUID? = nil,
        query: [String: String] = [:], body: String? = nil, receivedAt: Date = Date()
    ) {
        self.operation = operation
        self.clientId = clientId
        self.agentId = agentId
        self.replicaId = replicaId
        self.commandId = commandId
        self.query = query
        self.body = body
        self.receivedAt = receivedAt
    }
}

/// A change of an agent's automatic modes (`set_modes`): what the console sends and the
/// coordinator reads; absent fields stay as they are.
public struct ModeChange: Codable, Sendable, Equatable {
    public var autoSwitchEnabled: Bool?
    public var autoTerminateEnabled: Bool?
    public var autoReplicaEnabled: Bool?
    public var terminateWaitSeconds: Int?
    /// `cost` (the default), `conservative` (the seeds' bands) or `learned`.
    public var decisionEngine: String?
    /// $ an interruption without a ready replica costs the workload (the cost engine weighs it).
    public var interruptionCost: Double?

    public static let decisionEngines = ["cost", "conservative", "learned"]

    public init(
        autoSwitchEnabled: Bool? = nil, autoTerminateEnabled: Bool? = nil, autoReplicaEnabled: Bool? = nil, terminateWaitSeconds: Int? = nil,
        decisionEngine: String? = nil, interruptionCost: Double? = nil
    ) {
        self.autoSwitchEnabled = autoSwitchEnabled
        self.autoTerminateEnabled = autoTerminateEnabled
        self.autoReplicaEnabled = autoReplicaEnabled
        self.terminateWaitSeconds = terminateWaitSeconds
        self.decisionEngine = decisionEngine
        self.interruptionCost = interruptionCost
    }

    public var isEmpty: Bool { self == ModeChange() }
}

/// The coordinator's answer to a relayed call: an HTTP status and a JSON body, written to the
/// caller as they are.
public struct APIReply: Codable, Sendable {
    public var status: Int
    public var body: String

    public init(status: Int, body: String) {
        self.status = status
        self.body = body
    }
}

// MARK: events the coordinator publishes (through its outbox)

/// `command.issued`: a command is waiting for an agent; wakes its long-poll.
public struct CommandIssued: Codable, Sendable, Equatable {
    public var commandId: UUID
    public var agentId: UUID
    public var kind: CommandKind
    public var targetInstanceId: String?

    public init(commandId: UUID, agentId: UUID, kind: CommandKind, targetInstanceId: String?) {
        self.commandId = commandId
        self.agentId = agentId
        self.kind = kind
        self.targetInstanceId = targetInstanceId
    }
}

/// `failover.completed`, `failover.failed` and `replica.promoted`.
public struct FailoverReport: Codable, Sendable, Equatable {
    public var clientId: UUID
    public var agentId: UUID
    public var eventId: UUID?
    public var replicaId: UUID?
    public var oldInstanceId: String?
    public var newInstanceId: String?
    public var trigger: SwitchTrigger
    public var failoverTimeMs: Int?
    public var reason: String?
    /// What moving the traffic to the new primary did, when the agent has traffic to move.
    public var traffic: TrafficOutcome?

    public init(
        clientId: UUID, agentId: UUID, eventId: UUID?, replicaId: UUID?, oldInstanceId: String?, newInstanceId: String?,
        trigger: SwitchTrigger, failoverTimeMs: Int?, reason: String?, traffic: TrafficOutcome? = nil
    ) {
        self.traffic = traffic
        self.clientId = clientId
        self.agentId = agentId
        self.eventId = eventId
        self.replicaId = replicaId
        self.oldInstanceId = oldInstanceId
        self.newInstanceId = newInstanceId
        self.trigger = trigger
        self.failoverTimeMs = failoverTimeMs
        self.reason = reason
    }
}

/// `interruption.rebalance` and `interruption.termination`, once recorded.
public struct InterruptionRecorded: Codable, Sendable, Equatable {
    public var eventId: UUID
    public var clientId: UUID
    public var agentId: UUID
    public var instanceId: String?
    public var poolId: String?
    public var signalType: InterruptionSignal
    public var riskScore: Double?
    public var action: String

    public init(
        eventId: UUID, clientId: UUID, agentId: UUID, instanceId: String?, poolId: String?, signalType: InterruptionSignal,
        riskScore: Double?, action: String
    ) {
        self.eventId = eventId
        self.clientId = clientId
        self.agentId = agentId
        self.instanceId = instanceId
        self.poolId = poolId
        self.signalType = signalType
        self.riskScore = riskScore
        self.action = action
    }
}

/// `agent.offline` and `replica.alert`: something an operator should hear about.
public struct AgentAlert: Codable, Sendable, Equatable {
    public var kind: String
    public var clientId: UUID
    public var agentId: UUID
    public var replicaId: UUID?
    public var message: String
    public var since: Date?

    public init(kind: String, clientId: UUID, agentId: UUID, replicaId: UUID?, message: String, since: Date?) {
        self.kind = kind
        self.clientId = clientId
        self.agentId = agentId
        self.replicaId = replicaId
        self.message = message
        self.since = since
    }
}
