import Foundation
import SpotStore

/// What the replica coordinator keeps on an agent's row (`agents`): its modes, its replica
/// summary, the last interruption signal and whether it went silent. Registration is
/// `ClientDirectory.register`, heartbeats `Heartbeats.apply`, moves `Switches.record`.
public enum Agents {
    /// The agent's mode flags; nil leaves a flag as it is.
    public struct Modes: Sendable, Equatable {
        public var manualReplica: Bool?
        public var autoSwitch: Bool?
        public var autoTerminate: Bool?
        public var autoReplica: Bool?
        public var terminateWaitSeconds: Int?
        public var decisionEngine: String?
        public var interruptionCost: Double?

        public init(
            manualReplica: Bool? = nil, autoSwitch: Bool? = nil, autoTerminate: Bool? = nil, autoReplica: Bool? = nil, terminateWaitSeconds: Int? = nil,
            decisionEngine: String? = nil, interruptionCost: Double? = nil
        ) {
            self.manualReplica = manualReplica
            self.autoSwitch = autoSwitch
            self.autoTerminate = autoTerminate
            self.autoReplica = autoReplica
            self.terminateWaitSeconds = terminateWaitSeconds
            self.decisionEngine = decisionEngine
            self.interruptionCost = interruptionCost
        }
    }

    public static func setModes(_ agentId: UUID, _ m: Modes, on conn: PGConnection) throws {
        _ = try conn.execute(
            """
            UPDATE agents SET manual_replica_enabled = coalesce($2, manual_replica_enabled),
                   auto_switch_enabled = coalesce($3, auto_switch_enabled), auto_terminate_enabled = coalesce($4, auto_terminate_enabled),
                   auto_replica_enabled = coalesce($5, auto_replica_enabled), terminate_wait_seconds = coalesce($6, terminate_wait_seconds),
                   decision_engine = coalesce($7, decision_engine), interruption_cost = coalesce($8::float8::numeric, interruption_cost)
             WHERE id = $1
            """, [agentId, m.manualReplica, m.autoSwitch, m.autoTerminate, m.autoReplica, m.terminateWaitSeconds, m.decisionEngine, m.interruptionCost])
    }

    /// The replica count and the current replica (a ready one first, else the newest), from
    /// the agent's active replicas.
    public static func refreshReplicaSummary(_ agentId: UUID, on conn: PGConnection) throws {
        _ = try conn.execute(
            """
            UPDATE agents SET
                replica_count = (SELECT count(*) FROM replica_instances WHERE agent_id = $1 AND is_active),
                current_replica_id = (SELECT id FROM replica_instances WHERE agent_id = $1 AND is_active
                                       ORDER BY status = 'ready' DESC, created_at DESC LIMIT 1)
             WHERE id = $1
            """, [agentId])
    }

    /// `termination-notice` or `rebalance-recommendation`.
    public static func recordSignal(_ agentId: UUID, _ signal: String, on conn: PGConnection) throws {
        _ = try conn.execute("UPDATE agents SET last_interruption_signal = $2 WHERE id = $1", [agentId, signal])
    }

    /// Online agents silent for longer than `seconds` go offline; returns them with their
    /// client and last heartbeat.
    public static func markSilentOffline(after seconds: Double, on conn: PGConnection) throws -> [(agentId: UUID, clientId: UUID, lastHeartbeat: Date)] {
        try conn.query(
            """
            UPDATE agents SET status = 'offline'
             WHERE status = 'online' AND last_heartbeat_at < now() - make_interval(secs => $1)
            RETURNING id, client_id, last_heartbeat_at
            """, [seconds]
        ).map { (try $0.decode(UUID.self, at: 0), try $0.decode(UUID.self, at: 1), try $0.decode(Date.self, at: 2)) }
    }
}
