import Foundation
import SpotFleet
import SpotModels
import SpotRuntime
import SpotStore

/// What a client's fleet looks like, read for the API and the dashboard alike. Every query is
/// bounded by the client id, so no view can show another client's rows.
struct FleetViews: Sendable {
    let store: PostgresStore

    struct AgentView: Encodable, Sendable {
        var id: UUID
        var logicalAgentId: String
        var status: AgentStatus
        var instanceId: String?
        var instanceType: String?
        var region: String?
        var az: String?
        var mode: String?
        var poolId: String?
        var autoSwitchEnabled: Bool
        var manualReplicaEnabled: Bool
        var autoTerminateEnabled: Bool
        var autoReplicaEnabled: Bool
        var decisionEngine: String
        var interruptionCost: Double
        var lastHeartbeatAt: Date?
        var lastFailoverAt: Date?
        var activeReplicas: Int
        var agentVersion: String?
    }

    static let agentColumns = """
        a.id, a.logical_agent_id, a.status, a.instance_id, a.instance_type, a.region, a.az, a.current_mode, a.current_pool_id,
        a.auto_switch_enabled, a.manual_replica_enabled, a.auto_terminate_enabled, a.auto_replica_enabled, a.decision_engine,
        a.last_heartbeat_at, a.last_failover_at,
        (SELECT count(*)::int FROM replica_instances r WHERE r.agent_id = a.id AND r.is_active), a.agent_version,
        a.interruption_cost::float8
        """

    static func agent(_ r: PGRow) throws -> AgentView {
        AgentView(
            id: try r.decode(UUID.self, at: 0), logicalAgentId: try r.decode(String.self, at: 1), status: try r.decode(AgentStatus.self, at: 2),
            instanceId: try r.decodeIfPresent(String.self, at: 3), instanceType: try r.decodeIfPresent(String.self, at: 4),
            region: try r.decodeIfPresent(String.self, at: 5), az: try r.decodeIfPresent(String.self, at: 6),
            mode: try r.decodeIfPresent(String.self, at: 7), poolId: try r.decodeIfPresent(String.self, at: 8),
            autoSwitchEnabled: try r.decode(Bool.self, at: 9), manualReplicaEnabled: try r.decode(Bool.self, at: 10),
            autoTerminateEnabled: try r.decode(Bool.self, at: 11), autoReplicaEnabled: try r.decode(Bool.self, at: 12),
            decisionEngine: try r.decode(String.self, at: 13), interruptionCost: try r.decode(Double.self, at: 18),
            lastHeartbeatAt: try r.decodeIfPresent(Date.self, at: 14),
            lastFailoverAt: try r.decodeIfPresent(Date.self, at: 15), activeReplicas: try r.decode(Int.self, at: 16),
            agentVersion: try r.decodeIfPresent(String.self, at: 17))
    }

    /// The client's agents in name order: all of them, or `limit` after the name `after`.
    func agents(_ client: UUID, after: String? = nil, limit: Int? = nil) async throws -> [AgentView] {
        try await store.read { conn in
            try conn.query(
                """
                SELECT \(Self.agentColumns) FROM agents a
                 WHERE a.client_id = $1 AND a.status <> 'deleted' AND ($2::text IS NULL OR a.logical_agent_id > $2)
                 ORDER BY a.logical_agent_id LIMIT $3
                """, [client, after, limit]
            ).map(Self.agent)
        }
    }

    /// How many of the client's agents, active instances and active replicas there are, by state.
    struct FleetCounts: Sendable {
        var agentsOnline = 0, agentsOffline = 0, agents = 0
        var instancesSpot = 0, instancesOnDemand = 0
        var replicasReady = 0, replicasNotReady = 0
    }

    func counts(_ client: UUID) async throws -> FleetCounts {
        let row = try await store.read { conn in
            try conn.query(
                """
                SELECT a.online, a.offline, a.total, i.spot, i.ondemand, r.ready, r.not_ready
                  FROM (SELECT count(*) FILTER (WHERE status = 'online') AS online, count(*) FILTER (WHERE status = 'offline') AS offline,
                               count(*) AS total
                          FROM agents WHERE client_id = $1 AND status <> 'deleted') a,
                       (SELECT count(*) FILTER (WHERE current_mode = 'spot') AS spot, count(*) FILTER (WHERE current_mode = 'ondemand') AS ondemand
                          FROM instances WHERE client_id = $1 AND is_active) i,
                       (SELECT count(*) FILTER (WHERE r.status = 'ready') AS ready, count(*) FILTER (WHERE r.status <> 'ready') AS not_ready
                          FROM replica_instances r JOIN agents a ON a.id = r.agent_id WHERE a.client_id = $1 AND r.is_active) r
                """, [client])[0]
        }
        let n = try (0..<7).map { try row.decode(Int.self, at: $0) }
        return FleetCounts(
            agentsOnline: n[0], agentsOffline: n[1], agents: n[2], instancesSpot: n[3], instancesOnDemand: n[4], replicasReady: n[5],
            replicasNotReady: n[6])
    }

