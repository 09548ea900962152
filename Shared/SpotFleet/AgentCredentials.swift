import Foundation
import HTTPTypes
import SpotModels
import SpotRuntime
import SpotStore
import Synchronization

/// Who a bearer token speaks for: a client (its API token: people and automation, every agent
/// of the client) or one agent (an agent token, issued to one enrolled instance: its own
/// agent's traffic and nothing else).
public struct Principal: Sendable, Equatable {
    public var clientId: UUID
    /// Set for agent tokens: the only agent they may act for (nil until the enrolled instance
    /// registered its agent).
    public var agentId: UUID?
    /// Set for agent tokens: the enrolled instance (from its signed identity document).
    public var instanceId: String?
    public var agentTokenKeyId: String?

    public var isAgentToken: Bool { agentTokenKeyId != nil }

    public static func client(_ id: UUID) -> Principal { Principal(clientId: id) }
}

/// What an enrollment gives the instance: its agent token, once.
public struct Enrollment: Sendable, Encodable {
    public var token: String
    public var clientId: UUID
    public var agentId: UUID?
    public var instanceId: String
    public var expiresAt: Date
}

public struct EnrollmentSecret: Sendable, Encodable {
    public var enrollmentSecret: String
    public var agentId: UUID?
    public var accountId: String?
    public var uses: Int
    public var expiresAt: Date
}

/// Per-instance credentials: enrollment secrets, enrolled instances and agent tokens.
extension ClientDirectory {
    /// How long an agent token lives; the agent rotates it well before (`rotateAgentToken`).
    public static let agentTokenLifetime: TimeInterval = 30 * 86_400
    /// How long a rotated agent token keeps working, so a reply lost on the way cannot lock
    /// the agent out.
    public static let rotationGrace: TimeInterval = 300

    /// The principal of a client or agent token, or `APIError.unauthorized`. A client token
    /// acts for agents only with scope `operate` or more (a `read` token gets 403).
    public func principal(_ authorization: String?) async throws -> Principal {
        guard let text = ClientToken.bearer(authorization) else { throw APIError.unauthorized }
        guard let token = ClientToken(text, kind: ClientToken.agent) else {
            return .client(try await authenticate(authorization, requiring: .operate))
        }
        let now = ContinuousClock.now
        let entry = try await Self.refreshed(
            agentKeys.withLock { $0[token.keyId] }, now: now, expires: \.expires, grants: { $0.principal != nil && $0.validUntil > Date() }
        ) { try await lookUpAgentKey(token.keyId, now: now) }
        guard let principal = entry.principal, entry.validUntil > Date(), token.matches(digest: entry.digest) else { throw APIError.unauthorized }
        return principal
    }

    private func lookUpAgentKey(_ keyId: String, now: ContinuousClock.Instant) async throws -> CachedAgentKey {
        let rows = try await directoryQuery(
            """
            SELECT t.client_id, t.agent_id, t.instance_id, t.token_hash, t.expires_at FROM agent_tokens t
              JOIN clients c ON c.id = t.client_id AND c.status = 'active'
              LEFT JOIN agents a ON a.id = t.agent_id
             WHERE t.key_id = $1 AND t.revoked_at IS NULL AND t.expires_at > now() AND (a.id IS NULL) = (t.agent_id IS NULL)
               AND COALESCE(a.status, '') <> 'deleted'
            """, [keyId])
        let entry: CachedAgentKey
        if let row = rows.first {
            entry = CachedAgentKey(
                principal: Principal(
                    clientId: try row.decode(UUID.self, at: 0), agentId: try row.decodeIfPresent(UUID.self, at: 1),
                    instanceId: try row.decode(String.self, at: 2), agentTokenKeyId: keyId),
                digest: try row.decode(PGBytes.self, at: 3).bytes, validUntil: try row.decode(Date.self, at: 4), expires: now + ttl)
        } else {
            entry = CachedAgentKey(principal: nil, digest: [], validUntil: .distantPast, expires: now + .seconds(5))
        }
        agentKeys.withLock {
            if $0.count >= Self.maxCacheEntries { $0.removeAll() }
            $0[keyId] = entry
        }
        return entry
    }

    /// A secret an instance enrolls with (returned once; only its digest is kept).
    public func createEnrollmentSecret(
        client: UUID, agent: UUID?, account: String?, uses: Int, lifetime: TimeInterval, createdBy: String
    ) async throws -> EnrollmentSecret {
        let secret = ClientToken.generate(ClientToken.enrollment)
        let expires = try await store.transaction { conn -> Date in
            let rows = try conn.query(
                """
                INSERT INTO enrollment_secrets (key_id, secret_hash, client_id, agent_id, account_id, uses_left, expires_at, created_by)
                VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7), $8) RETURNING expires_at
                """, [secret.keyId, PGBytes(secret.secretDigest), client, agent, account, uses, lifetime, createdBy])
            try SystemEvents.record(
                .init(
                    "access.enrollment_secret_created", component: "ingest", clientId: client, agentId: agent,
                    message: "enrollment secret \(secret.keyId) for \(uses) instance(s) by \(createdBy)"), on: conn)
            return try rows[0].decode(Date.self, at: 0)
        }
        return EnrollmentSecret(enrollmentSecret: secret.text, agentId: agent, accountId: account, uses: uses, expiresAt: expires)
    }

    /// The AWS account an agent token's instance enrolled from (nil for client tokens).
    public func enrolledAccount(of principal: Principal) async throws -> String? {
        guard let instance = principal.instanceId else { return nil }
        return try await directoryQuery("SELECT account_id FROM enrolled_instances WHERE instance_id = $1", [instance]).first?.decode(String.self, at: 0)
    }

