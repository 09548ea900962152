import Foundation
import HTTPTypes
import Logging
import ServiceLifecycle
import SpotBus
import SpotModels
import SpotRuntime
import SpotStore
import Synchronization

/// Clients, their tokens and their agents, as ingest and the console need them. Token look-ups and agent
/// ownership are cached so the hot path (heartbeats and reports) does no SQL. A change of who may
/// send what (token rotated, client suspended, agent deleted) is published as `access.changed`
/// in the same transaction, and every process's `AccessUpdates` drops what its cache holds of
/// it; the cache lifetime only bounds how long a missed message could matter.
public final class ClientDirectory: Sendable {
    struct CachedKey {
        var clientId: UUID?  // nil: no such key (cached briefly against floods of bad tokens)
        var digest: [UInt8]
        var scope: ClientScope
        var expires: ContinuousClock.Instant
    }

    public struct RegisteredAgent: Sendable, Encodable {
        public var agentId: UUID
        public var clientId: UUID
        public var logicalAgentId: String
        public var created: Bool
        public var config: AgentConfig
        /// The agent's primary instance and epoch after this registration: an instance that
        /// registers but is not the primary was replaced (a former primary): it must not serve.
        public var primaryInstanceId: String?
        public var primaryEpoch: Int64
    }

    public struct AgentConfig: Sendable, Encodable {
        public var enabled: Bool
        public var autoSwitchEnabled: Bool
        public var manualReplicaEnabled: Bool
        public var autoTerminateEnabled: Bool
        public var terminateWaitSeconds: Int
        public var decisionEngine: String
    }

    let store: PostgresStore
    let ttl: Duration
    private let keys = Mutex<[String: CachedKey]>([:])
    /// Agent tokens by key id (`AgentCredentials.swift`).
    let agentKeys = Mutex<[String: CachedAgentKey]>([:])
    private let agentOwners = Mutex<[UUID: (owner: UUID, expires: ContinuousClock.Instant)]>([:])
    static let maxCacheEntries = 100_000
    /// While PostgreSQL cannot be reached, an expired entry that granted access goes on being
    /// used for this long (a revocation still drops it at once: `access.changed` comes over the
    /// bus), so agents keep reporting through a database outage longer than the cache lifetime.
    static let staleWhileUnreachable: Duration = .seconds(3600)

    /// Called after a commit that wrote `access.changed` to the outbox (wakes the relay).
    let changed: @Sendable () -> Void

    public init(store: PostgresStore, ttl: Duration, changed: @escaping @Sendable () -> Void = {}) {
        self.store = store
        self.ttl = ttl
        self.changed = changed
    }

    /// The client of a bearer token whose scope covers `scope`; `APIError.unauthorized` for an
    /// unknown token, 403 `insufficient_scope` for one whose scope is too small.
    public func authenticate(_ authorization: String?, requiring scope: ClientScope) async throws -> UUID {
        let found = try await credential(authorization)
        try found.scope.require(scope)
        return found.clientId
    }

    /// The client, scope and key id of a bearer client token, or `APIError.unauthorized`.
    public func credential(_ authorization: String?) async throws -> (clientId: UUID, scope: ClientScope, keyId: String) {
        guard let text = ClientToken.bearer(authorization), let token = ClientToken(text) else { throw APIError.unauthorized }
        let now = ContinuousClock.now
        let entry = try await Self.refreshed(keys.withLock { $0[token.keyId] }, now: now, expires: \.expires, grants: { $0.clientId != nil }) {
            try await lookUp(token.keyId, now: now)
        }
        guard let clientId = entry.clientId, token.matches(digest: entry.digest) else { throw APIError.unauthorized }
        return (clientId, entry.scope, token.keyId)
    }

    /// A cached entry while it is fresh, else the one looked up. While PostgreSQL cannot be
    /// reached, an expired entry that granted access is kept for `staleWhileUnreachable`.
    static func refreshed<Entry>(
        _ cached: Entry?, now: ContinuousClock.Instant, expires: (Entry) -> ContinuousClock.Instant, grants: (Entry) -> Bool,
        lookUp: () async throws -> Entry
    ) async throws -> Entry {
        if let cached, expires(cached) >= now { return cached }
        do {
            return try await lookUp()
        } catch let e as APIError where e.code == APIError.databaseUnavailable.code {
            guard let cached, grants(cached), expires(cached) + staleWhileUnreachable > now else { throw APIError.databaseUnavailable }
            return cached
        }
    }