    /// One of the client's agents; another client's is a 404 like a missing one.
    func agent(_ agent: UUID, of client: UUID) async throws -> AgentView {
        let rows = try await store.read { conn in
            try conn.query(
                "SELECT \(Self.agentColumns) FROM agents a WHERE a.id = $1 AND a.client_id = $2 AND a.status <> 'deleted'", [agent, client])
        }
        guard let row = rows.first else { throw APIError.agentNotFound }
        return try Self.agent(row)
    }

    struct InstanceView: Encodable, Sendable {
        var id: String
        var agentId: UUID?
        var logicalAgentId: String?
        var instanceType: String?
        var az: String?
        var mode: String?
        var poolId: String?
        var isActive: Bool
        var installedAt: Date?
        var terminatedAt: Date?
    }

    func instances(_ client: UUID, activeOnly: Bool, limit: Int) async throws -> [InstanceView] {
        try await store.read { conn in
            try conn.query(
                """
                SELECT i.id, i.agent_id, a.logical_agent_id, i.instance_type, i.az, i.current_mode, i.current_pool_id, i.is_active,
                       i.installed_at, i.terminated_at
                  FROM instances i LEFT JOIN agents a ON a.id = i.agent_id
                 WHERE i.client_id = $1 AND (NOT $2 OR i.is_active)
                 ORDER BY i.is_active DESC, coalesce(i.terminated_at, i.installed_at, i.created_at) DESC LIMIT $3
                """, [client, activeOnly, limit]
            ).map { r in
                InstanceView(
                    id: try r.decode(String.self, at: 0), agentId: try r.decodeIfPresent(UUID.self, at: 1),
                    logicalAgentId: try r.decodeIfPresent(String.self, at: 2), instanceType: try r.decodeIfPresent(String.self, at: 3),
                    az: try r.decodeIfPresent(String.self, at: 4), mode: try r.decodeIfPresent(String.self, at: 5),
                    poolId: try r.decodeIfPresent(String.self, at: 6), isActive: try r.decode(Bool.self, at: 7),
                    installedAt: try r.decodeIfPresent(Date.self, at: 8), terminatedAt: try r.decodeIfPresent(Date.self, at: 9))
            }
        }
    }

    struct ReplicaView: Encodable, Sendable {
        var id: UUID
        var agentId: UUID
        var logicalAgentId: String
        var replicaType: String
        var status: String
        var syncStatus: String
        var stateTransferProgress: Double
        var syncLatencyMs: Int?
        var instanceId: String?
        var poolId: String?
        var hourlyCost: Double?
        var createdAt: Date
        var readyAt: Date?
        var terminatedAt: Date?
        var failureReason: String?
        /// The version of the workload's state the replica holds, and since when it lacks a newer one.
        var stateVersion: Int64?
        var stateLagSeconds: Double?
        var isActive: Bool { ["launching", "syncing", "ready"].contains(status) }
        var isReady: Bool { status == "ready" }
    }

    /// The client's replicas (at most 500): of the given agents, or of all.
    func replicas(_ client: UUID, of agents: [UUID]?, activeOnly: Bool) async throws -> [ReplicaView] {
        try await store.read { conn in
            try conn.query(
                """
                SELECT r.id, r.agent_id, a.logical_agent_id, r.replica_type, r.status, r.sync_status, r.state_transfer_progress::float8,
                       r.sync_latency_ms, r.instance_id, r.pool_id, r.hourly_cost::float8, r.created_at, r.ready_at, r.terminated_at,
                       r.failure_reason, r.state_version, r.state_lag_seconds
                  FROM replica_instances r JOIN agents a ON a.id = r.agent_id
                 WHERE a.client_id = $1 AND ($2::uuid[] IS NULL OR r.agent_id = ANY($2)) AND (NOT $3 OR r.is_active)
                 ORDER BY r.is_active DESC, r.created_at DESC LIMIT 500
                """, [client, agents.map { PGArray($0) }, activeOnly]
            ).map { r in
                ReplicaView(
                    id: try r.decode(UUID.self, at: 0), agentId: try r.decode(UUID.self, at: 1), logicalAgentId: try r.decode(String.self, at: 2),
                    replicaType: try r.decode(String.self, at: 3), status: try r.decode(String.self, at: 4), syncStatus: try r.decode(String.self, at: 5),
                    stateTransferProgress: try r.decode(Double.self, at: 6), syncLatencyMs: try r.decodeIfPresent(Int.self, at: 7),
                    instanceId: try r.decodeIfPresent(String.self, at: 8), poolId: try r.decodeIfPresent(String.self, at: 9),
                    hourlyCost: try r.decodeIfPresent(Double.self, at: 10), createdAt: try r.decode(Date.self, at: 11),
                    readyAt: try r.decodeIfPresent(Date.self, at: 12), terminatedAt: try r.decodeIfPresent(Date.self, at: 13),
                    failureReason: try r.decodeIfPresent(String.self, at: 14), stateVersion: try r.decodeIfPresent(Int64.self, at: 15),
                    stateLagSeconds: try r.decodeIfPresent(Double.self, at: 16))
            }
        }
    }

