import Crypto
import Foundation
import SpotFleet
import SpotRuntime
import SpotStore

/// Dashboard logins. The cookie carries 32 random bytes; the database keeps only their SHA-256
/// (a leaked table opens no session) with the client and the session's CSRF token, so any
/// copy of the console serves any session and a restart logs nobody out.
struct Sessions: Sendable {
    static let cookie = "sg_session"
    /// The login form's CSRF token, before there is a session (double-submit cookie).
    static let loginCookie = "sg_login"

    struct Session: Sendable {
        var clientId: UUID
        var csrf: String
        /// The scope of the token that opened it.
        var scope: ClientScope
    }

    let store: PostgresStore
    let lifetime: Duration
    let secure: Bool

    /// A session for the client, with the scope of the token (`keyId`) that opened it; it ends
    /// when that token is revoked or expires.
    func create(client: UUID, scope: ClientScope, keyId: String) async throws -> (cookie: String, session: Session) {
        let value = ConsoleController.randomHex(32)
        let csrf = ConsoleController.randomHex(32)
        let seconds = Double(lifetime.components.seconds)
        try await store.transaction { conn in
            _ = try conn.execute("DELETE FROM console_sessions WHERE expires_at < now()")
            _ = try conn.execute(
                """
                INSERT INTO console_sessions (id_hash, client_id, csrf_token, expires_at, scope, token_key_id)
                VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5, $6)
                """, [PGBytes(Self.digest(value)), client, csrf, seconds, scope.rawValue, keyId])
        }
        return (value, Session(clientId: client, csrf: csrf, scope: scope))
    }

    /// The session of a cookie; none once it expired or its client is suspended.
    func find(_ value: String?) async throws -> Session? {
        guard let value, value.count == 64, value.allSatisfy(\.isHexDigit) else { return nil }
        let rows = try await store.read { conn in
            try conn.query(
                """
                SELECT s.client_id, s.csrf_token, s.scope FROM console_sessions s JOIN clients c ON c.id = s.client_id AND c.status = 'active'
                 WHERE s.id_hash = $1 AND s.expires_at > now()
                   AND (s.token_key_id IS NULL OR s.token_key_id = c.token_key_id
                        OR EXISTS (SELECT 1 FROM client_tokens t WHERE t.key_id = s.token_key_id AND t.client_id = s.client_id
                                      AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())))
                """, [PGBytes(Self.digest(value))])
        }
        guard let row = rows.first else { return nil }
        return Session(
            clientId: try row.decode(UUID.self, at: 0), csrf: try row.decode(String.self, at: 1),
            scope: ClientScope(rawValue: try row.decode(String.self, at: 2)) ?? .read)
    }

    /// Ends every session of a client (its token was rotated, or it was suspended).
    func endAll(of client: UUID) async throws {
        _ = try await store.read { try $0.execute("DELETE FROM console_sessions WHERE client_id = $1", [client]) }
    }

    func end(_ value: String?) async throws {
        guard let value else { return }
        _ = try await store.read { try $0.execute("DELETE FROM console_sessions WHERE id_hash = $1", [PGBytes(Self.digest(value))]) }
    }

    func setCookie(_ name: String, _ value: String, path: String = "/", maxAge: Int) -> String {
        "\(name)=\(value); Path=\(path); Max-Age=\(maxAge); HttpOnly; SameSite=Strict\(secure ? "; Secure" : "")"
    }

    var sessionMaxAge: Int { Int(lifetime.components.seconds) }

    static func digest(_ value: String) -> [UInt8] { Array(SHA256.hash(data: Array(value.utf8))) }

    /// Constant-time comparison of a submitted CSRF token with the expected one. Nothing
    /// matches an empty token: a login form posted without its cookie (expected "") and an
    /// empty field would otherwise agree.
    static func tokensMatch(_ given: String?, _ expected: String) -> Bool {
        guard let given, !given.isEmpty, !expected.isEmpty else { return false }
        return ClientToken.constantTimeEquals(digest(given), digest(expected))
    }
}