    private func lookUp(_ keyId: String, now: ContinuousClock.Instant) async throws -> CachedKey {
        // the client's own token (admin), or one of its further tokens (client_tokens); an
        // expired one is refused by the query, at most `ttl` after it expired
        let rows = try await directoryQuery(
            """
            SELECT id, token_hash, 'admin' FROM clients WHERE token_key_id = $1 AND status = 'active'
            UNION ALL
            SELECT t.client_id, t.token_hash, t.scope FROM client_tokens t JOIN clients c ON c.id = t.client_id AND c.status = 'active'
             WHERE t.key_id = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())
            """, [keyId])
        let entry: CachedKey
        if let row = rows.first {
            entry = CachedKey(
                clientId: try row.decode(UUID.self, at: 0), digest: try row.decode(PGBytes.self, at: 1).bytes,
                scope: ClientScope(rawValue: try row.decode(String.self, at: 2)) ?? .read, expires: now + ttl)
        } else {
            entry = CachedKey(clientId: nil, digest: [], scope: .read, expires: now + .seconds(5))
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
        let cached = agentOwners.withLock { $0[agentId] }
        if let cached, cached.expires > .now {
            guard cached.owner == clientId else { throw APIError.agentNotFound }
            return
        }
        let rows: [PGRow]
        do {
            rows = try await directoryQuery("SELECT client_id FROM agents WHERE id = $1 AND status <> 'deleted'", [agentId])
        } catch let e as APIError where e.code == APIError.databaseUnavailable.code {
            guard let cached, cached.owner == clientId, cached.expires + Self.staleWhileUnreachable > .now else { throw APIError.databaseUnavailable }
            return
        }
        guard let row = rows.first else { throw APIError.agentNotFound }
        let owner = try row.decode(UUID.self, at: 0)
        remember(agentId, owner: owner)
        guard owner == clientId else { throw APIError.agentNotFound }
    }

    private func remember(_ agentId: UUID, owner: UUID) {
        agentOwners.withLock {
            if $0.count >= Self.maxCacheEntries { $0.removeAll() }
            $0[agentId] = (owner, .now + ttl)
        }
    }

    /// Drops what the caches hold of the client (its key) or agent a change names.
    public func forget(_ change: AccessChanged) {
        // unknown keys too: the client's key may have been unknown while it was suspended
        keys.withLock { cache in cache = cache.filter { $0.value.clientId != nil && $0.value.clientId != change.clientId } }
        if let agent = change.agentId { agentOwners.withLock { _ = $0.removeValue(forKey: agent) } }
        agentKeys.withLock { cache in cache = cache.filter { $0.value.principal != nil && $0.value.principal?.clientId != change.clientId } }
    }

    /// A hot-path read; a database failure becomes 503 so agents retry later.
    func directoryQuery(_ sql: String, _ params: [any PGEncodable]) async throws -> [PGRow] {
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
            try SystemEvents.record(.init("client.created", component: "ingest", clientId: id, message: "client created"), on: conn)
            return id
        }
        return (id, token)
    }

    /// Gives the client a new token; the old one stops working here at once and in every other
    /// process as soon as it has the `access.changed` message. Nil: no such client.
    public func rotateToken(of clientId: UUID) async throws -> (String, ClientToken)? {
        let token = ClientToken.generate()
        let name = try await store.transaction { conn -> String? in
            guard
                let row = try conn.query(
                    "UPDATE clients SET token_key_id = $2, token_hash = $3 WHERE id = $1 RETURNING name", [clientId, token.keyId, PGBytes(token.secretDigest)]
                ).first
            else { return nil }
            try Self.accessChanged(.init(change: .tokenRotated, clientId: clientId), "client token rotated", on: conn)
            return try row.decode(String.self, at: 0)
        }
        forget(.init(change: .tokenRotated, clientId: clientId))
        changed()
        return name.map { ($0, token) }
    }

