import Foundation
import HTTPTypes
import SpotModels
import SpotRuntime
import SpotStore

/// What a client token may do. `read`: every GET of the client API and the dashboard;
/// `operate`: also what runs the fleet (switches, replicas, modes, agent traffic and the agent
/// API for agents without enrollment); `admin`: also credentials (tokens, enrollment secrets,
/// revocations) and webhooks. The client's own token is `admin`.
public enum ClientScope: String, Sendable, Codable, Comparable, CaseIterable {
    case read, operate, admin

    var rank: Int {
        switch self {
        case .read: 0
        case .operate: 1
        case .admin: 2
        }
    }

    public static func < (a: ClientScope, b: ClientScope) -> Bool { a.rank < b.rank }

    /// 403 `insufficient_scope` unless this scope covers `needed`.
    public func require(_ needed: ClientScope) throws {
        guard self >= needed else {
            throw APIError(.forbidden, code: "insufficient_scope", message: "this needs a token with scope \(needed.rawValue); this one has \(rawValue)")
        }
    }
}

/// A further client token as listed (never its secret).
public struct ClientTokenInfo: Sendable, Encodable {
    public var keyId: String
    public var name: String
    public var scope: ClientScope
    public var createdAt: Date
    public var expiresAt: Date?
    /// Returned once, when the token is made.
    public var token: String?
}

/// Further client tokens with scopes (`client_tokens`).
extension ClientDirectory {
    /// Makes a token for the client; its secret is returned once and only its digest is kept.
    public func createClientToken(_ client: UUID, name: String, scope: ClientScope, lifetime: TimeInterval?) async throws -> ClientTokenInfo {
        let token = ClientToken.generate()
        return try await store.transaction { conn in
            let row = try conn.query(
                """
                INSERT INTO client_tokens (key_id, token_hash, client_id, scope, name, expires_at)
                VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6)) RETURNING created_at, expires_at
                """, [token.keyId, PGBytes(token.secretDigest), client, scope.rawValue, name, lifetime])[0]
            try SystemEvents.record(
                .init("access.client_token_created", component: "console", clientId: client, message: "token \(token.keyId) (\(scope.rawValue)) '\(name)'"),
                on: conn)
            return ClientTokenInfo(
                keyId: token.keyId, name: name, scope: scope, createdAt: try row.decode(Date.self, at: 0),
                expiresAt: try row.decodeIfPresent(Date.self, at: 1), token: token.text)
        }
    }

    /// The client's live further tokens, newest first.
    public func clientTokens(_ client: UUID) async throws -> [ClientTokenInfo] {
        try await store.withConnection { conn in
            try conn.query(
                """
                SELECT key_id, name, scope, created_at, expires_at FROM client_tokens
                 WHERE client_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) ORDER BY created_at DESC
                """, [client]
            ).map { row in
                ClientTokenInfo(
                    keyId: try row.decode(String.self, at: 0), name: try row.decode(String.self, at: 1),
                    scope: ClientScope(rawValue: try row.decode(String.self, at: 2)) ?? .read, createdAt: try row.decode(Date.self, at: 3),
                    expiresAt: try row.decodeIfPresent(Date.self, at: 4))
            }
        }
    }

    /// Revokes one of the client's further tokens: it stops working here at once and in every
    /// other process when `access.changed` arrives. False: no such live token of this client.
    public func revokeClientToken(_ keyId: String, of client: UUID) async throws -> Bool {
        let change = AccessChanged(change: .clientTokenRevoked, clientId: client)
        let revoked = try await store.transaction { conn -> Bool in
            guard
                try conn.execute(
                    "UPDATE client_tokens SET revoked_at = now() WHERE key_id = $1 AND client_id = $2 AND revoked_at IS NULL", [keyId, client]) == 1
            else { return false }
            try Self.accessChanged(change, "client token \(keyId) revoked", on: conn)
            return true
        }
        if revoked {
            forget(change)
            changed()
        }
        return revoked
    }
}
