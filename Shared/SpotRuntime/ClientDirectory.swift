import Foundation
import HTTPTypes
import SpotModels

import SpotStore
import Synchronization

/// Clients, their tokens and their agents, as ingest and the console need them. Token look-ups and agent
/// ownership are cached so the hot path (heartbeats and reports) does no SQL.
public final class ClientDirectory: Sendable {
    struct CachedKey {
        var clientId: UUID?  // nil: no such key (cached briefly against floods of bad tokens)
        var digest: [UInt8]
        var expires: ContinuousClock.Instant
    }

    public struct RegisteredAgent: Sendable, Encodable {
        public var agentId: UUID
        public var clientId: UUID
        public var logicalAgentId: String
        public var created: Bool
        public var config: AgentConfig
    }

    public struct AgentConfig: Sendable, Encodable {
        public var enabled: Bool
        public var autoSwitchEnabled: Bool
        public var manualReplicaEnabled: Bool
        public var autoTerminateEnabled: Bool
        public var terminateWaitSeconds: Int
        public var decisionEngine: String
    }

    private let store: PostgresStore
    private let ttl: Duration
    private let keys = Mutex<[String: CachedKey]>([:])
    private let agentOwners = Mutex<[UUID: UUID]>([:])
    private static let maxCacheEntries = 100_000

    public init(store: PostgresStore, ttl: Duration) {
        self.store = store
        self.ttl = ttl
    }

    /// The client of a bearer token, or `APIError.unauthorized`.
    public func authenticate(_ authorization: String?) async throws -> UUID {
        guard let text = ClientToken.bearer(authorization), let token = ClientToken(text) else { throw APIError.unauthorized }
        let now = ContinuousClock.now
        var entry = keys.withLock { $0[token.keyId] }
        if entry == nil || entry!.expires < now {
            entry = try await lookUp(token.keyId, now: now)
        }
        guard let entry, let clientId = entry.clientId, token.matches(digest: entry.digest) else { throw APIError.unauthorized }
        return clientId
    }

    private func lookUp(_ keyId: String, now: ContinuousClock.Instant) async throws -> CachedKey {
        let rows = try await query("SELECT id, token_hash FROM clients WHERE token_key_id = $1 AND status = 'active'", [keyId])
        let entry: CachedKey
        if let row = rows.first {
            entry = CachedKey(
                clientId: try row.decode(UUID.self, at: 0), digest: try row.decode(PGBytes.self, at: 1).bytes, expires: now + ttl)
        } else {
            entry = CachedKey(clientId: nil, digest: [], expires: now + .seconds(5))
        }
        keys.withLock {
            if $0.count >= Self.maxCacheEntries { $0.removeAll() }
            $0[keyId] = entry
        }
        return entry
    }

    /// Succeeds when the agent exists and belongs to the client; another client's agent is
    /// indistinguishable from a missing one (404).
    public func requireAgent(_ agentId: UUID, of clientId: UUID) async throws {
        if let owner = agentOwners.withLock({ $0[agentId] }) {
            guard owner == clientId else { throw APIError.agentNotFound }
            return
        }
        let rows = try await query("SELECT client_id FROM agents WHERE id = $1 AND status <> 'deleted'", [agentId])
        guard let row = rows.first else { throw APIError.agentNotFound }
        let owner = try row.decode(UUID.self, at: 0)
        agentOwners.withLock {
            if $0.count >= Self.maxCacheEntries { $0.removeAll() }
            $0[agentId] = owner
        }
        guard owner == clientId else { throw APIError.agentNotFound }
    }

    /// A hot-path read; a database failure becomes 503 so agents retry later.
    private func query(_ sql: String, _ params: [any PGEncodable]) async throws -> [PGRow] {
        do {
            return try await store.withConnection { try $0.query(sql, params) }
        } catch is PGError {
            throw APIError.databaseUnavailable
        }
    }

    /// Creates a client; its token is returned once and only its digest is kept.
    public func createClient(name: String, email: String?) async throws -> (UUID, ClientToken) {
        let token = ClientToken.generate()
        let id = try await store.transaction { conn in
            let rows = try conn.query(
                "INSERT INTO clients (name, email, token_key_id, token_hash) VALUES ($1, $2, $3, $4) RETURNING id",
                [name, email, token.keyId, PGBytes(token.secretDigest)])
            let id = try rows[0].decode(UUID.self, at: 0)
            try conn.execute(
                "INSERT INTO system_events (event_type, component, client_id, message) VALUES ('client.created', 'ingest', $1, $2)",
                [id, "client created"])
            return id
        }
        return (id, token)
    }