    /// Suspends a client (its token and agents stop working) or makes it active again.
    /// False: no such client.
    public func setSuspended(_ clientId: UUID, _ suspended: Bool) async throws -> Bool {
        let change: AccessChanged = .init(change: suspended ? .clientSuspended : .clientReactivated, clientId: clientId)
        let found = try await store.transaction { conn -> Bool in
            let status = suspended ? "suspended" : "active"
            guard try conn.query("SELECT 1 FROM clients WHERE id = $1 FOR UPDATE", [clientId]).first != nil else { return false }
            guard try conn.execute("UPDATE clients SET status = $2 WHERE id = $1 AND status <> $2", [clientId, status]) == 1 else { return true }
            try Self.accessChanged(change, "client \(status)", on: conn)
            return true
        }
        forget(change)
        changed()
        return found
    }

    /// Deletes an agent: it may send nothing more, its pending commands are cancelled, and it
    /// stays deleted (registering its logical id again is refused). An agent with an active
    /// replica is refused (409): its replicas are deleted first, so no instance is left
    /// without an owner. False: no such agent of the client.
    public func deleteAgent(_ agentId: UUID, of clientId: UUID) async throws -> Bool {
        let change = AccessChanged(change: .agentDeleted, clientId: clientId, agentId: agentId)
        let found = try await store.transaction { conn -> Bool in
            guard
                try conn.query(
                    "SELECT 1 FROM agents WHERE id = $1 AND client_id = $2 AND status <> 'deleted' FOR UPDATE", [agentId, clientId]
                ).first != nil
            else { return false }
            if try conn.query("SELECT 1 FROM replica_instances WHERE agent_id = $1 AND is_active LIMIT 1", [agentId]).first != nil {
                throw APIError(.conflict, code: "agent_has_replicas", message: "delete the agent's replicas first")
            }
            _ = try conn.execute(
                """
                UPDATE agents SET status = 'deleted', enabled = false, auto_switch_enabled = false, manual_replica_enabled = false
                 WHERE id = $1
                """, [agentId])
            _ = try conn.execute(
                "UPDATE commands SET status = 'cancelled' WHERE agent_id = $1 AND status IN ('pending', 'delivered')", [agentId])
            try Self.accessChanged(change, "agent deleted", on: conn)
            return true
        }
        forget(change)
        changed()
        return found
    }

    /// The system event and the `access.changed` message of a change, in its transaction.
    static func accessChanged(_ change: AccessChanged, _ message: String, on conn: PGConnection) throws {
        try SystemEvents.record(
            .init("access.\(change.change.rawValue)", component: "console", clientId: change.clientId, agentId: change.agentId, message: message),
            on: conn)
        try Outbox.append(Envelope(type: RoutingKey.accessChanged, producer: "spotguard-console", payload: change), on: conn)
    }