    /// Enrolls the instance a verified identity document names: spends one use of the secret,
    /// records the instance (a second enrollment of it is refused: the document was replayed)
    /// and issues its agent token.
    public func enroll(secret text: String, instanceId: String, accountId: String, region: String) async throws -> Enrollment {
        guard let secret = ClientToken(text, kind: ClientToken.enrollment) else {
            throw APIError(.unauthorized, code: "invalid_enrollment_secret", message: "the enrollment secret is not valid")
        }
        let token = ClientToken.generate(ClientToken.agent)
        return try await store.transaction { conn -> Enrollment in
            guard
                let row = try conn.query(
                    """
                    SELECT s.secret_hash, s.client_id, s.agent_id, s.account_id FROM enrollment_secrets s
                      JOIN clients c ON c.id = s.client_id AND c.status = 'active'
                     WHERE s.key_id = $1 AND s.uses_left > 0 AND s.expires_at > now() FOR UPDATE OF s
                    """, [secret.keyId]
                ).first, secret.matches(digest: try row.decode(PGBytes.self, at: 0).bytes)
            else {
                throw APIError(.unauthorized, code: "invalid_enrollment_secret", message: "the enrollment secret is unknown, spent or expired")
            }
            let client = try row.decode(UUID.self, at: 1)
            let agent = try row.decodeIfPresent(UUID.self, at: 2)
            if let account = try row.decodeIfPresent(String.self, at: 3), account != accountId {
                throw APIError(.forbidden, code: "account_mismatch", message: "this enrollment secret is for another AWS account")
            }
            guard
                try conn.execute(
                    """
                    INSERT INTO enrolled_instances (instance_id, client_id, account_id, region, enrollment_key_id)
                    VALUES ($1, $2, $3, $4, $5) ON CONFLICT (instance_id) DO NOTHING
                    """, [instanceId, client, accountId, region, secret.keyId]) == 1
            else {
                throw APIError(.conflict, code: "identity_replayed", message: "this instance has already enrolled; its identity document cannot be used again")
            }
            try conn.execute("UPDATE enrollment_secrets SET uses_left = uses_left - 1 WHERE key_id = $1", [secret.keyId])
            let expires = try Self.issueAgentToken(token, client: client, agent: agent, instance: instanceId, on: conn)
            try SystemEvents.record(
                .init(
                    "agent.enrolled", component: "ingest", clientId: client, agentId: agent, message: "instance \(instanceId) of account \(accountId) enrolled"),
                on: conn)
            return Enrollment(token: token.text, clientId: client, agentId: agent, instanceId: instanceId, expiresAt: expires)
        }
    }

    private static func issueAgentToken(_ token: ClientToken, client: UUID, agent: UUID?, instance: String, on conn: PGConnection) throws -> Date {
        try conn.query(
            """
            INSERT INTO agent_tokens (key_id, token_hash, client_id, agent_id, instance_id, expires_at)
            VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6)) RETURNING expires_at
            """, [token.keyId, PGBytes(token.secretDigest), client, agent, instance, agentTokenLifetime]
        )[0].decode(Date.self, at: 0)
    }

    /// Binds a fresh enrollment's token to the agent its instance registered.
    func bind(_ principal: Principal, to agent: UUID, on conn: PGConnection) throws {
        guard let key = principal.agentTokenKeyId, principal.agentId == nil else { return }
        try conn.execute("UPDATE agent_tokens SET agent_id = $2 WHERE key_id = $1 AND agent_id IS NULL", [key, agent])
        agentKeys.withLock { _ = $0.removeValue(forKey: key) }
    }

    /// A new token for the same agent and instance; the old one works for `rotationGrace` more.
    public func rotateAgentToken(_ principal: Principal) async throws -> Enrollment {
        guard let key = principal.agentTokenKeyId, let instance = principal.instanceId else {
            throw APIError(.forbidden, code: "token_scope", message: "only an agent token can be rotated this way")
        }
        let token = ClientToken.generate(ClientToken.agent)
        let expires = try await store.transaction { conn -> Date in
            try conn.execute(
                "UPDATE agent_tokens SET expires_at = LEAST(expires_at, now() + make_interval(secs => $2)) WHERE key_id = $1", [key, Self.rotationGrace])
            return try Self.issueAgentToken(token, client: principal.clientId, agent: principal.agentId, instance: instance, on: conn)
        }
        agentKeys.withLock { _ = $0.removeValue(forKey: key) }
        return Enrollment(token: token.text, clientId: principal.clientId, agentId: principal.agentId, instanceId: instance, expiresAt: expires)
    }

    /// Revokes every token of the agent: they stop working here at once and in every other
    /// process when it has the `access.changed` message. Returns how many were live.
    public func revokeAgentTokens(_ agent: UUID, of client: UUID) async throws -> Int {
        let change = AccessChanged(change: .agentTokensRevoked, clientId: client, agentId: agent)
        let revoked = try await store.transaction { conn -> Int in
            let n = try conn.execute(
                "UPDATE agent_tokens SET revoked_at = now() WHERE agent_id = $1 AND client_id = $2 AND revoked_at IS NULL AND expires_at > now()",
                [agent, client])
            try Self.accessChanged(change, "\(n) agent token(s) revoked", on: conn)
            return n
        }
        forget(change)
        changed()
        return revoked
    }
}

struct CachedAgentKey {
    var principal: Principal?  // nil: no such live token (cached briefly against floods of bad tokens)
    var digest: [UInt8]
    var validUntil: Date
    var expires: ContinuousClock.Instant
}