    /// Gives the client a new token; the old one stops working at once here and, in other
    /// processes, when their cached entry expires (the token cache TTL). Nil: no such client.
    public func rotateToken(of clientId: UUID) async throws -> (String, ClientToken)? {
        let token = ClientToken.generate()
        let name = try await store.transaction { conn -> String? in
            guard let row = try conn.query(
                "UPDATE clients SET token_key_id = $2, token_hash = $3 WHERE id = $1 RETURNING name", [clientId, token.keyId, PGBytes(token.secretDigest)]
            ).first else { return nil }
            try conn.execute(
                "INSERT INTO system_events (event_type, component, client_id, message) VALUES ('client.token_rotated', 'console', $1, $2)",
                [clientId, "client token rotated"])
            return try row.decode(String.self, at: 0)
        }
        keys.withLock { cache in cache = cache.filter { $0.value.clientId != clientId } }
        return name.map { ($0, token) }
    }

    /// Registers an agent, idempotently on (client, logical_agent_id): the same agent id comes
    /// back on every call, with the agent's configuration flags.
    public func register(client clientId: UUID, _ r: AgentRegistration) async throws -> RegisteredAgent {
        let result = try await store.transaction { conn -> RegisteredAgent? in
            if let pool = r.poolId {
                try conn.execute(
                    """
                    INSERT INTO spot_pools (id, pool_name, instance_type, region, az) VALUES ($1, $1, $2, $3, $4)
                    ON CONFLICT (id) DO NOTHING
                    """, [pool.rawValue, pool.instanceType.rawValue, pool.region.rawValue, pool.az.rawValue])
            }
            let rows = try conn.query(
                """
                INSERT INTO agents (client_id, logical_agent_id, instance_id, instance_type, region, az, ami_id,
                                    current_mode, current_pool_id, agent_version, hostname, private_ip, public_ip,
                                    status, installed_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::inet, $13::inet, 'online', now())
                ON CONFLICT (client_id, logical_agent_id) DO UPDATE SET
                    instance_id = COALESCE(EXCLUDED.instance_id, agents.instance_id),
                    instance_type = COALESCE(EXCLUDED.instance_type, agents.instance_type),
                    region = COALESCE(EXCLUDED.region, agents.region),
                    az = COALESCE(EXCLUDED.az, agents.az),
                    ami_id = COALESCE(EXCLUDED.ami_id, agents.ami_id),
                    current_mode = COALESCE(EXCLUDED.current_mode, agents.current_mode),
                    current_pool_id = COALESCE(EXCLUDED.current_pool_id, agents.current_pool_id),
                    agent_version = COALESCE(EXCLUDED.agent_version, agents.agent_version),
                    hostname = COALESCE(EXCLUDED.hostname, agents.hostname),
                    private_ip = COALESCE(EXCLUDED.private_ip, agents.private_ip),
                    public_ip = COALESCE(EXCLUDED.public_ip, agents.public_ip)
                WHERE agents.status <> 'deleted'
                RETURNING id, (xmax = 0) AS created, enabled, auto_switch_enabled, manual_replica_enabled,
                          auto_terminate_enabled, terminate_wait_seconds, decision_engine
                """,
                [
                    clientId, r.logicalAgentId, r.instanceId?.rawValue, r.instanceType?.rawValue, r.region?.rawValue,
                    r.az?.rawValue, r.amiId, r.mode?.rawValue, r.poolId?.rawValue, r.agentVersion, r.hostname, r.privateIp,
                    r.publicIp,
                ])
            guard let row = rows.first else { return nil }  // a deleted agent stays deleted
            let agentId = try row.decode(UUID.self, at: 0)
            let created = try row.decode(Bool.self, at: 1)
            if let instance = r.instanceId {
                // An instance id already owned by another client is left alone.
                try conn.execute(
                    """
                    INSERT INTO instances (id, client_id, agent_id, instance_type, region, az, ami_id, current_mode,
                                           current_pool_id, installed_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now())
                    ON CONFLICT (id) DO UPDATE SET agent_id = EXCLUDED.agent_id, is_active = true, terminated_at = NULL
                    WHERE instances.client_id = EXCLUDED.client_id
                    """,
                    [
                        instance.rawValue, clientId, agentId, r.instanceType?.rawValue, r.region?.rawValue, r.az?.rawValue,
                        r.amiId, r.mode?.rawValue, r.poolId?.rawValue,
                    ])
            }
            if created {
                try conn.execute(
                    """
                    INSERT INTO system_events (event_type, component, client_id, agent_id, message)
                    VALUES ('agent.registered', 'ingest', $1, $2, $3)
                    """, [clientId, agentId, "agent \(r.logicalAgentId) registered"])
            }
            return RegisteredAgent(
                agentId: agentId, clientId: clientId, logicalAgentId: r.logicalAgentId, created: created,
                config: AgentConfig(
                    enabled: try row.decode(Bool.self, at: 2), autoSwitchEnabled: try row.decode(Bool.self, at: 3),
                    manualReplicaEnabled: try row.decode(Bool.self, at: 4), autoTerminateEnabled: try row.decode(Bool.self, at: 5),
                    terminateWaitSeconds: try row.decode(Int.self, at: 6), decisionEngine: try row.decode(String.self, at: 7)))
        }
        guard let result else {
            throw APIError(.conflict, code: "agent_deleted", message: "this logical agent id belongs to a deleted agent")
        }
        agentOwners.withLock { $0[result.agentId] = clientId }
        return result
    }
}