    /// Registers an agent, idempotently on (client, logical_agent_id): the same agent id comes
    /// back on every call, with the agent's configuration flags and its primary. A new instance
    /// becomes the primary (the epoch moves on); a former primary of the agent (an instance a
    /// switch or promotion moved away from) registering again changes nothing: it stays replaced.
    ///
    /// With an agent token, only the token's own instance registers, and only as the token's
    /// agent; a fresh enrollment's token is bound to the agent it registers.
    public func register(client clientId: UUID, _ registration: AgentRegistration, as principal: Principal? = nil) async throws -> RegisteredAgent {
        if let principal, principal.isAgentToken, registration.instanceId?.rawValue != principal.instanceId {
            throw APIError(.forbidden, code: "instance_mismatch", message: "an agent token registers only the instance it was issued to")
        }
        let result = try await store.transaction { conn -> RegisteredAgent? in
            var r = registration
            if let instance = r.instanceId,
                try conn.query(
                    """
                    SELECT s.old_instance_id = $3 FROM switches s JOIN agents a ON a.id = s.agent_id
                     WHERE a.client_id = $1 AND a.logical_agent_id = $2 AND $3 IN (s.old_instance_id, s.new_instance_id)
                     ORDER BY s.created_at DESC LIMIT 1
                    """, [clientId, r.logicalAgentId, instance.rawValue]
                ).first?.decode(Bool.self, at: 0) == true
            {
                // nothing of a replaced instance overwrites the agent's facts (the upsert keeps what it is not given)
                (r.instanceId, r.instanceType, r.az, r.amiId, r.mode, r.poolId) = (nil, nil, nil, nil, nil, nil)
                (r.hostname, r.privateIp, r.publicIp, r.usableZones) = (nil, nil, nil, nil)
            }
            try Pools.ensure([r.poolId].compactMap { $0 }, on: conn)
            let rows = try conn.query(
                """
                INSERT INTO agents (client_id, logical_agent_id, instance_id, instance_type, region, az, ami_id,
                                    current_mode, current_pool_id, agent_version, hostname, private_ip, public_ip,
                                    usable_zones, status, installed_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::inet, $13::inet, $14::text[], 'online', now())
                ON CONFLICT (client_id, logical_agent_id) DO UPDATE SET
                    primary_epoch = agents.primary_epoch
                        + CASE WHEN EXCLUDED.instance_id IS DISTINCT FROM agents.instance_id AND EXCLUDED.instance_id IS NOT NULL THEN 1 ELSE 0 END,
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
                    public_ip = COALESCE(EXCLUDED.public_ip, agents.public_ip),
                    usable_zones = COALESCE(EXCLUDED.usable_zones, agents.usable_zones)
                WHERE agents.status <> 'deleted'
                RETURNING id, (xmax = 0) AS created, enabled, auto_switch_enabled, manual_replica_enabled,
                          auto_terminate_enabled, terminate_wait_seconds, decision_engine, instance_id, primary_epoch
                """,
                [
                    clientId, r.logicalAgentId, r.instanceId?.rawValue, r.instanceType?.rawValue, r.region?.rawValue,
                    r.az?.rawValue, r.amiId, r.mode?.rawValue, r.poolId?.rawValue, r.agentVersion, r.hostname, r.privateIp,
                    r.publicIp, r.usableZones.map { PGArray($0.map(\.rawValue)) },
                ])
            guard let row = rows.first else { return nil }  // a deleted agent stays deleted
            let agentId = try row.decode(UUID.self, at: 0)
            let created = try row.decode(Bool.self, at: 1)
            if let principal, principal.isAgentToken {
                guard principal.agentId == nil || principal.agentId == agentId else {
                    throw APIError(.forbidden, code: "token_scope", message: "this agent token belongs to another agent")
                }
                try self.bind(principal, to: agentId, on: conn)
            }
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
                try SystemEvents.record(
                    .init("agent.registered", component: "ingest", clientId: clientId, agentId: agentId, message: "agent \(r.logicalAgentId) registered"),
                    on: conn)
            }
            return RegisteredAgent(
                agentId: agentId, clientId: clientId, logicalAgentId: r.logicalAgentId, created: created,
                config: AgentConfig(
                    enabled: try row.decode(Bool.self, at: 2), autoSwitchEnabled: try row.decode(Bool.self, at: 3),
                    manualReplicaEnabled: try row.decode(Bool.self, at: 4), autoTerminateEnabled: try row.decode(Bool.self, at: 5),
                    terminateWaitSeconds: try row.decode(Int.self, at: 6), decisionEngine: try row.decode(String.self, at: 7)),
                primaryInstanceId: try row.decodeIfPresent(String.self, at: 8), primaryEpoch: try row.decode(Int64.self, at: 9))
        }
        guard let result else {
            throw APIError(.conflict, code: "agent_deleted", message: "this logical agent id belongs to a deleted agent")
        }
        remember(result.agentId, owner: clientId)
        return result
    }
}

/// The process's own queue of `access.changed` messages, feeding its `ClientDirectory`.
public struct AccessUpdates: Service {
    let consumer: BusConsumer

    public init(endpoint: AMQPEndpoint, directory: ClientDirectory, publisher: BusPublisher, logger: Logger) {
        consumer = .processQueue(
            "spotguard.access", bindings: [RoutingKey.accessChanged], endpoint: endpoint, publisher: publisher, logger: logger
        ) { delivery in
            directory.forget(try delivery.decode(AccessChanged.self).payload)
        }
    }

    public var isConnected: Bool { consumer.isConnected }
    public func run() async throws { try await consumer.run() }
}
