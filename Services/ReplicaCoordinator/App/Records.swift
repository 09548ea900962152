import Foundation
import ReplicaCore
import SpotModels
import SpotStore

/// An agent as the coordinator needs it, read under its row lock.
struct AgentRecord: Sendable {
    var id: UUID
    var clientId: UUID
    var instanceId: String?
    var instanceType: String?
    var az: String?
    var poolId: String?
    var mode: String?
    var manualReplicaEnabled: Bool
    var autoSwitchEnabled: Bool
    var autoTerminateEnabled: Bool
    var autoReplicaEnabled: Bool
    var terminateWaitSeconds: Int
    var status: AgentStatus
    var lastHeartbeatAt: Date?
    var lastFailoverAt: Date?
    /// The zones where the workload's VPC has a subnet; nil when its agent did not say.
    var usableZones: Set<String>?

    static let columns = """
        id, client_id, instance_id, instance_type, az, current_pool_id, current_mode, manual_replica_enabled,
        auto_switch_enabled, auto_terminate_enabled, auto_replica_enabled, terminate_wait_seconds, status,
        last_heartbeat_at, last_failover_at, array_to_string(usable_zones, ',')
        """

    init(_ r: PGRow) throws {
        id = try r.decode(UUID.self, at: 0)
        clientId = try r.decode(UUID.self, at: 1)
        instanceId = try r.decodeIfPresent(String.self, at: 2)
        instanceType = try r.decodeIfPresent(String.self, at: 3)
        az = try r.decodeIfPresent(String.self, at: 4)
        poolId = try r.decodeIfPresent(String.self, at: 5)
        mode = try r.decodeIfPresent(String.self, at: 6)
        manualReplicaEnabled = try r.decode(Bool.self, at: 7)
        autoSwitchEnabled = try r.decode(Bool.self, at: 8)
        autoTerminateEnabled = try r.decode(Bool.self, at: 9)
        autoReplicaEnabled = try r.decode(Bool.self, at: 10)
        terminateWaitSeconds = try r.decode(Int.self, at: 11)
        status = try r.decode(AgentStatus.self, at: 12)
        lastHeartbeatAt = try r.decodeIfPresent(Date.self, at: 13)
        lastFailoverAt = try r.decodeIfPresent(Date.self, at: 14)
        usableZones = try r.decodeIfPresent(String.self, at: 15).map { Set($0.split(separator: ",").map(String.init)) }
    }

    /// The agent of `client`, locked for the rest of the transaction (every change to an
    /// agent's replicas happens under this lock, so coordinator copies serialise per agent).
    static func lock(_ id: UUID, client: UUID, on conn: PGConnection) throws -> AgentRecord {
        let rows = try conn.query(
            "SELECT \(columns) FROM agents WHERE id = $1 AND client_id = $2 AND status <> 'deleted' FOR UPDATE", [id, client])
        guard let row = rows.first else { throw ReplicaRefusal(404, "agent_not_found", "no such agent for this client") }
        return try AgentRecord(row)
    }

    var pool: PoolID? { poolId.flatMap(PoolID.init(rawValue:)) }
    var instanceTypeValue: InstanceType? { pool?.instanceType ?? instanceType.flatMap(InstanceType.init(rawValue:)) }
    var azValue: AvailabilityZone? { pool?.az ?? az.flatMap(AvailabilityZone.init(rawValue:)) }
}

/// A replica row with its lifecycle.
struct ReplicaRecord: Sendable {
    var id: UUID
    var agentId: UUID
    var type: ReplicaType
    var poolId: String?
    var lifecycle: ReplicaLifecycle
    var progress: Double
    var syncLatencyMs: Int?
    var hourlyCost: Double?
    var createdBy: String
    var createdByUser: String?
    var createdAt: Date
    var readyAt: Date?
    var promotedAt: Date?
    var terminatedAt: Date?
    var failureReason: String?
    var tags: JSONValue
    var stateVersion: Int64?
    var stateLagSeconds: Double?

    var status: ReplicaStatus { lifecycle.status }
    var instanceId: String? { lifecycle.instanceId }

    static let columns = """
        id, agent_id, replica_type, pool_id, status, sync_status, instance_id, state_transfer_progress::float8, sync_latency_ms,
        hourly_cost::float8, created_by, created_by_user, created_at, ready_at, promoted_at, terminated_at, failure_reason, tags::text,
        state_version, state_lag_seconds
        """

