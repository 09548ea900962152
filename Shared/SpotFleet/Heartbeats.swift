import Foundation
import SpotModels
import SpotStore

/// Applies heartbeats to `agents` and `instances`. Heartbeats may arrive late, twice, or out
/// of order: only one newer than the agent's last heartbeat changes anything, and a status
/// transition is written to `system_events` once (keyed on the heartbeat id). Heartbeats from
/// an instance the agent was switched away from are ignored.
public enum Heartbeats {
    /// The pools the heartbeats name, so the caller can create them first.
    public static func pools(of heartbeats: [HeartbeatReceived]) -> [PoolID] { heartbeats.compactMap(\.poolId) }

    /// Applies a batch in the caller's transaction; the number of agents it changed.
    public static func apply(_ all: [HeartbeatReceived], on conn: PGConnection) throws -> Int {
        // an instance the agent was switched away from (a failover's dying primary) no longer speaks for it
        let reported = all.filter { $0.instanceId != nil }
        var replaced: Set<String> = []
        if !reported.isEmpty {
            for row in try conn.query(
                "SELECT agent_id::text || old_instance_id FROM switches WHERE agent_id = ANY($1::uuid[]) AND old_instance_id = ANY($2::text[])",
                [PGArray(reported.map(\.agentId)), PGArray(reported.map { $0.instanceId!.rawValue })])
            { replaced.insert(try row.decode(String.self, at: 0)) }
        }
        let heartbeats = all.filter { h in
            guard let instance = h.instanceId else { return true }
            return !replaced.contains(h.agentId.uuidString.lowercased() + instance.rawValue)
        }
        // the newest heartbeat per agent; agents locked in id order (no deadlocks between workers)
        let latest = Dictionary(grouping: heartbeats, by: \.agentId).compactMapValues {
            $0.max { ($0.observedAt, $0.heartbeatId.uuidString) < ($1.observedAt, $1.heartbeatId.uuidString) }
        }
        guard !latest.isEmpty else { return 0 }
        let ids = latest.keys.sorted { $0.uuidString < $1.uuidString }
        var current: [UUID: (status: AgentStatus, last: Date?)] = [:]
        for row in try conn.query(
            """
            SELECT id, status, last_heartbeat_at FROM agents
             WHERE id = ANY($1::uuid[]) AND status <> $2 ORDER BY id FOR NO KEY UPDATE
            """, [PGArray(ids), AgentStatus.deleted])
        {
            current[try row.decode(UUID.self, at: 0)] = (try row.decode(AgentStatus.self, at: 1), try row.decodeIfPresent(Date.self, at: 2))
        }
        let applicable = ids.compactMap { id -> HeartbeatReceived? in
            guard let h = latest[id], let now = current[id] else { return nil }
            if let last = now.last, last >= h.observedAt { return nil }
            return h
        }
        guard !applicable.isEmpty else { return 0 }
        let params: [(any PGEncodable)?] = [
            PGArray(applicable.map(\.agentId)), PGArray(applicable.map(\.clientId)), PGArray(applicable.map(\.status.rawValue)),
            PGArray(applicable.map { $0.instanceId?.rawValue as (any PGEncodable)? }),
            PGArray(applicable.map { $0.mode?.rawValue as (any PGEncodable)? }),
            PGArray(applicable.map { $0.poolId?.rawValue as (any PGEncodable)? }),
            PGArray(applicable.map(\.observedAt)), PGArray(applicable.map { $0.agentVersion as (any PGEncodable)? }),
            PGArray(applicable.map { $0.poolId?.instanceType.rawValue as (any PGEncodable)? }),
            PGArray(applicable.map { $0.poolId?.region.rawValue as (any PGEncodable)? }),
            PGArray(applicable.map { $0.poolId?.az.rawValue as (any PGEncodable)? }),
        ]
        let hb = """
            hb AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
                                        $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::text[])
                   AS u(agent, client, status, inst, mode, pool, observed, version, itype, region, az))
            """
        _ = try conn.execute(
            """
            WITH \(hb)
            UPDATE agents a SET status = hb.status, last_heartbeat_at = hb.observed,
                   instance_id = coalesce(hb.inst, a.instance_id), current_mode = coalesce(hb.mode, a.current_mode),
                   current_pool_id = coalesce(hb.pool, a.current_pool_id), agent_version = coalesce(hb.version, a.agent_version),
                   instance_type = coalesce(hb.itype, a.instance_type), region = coalesce(hb.region, a.region),
                   az = coalesce(hb.az, a.az)
              FROM hb WHERE a.id = hb.agent AND a.client_id = hb.client
            """, params)
        // an instance row belongs to the client that first reported it
        _ = try conn.execute(
            """
            WITH \(hb)
            INSERT INTO instances AS i (id, client_id, agent_id, instance_type, region, az, current_mode, current_pool_id,
                                        is_active, installed_at)
            SELECT inst, client, agent, itype, region, az, mode, pool, true, observed FROM hb WHERE inst IS NOT NULL
            ON CONFLICT (id) DO UPDATE SET agent_id = EXCLUDED.agent_id,
                instance_type = coalesce(EXCLUDED.instance_type, i.instance_type), region = coalesce(EXCLUDED.region, i.region),
                az = coalesce(EXCLUDED.az, i.az), current_mode = coalesce(EXCLUDED.current_mode, i.current_mode),
                current_pool_id = coalesce(EXCLUDED.current_pool_id, i.current_pool_id)
             WHERE i.client_id = EXCLUDED.client_id AND i.is_active
            """, params)
        let transitions = applicable.filter { current[$0.agentId]!.status.rawValue != $0.status.rawValue }
        // status changes are rare next to heartbeats: one row each
        for t in transitions {
            let (old, new) = (current[t.agentId]!.status.rawValue, t.status.rawValue)
            try SystemEvents.record(
                .init(
                    "agent.status_changed", severity: t.status == .offline ? "warning" : "info", component: "spotguard-sef", clientId: t.clientId,
                    agentId: t.agentId, message: "agent status \(old) -> \(new)",
                    details: .object(["from": .string(old), "to": .string(new), "observed_at": .string(Timestamp.format(t.observedAt))]),
                    dedupKey: "heartbeat:\(t.heartbeatId.uuidString.lowercased())"),
                on: conn)
        }
        return applicable.count
    }
}