    /// Where an agent's traffic enters and what its latest move did (read only: the replica
    /// coordinator writes both).
    struct TrafficState: Sendable {
        var config = TrafficConfig()
        var lastMove: TrafficOutcome?
        var movedTo: String?
        var movedAt: Date?
        var fencedAt: Date?
    }

    func traffic(_ agent: UUID) async throws -> TrafficState {
        try await store.read { conn in
            var state = TrafficState()
            if let text = try conn.query("SELECT config::text FROM agent_traffic WHERE agent_id = $1", [agent]).first?.decode(String.self, at: 0) {
                state.config = try WireJSON.decoder().decode(TrafficConfig.self, from: Data(text.utf8))
            }
            if let row = try conn.query(
                """
                SELECT traffic::text, new_instance_id, initiated_at, fenced_at FROM switches
                 WHERE agent_id = $1 AND traffic IS NOT NULL ORDER BY initiated_at DESC LIMIT 1
                """, [agent]
            ).first {
                state.lastMove = try? WireJSON.decoder().decode(TrafficOutcome.self, from: Data(try row.decode(String.self, at: 0).utf8))
                state.movedTo = try row.decodeIfPresent(String.self, at: 1)
                state.movedAt = try row.decodeIfPresent(Date.self, at: 2)
                state.fencedAt = try row.decodeIfPresent(Date.self, at: 3)
            }
            return state
        }
    }

    struct NotificationView: Encodable, Sendable {
        var id: UUID
        var agentId: UUID?
        var severity: String
        var eventType: String?
        var kind: String
        var title: String
        var message: String
        var occurrences: Int
        var isRead: Bool
        var deliveryStatus: String
        var createdAt: Date
        var lastOccurredAt: Date
    }

    func notifications(_ client: UUID, unreadOnly: Bool, limit: Int) async throws -> [NotificationView] {
        try await store.read { conn in
            try conn.query(
                """
                SELECT n.id, n.agent_id, n.severity, n.event_type, n.kind, n.title, n.message, n.occurrences,
                       coalesce(r.read_at >= n.last_occurred_at, false), n.delivery_status, n.created_at, n.last_occurred_at
                  FROM notifications n LEFT JOIN notification_reads r ON r.notification_id = n.id
                 WHERE n.client_id = $1 AND (NOT $2 OR r.read_at IS NULL OR r.read_at < n.last_occurred_at)
                 ORDER BY n.last_occurred_at DESC LIMIT $3
                """, [client, unreadOnly, limit]
            ).map { r in
                NotificationView(
                    id: try r.decode(UUID.self, at: 0), agentId: try r.decodeIfPresent(UUID.self, at: 1), severity: try r.decode(String.self, at: 2),
                    eventType: try r.decodeIfPresent(String.self, at: 3), kind: try r.decode(String.self, at: 4), title: try r.decode(String.self, at: 5),
                    message: try r.decode(String.self, at: 6), occurrences: try r.decode(Int.self, at: 7), isRead: try r.decode(Bool.self, at: 8),
                    deliveryStatus: try r.decode(String.self, at: 9), createdAt: try r.decode(Date.self, at: 10),
                    lastOccurredAt: try r.decode(Date.self, at: 11))
            }
        }
    }

    /// Marks one (or, with nil, every) notification of the client read as of now (a later
    /// occurrence makes it unread again); false when the client has no such notification.
    func markRead(_ client: UUID, _ id: UUID?) async throws -> Bool {
        try await store.transaction { conn in
            let rows = try conn.query(
                """
                INSERT INTO notification_reads (notification_id, client_id, read_at)
                SELECT id, client_id, now() FROM notifications WHERE client_id = $1 AND ($2::uuid IS NULL OR id = $2)
                    ON CONFLICT (notification_id) DO UPDATE SET read_at = excluded.read_at
                RETURNING notification_id
                """, [client, id])
            return id == nil || !rows.isEmpty
        }
    }

    struct PricePoint: Encodable, Sendable {
        var time: Date
        var spotPrice: Double
        var onDemandPrice: Double?
        var confidence: Double
        var dataSource: String
    }