    init(_ r: PGRow) throws {
        id = try r.decode(UUID.self, at: 0)
        agentId = try r.decode(UUID.self, at: 1)
        type = ReplicaType(rawValue: try r.decode(String.self, at: 2)) ?? .manual
        poolId = try r.decodeIfPresent(String.self, at: 3)
        lifecycle = ReplicaLifecycle(
            status: ReplicaStatus(rawValue: try r.decode(String.self, at: 4)) ?? .failed,
            syncStatus: SyncStatus(rawValue: try r.decode(String.self, at: 5)) ?? .initializing,
            instanceId: try r.decodeIfPresent(String.self, at: 6))
        progress = try r.decode(Double.self, at: 7)
        syncLatencyMs = try r.decodeIfPresent(Int.self, at: 8)
        hourlyCost = try r.decodeIfPresent(Double.self, at: 9)
        createdBy = try r.decode(String.self, at: 10)
        createdByUser = try r.decodeIfPresent(String.self, at: 11)
        createdAt = try r.decode(Date.self, at: 12)
        readyAt = try r.decodeIfPresent(Date.self, at: 13)
        promotedAt = try r.decodeIfPresent(Date.self, at: 14)
        terminatedAt = try r.decodeIfPresent(Date.self, at: 15)
        failureReason = try r.decodeIfPresent(String.self, at: 16)
        tags = JSONValue.parse(try r.decode(String.self, at: 17)) ?? .object([:])
        stateVersion = try r.decodeIfPresent(Int64.self, at: 18)
        stateLagSeconds = try r.decodeIfPresent(Double.self, at: 19)
    }

    static func lock(_ id: UUID, agent: UUID, on conn: PGConnection) throws -> ReplicaRecord {
        let rows = try conn.query("SELECT \(columns) FROM replica_instances WHERE id = $1 AND agent_id = $2 FOR UPDATE", [id, agent])
        guard let row = rows.first else { throw ReplicaRefusal(404, "replica_not_found", "no such replica for this agent") }
        return try ReplicaRecord(row)
    }

    static func list(agent: UUID, activeOnly: Bool, on conn: PGConnection) throws -> [ReplicaRecord] {
        try conn.query(
            """
            SELECT \(columns) FROM replica_instances WHERE agent_id = $1 AND (is_active OR NOT $2) ORDER BY created_at DESC
            """, [agent, activeOnly]
        ).map(ReplicaRecord.init)
    }

    /// Writes the lifecycle (status, sync status, instance) and the timestamps a status implies.
    func saveLifecycle(on conn: PGConnection, failureReason: String? = nil) throws {
        _ = try conn.execute(
            """
            UPDATE replica_instances SET
                status_changed_at = CASE WHEN status <> $2 THEN now() ELSE status_changed_at END,
                status = $2, sync_status = $3, instance_id = $4, is_active = $2 IN ('launching', 'syncing', 'ready'),
                launched_at = CASE WHEN $4::text IS NOT NULL THEN coalesce(launched_at, now()) END,
                ready_at = CASE WHEN $2 = 'ready' THEN coalesce(ready_at, now()) ELSE ready_at END,
                promoted_at = CASE WHEN $2 = 'promoted' THEN coalesce(promoted_at, now()) ELSE promoted_at END,
                terminated_at = CASE WHEN $2 IN ('terminated', 'failed') THEN coalesce(terminated_at, now()) ELSE terminated_at END,
                failure_reason = coalesce($5, failure_reason)
             WHERE id = $1
            """, [id, status.rawValue, lifecycle.syncStatus.rawValue, instanceId, failureReason])
    }
}

/// The latest clean price of a pool, as switches record it.
struct CleanQuote: Sendable {
    var price: Double
    var onDemand: Double?
    var confidence: Double
    var dataSource: String
}

enum PriceBook {
    /// Pools of `type` in `region` with a clean price within `window`, with their recent
    /// interruption signals (last hour).
    static func quotes(type: InstanceType, region: Region, window: Duration, on conn: PGConnection) throws -> [PoolQuote] {
        try conn.query(
            """
            SELECT p.id, c.spot_price::float8, c.confidence_score::float8,
                   (SELECT count(*) FROM spot_interruption_events e
                     WHERE e.pool_id = p.id AND e.detected_at > now() - interval '1 hour')::int
              FROM spot_pools p
              CROSS JOIN LATERAL (SELECT spot_price, confidence_score FROM pricing_snapshots_clean c
                                   WHERE c.pool_id = p.id AND c.time_bucket > now() - make_interval(secs => $3)
                                   ORDER BY c.time_bucket DESC LIMIT 1) c
             WHERE p.instance_type = $1 AND p.region = $2
            """, [type.rawValue, region.rawValue, Double(window.components.seconds)]
        ).compactMap { r in
            guard let pool = PoolID(rawValue: try r.decode(String.self, at: 0)) else { return nil }
            return PoolQuote(
                pool: pool, price: try r.decode(Double.self, at: 1), confidence: try r.decode(Double.self, at: 2),
                recentInterruptions: try r.decode(Int.self, at: 3))
        }
    }

    /// The pool's clean price at or before now (nil when the pool has none).
    static func latest(pool: String?, on conn: PGConnection) throws -> CleanQuote? {
        guard let pool else { return nil }
        return try conn.query(
            """
            SELECT spot_price::float8, on_demand_price::float8, confidence_score::float8, data_source
              FROM pricing_snapshots_clean WHERE pool_id = $1 AND time_bucket <= now() ORDER BY time_bucket DESC LIMIT 1
            """, [pool]
        ).first.map {
            CleanQuote(
                price: try $0.decode(Double.self, at: 0), onDemand: try $0.decodeIfPresent(Double.self, at: 1),
                confidence: try $0.decode(Double.self, at: 2), dataSource: try $0.decode(String.self, at: 3))
        }
    }
}