    struct PoolPrices: Encodable, Sendable {
        var poolId: String
        var from: Date
        var to: Date
        var points: [PricePoint]
        var interpolatedShare: Double?
    }

    /// The pools a client may look at: those its agents, instances and replicas ran in, and
    /// the other zones of their instance types (the switch candidates).
    func pools(_ client: UUID) async throws -> [String] {
        try await store.read { conn in
            try conn.query(
                """
                SELECT p.id FROM spot_pools p
                 WHERE p.instance_type IN (SELECT instance_type FROM agents WHERE client_id = $1 AND instance_type IS NOT NULL
                                           UNION SELECT instance_type FROM instances WHERE client_id = $1 AND instance_type IS NOT NULL)
                   AND p.region IN (SELECT region FROM agents WHERE client_id = $1 AND region IS NOT NULL
                                    UNION SELECT region FROM instances WHERE client_id = $1 AND region IS NOT NULL)
                 ORDER BY p.id
                """, [client]
            ).map { try $0.decode(String.self, at: 0) }
        }
    }

    /// The pool's clean prices of the last `seconds`.
    func prices(_ pool: String, seconds: Int) async throws -> PoolPrices {
        let to = Date()
        let from = to.addingTimeInterval(-Double(seconds))
        let points = try await store.read { conn in
            try conn.query(
                """
                SELECT time_bucket, spot_price::float8, on_demand_price::float8, confidence_score::float8, data_source
                  FROM pricing_snapshots_clean WHERE pool_id = $1 AND time_bucket >= $2 ORDER BY time_bucket
                """, [pool, from]
            ).map { r in
                PricePoint(
                    time: try r.decode(Date.self, at: 0), spotPrice: try r.decode(Double.self, at: 1), onDemandPrice: try r.decodeIfPresent(Double.self, at: 2),
                    confidence: try r.decode(Double.self, at: 3), dataSource: try r.decode(String.self, at: 4))
            }
        }
        let interpolated = points.filter { $0.dataSource == "interpolated" }.count
        return PoolPrices(
            poolId: pool, from: from, to: to, points: points,
            interpolatedShare: points.isEmpty ? nil : (Double(interpolated) / Double(points.count) * 1000).rounded() / 1000)
    }

    struct PoolChoice: Encodable, Sendable {
        var poolId: String
        var az: String
        var spotPrice: Double?
        var onDemandPrice: Double?
        var dataSource: String?
        var priceAt: Date?
        var riskScore: Double?
        var isCurrent: Bool
    }

    /// Every zone of the agent's instance type in its region: latest clean price and risk.
    func switchChoices(for agent: AgentView) async throws -> [PoolChoice] {
        guard let type = agent.instanceType, let region = agent.region else { return [] }
        let current = agent.poolId
        return try await store.read { conn in
            try conn.query(
                """
                SELECT p.id, p.az, c.spot_price::float8, c.on_demand_price::float8, c.data_source, c.time_bucket, r.risk_score::float8
                  FROM spot_pools p
                  LEFT JOIN LATERAL (SELECT spot_price, on_demand_price, data_source, time_bucket FROM pricing_snapshots_clean
                                      WHERE pool_id = p.id ORDER BY time_bucket DESC LIMIT 1) c ON true
                  LEFT JOIN LATERAL (SELECT risk_score FROM pool_risk_analysis WHERE pool_id = p.id ORDER BY analyzed_at DESC LIMIT 1) r ON true
                 WHERE p.instance_type = $1 AND p.region = $2 ORDER BY c.spot_price NULLS LAST, p.id
                """, [type, region]
            ).map { r in
                let id = try r.decode(String.self, at: 0)
                return PoolChoice(
                    poolId: id, az: try r.decode(String.self, at: 1), spotPrice: try r.decodeIfPresent(Double.self, at: 2),
                    onDemandPrice: try r.decodeIfPresent(Double.self, at: 3), dataSource: try r.decodeIfPresent(String.self, at: 4),
                    priceAt: try r.decodeIfPresent(Date.self, at: 5), riskScore: try r.decodeIfPresent(Double.self, at: 6), isCurrent: id == current)
            }
        }
    }

    /// Queues a `switch` for the agent's primary to a pool (spot) or to on-demand.
    func forceSwitch(_ agent: AgentView, client: UUID, mode: InstanceMode, pool: PoolID?) async throws -> UUID {
        try await store.transaction { conn in
            try Commands.issue(
                try .init(
                    .switch, clientId: client, agentId: agent.id, targetInstanceId: agent.instanceId,
                    payload: ["reason": "forced from the console", "target_mode": mode.rawValue], targetMode: mode, targetPoolId: pool?.rawValue,
                    issuedBy: "user", priority: 5, expiresIn: .seconds(3600)),
                producer: "spotguard-console", on: conn)
        }
    }
}
