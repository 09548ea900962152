import Foundation
import Hummingbird
import SpotFleet
import SpotModels
import SpotRuntime
import SpotStore

/// The admin API (seed 001): system health, the client list, client creation and token
/// rotation, behind `SPOTGUARD_ADMIN_TOKEN`.
extension ConsoleController {
    func addAdminAPI(to router: Router<ServiceRequestContext>) {
        router.get("/api/admin/system-health") { request, _ in
            try APIError.requireAdmin(request.headers[.authorization], token: configuration.adminToken)
            return try HTTPJSON.response(try await systemHealth(), status: .ok)
        }
        router.get("/api/admin/clients") { request, _ in
            try APIError.requireAdmin(request.headers[.authorization], token: configuration.adminToken)
            return try HTTPJSON.response(Listing(items: try await clients()), status: .ok)
        }
        router.post("/api/admin/clients") { request, _ in
            try APIError.requireAdmin(request.headers[.authorization], token: configuration.adminToken)
            let body = try await decode(NewClient.self, from: request)
            let (name, email) = try Self.validated(body)
            let (id, token) = try await directory.createClient(name: name, email: email)
            return try HTTPJSON.response(IssuedToken(clientId: id, name: name, token: token.text), status: .created)
        }
        router.post("/api/admin/clients/:clientId/rotate-token") { request, context in
            try APIError.requireAdmin(request.headers[.authorization], token: configuration.adminToken)
            let id = try pathUUID("clientId", context, notFound: "client_not_found")
            guard let (name, token) = try await directory.rotateToken(of: id) else {
                throw APIError(.notFound, code: "client_not_found", message: "no such client")
            }
            // the old token's dashboard sessions end with it
            try await sessions.endAll(of: id)
            return try HTTPJSON.response(IssuedToken(clientId: id, name: name, token: token.text), status: .ok)
        }
        for (action, suspended) in [("suspend", true), ("reactivate", false)] {
            router.post("/api/admin/clients/:clientId/\(action)") { request, context in
                try APIError.requireAdmin(request.headers[.authorization], token: configuration.adminToken)
                let id = try pathUUID("clientId", context, notFound: "client_not_found")
                guard try await directory.setSuspended(id, suspended) else {
                    throw APIError(.notFound, code: "client_not_found", message: "no such client")
                }
                if suspended { try await sessions.endAll(of: id) }
                return try HTTPJSON.response(ClientStatus(clientId: id, status: suspended ? "suspended" : "active"), status: .ok)
            }
        }
    }

    struct ClientStatus: Encodable {
        var clientId: UUID
        var status: String
    }

    struct NewClient: Decodable, Sendable {
        var name: String?
        var email: String?
    }

    struct IssuedToken: Encodable {
        var clientId: UUID
        var name: String
        /// Shown once; only its digest is stored.
        var token: String
    }

    static func validated(_ body: NewClient) throws -> (String, String?) {
        do {
            return try FieldChecker(limits: IngestLimits(), now: Date()).client(name: body.name, email: body.email)
        } catch let e as ValidationError {
            throw APIError.validation(e)
        }
    }

    struct ClientSummary: Encodable, Sendable {
        var clientId: UUID
        var name: String
        var email: String?
        var status: String
        var agents: Int
        var agentsOnline: Int
        var createdAt: Date
    }

    func clients() async throws -> [ClientSummary] {
        try await store.read { conn in
            try conn.query(
                """
                SELECT c.id, c.name, c.email, c.status, count(a.id)::int, count(a.id) FILTER (WHERE a.status = 'online')::int, c.created_at
                  FROM clients c LEFT JOIN agents a ON a.client_id = c.id AND a.status <> 'deleted'
                 GROUP BY c.id ORDER BY c.created_at
                """
            ).map { r in
                ClientSummary(
                    clientId: try r.decode(UUID.self, at: 0), name: try r.decode(String.self, at: 1), email: try r.decodeIfPresent(String.self, at: 2),
                    status: try r.decode(String.self, at: 3), agents: try r.decode(Int.self, at: 4), agentsOnline: try r.decode(Int.self, at: 5),
                    createdAt: try r.decode(Date.self, at: 6))
            }
        }
    }

    struct SystemHealth: Encodable {
        var status: String
        var database: String
        var broker: String
        var clients: Int
        var agents: [String: Int]
        var activeReplicas: Int
        var pendingCommands: Int
        var outboxBacklog: Int
        var webhookDeliveriesPending: Int
        var webhookDeliveriesDead: Int
        var latestCleanBucket: Date?
        var errorsLastHour: Int
        var checkedAt: Date
    }

    /// What an operator checks first: the stores reachable, the backlogs, the freshest data.
    func systemHealth() async throws -> SystemHealth {
        let broker = brokerConnected() ? "up" : "down"
        do {
            return try await store.withConnection { conn in
                let one = { (sql: String) throws -> Int in try conn.query(sql)[0].decode(Int.self, at: 0) }
                var agents: [String: Int] = [:]
                for r in try conn.query("SELECT status, count(*)::int FROM agents GROUP BY status") {
                    agents[try r.decode(String.self, at: 0)] = try r.decode(Int.self, at: 1)
                }
                return SystemHealth(
                    status: broker == "up" ? "ok" : "degraded", database: "up", broker: broker,
                    clients: try one("SELECT count(*)::int FROM clients"), agents: agents,
                    activeReplicas: try one("SELECT count(*)::int FROM replica_instances WHERE is_active"),
                    pendingCommands: try one("SELECT count(*)::int FROM commands WHERE status IN ('pending', 'delivered')"),
                    outboxBacklog: try one("SELECT count(*)::int FROM outbox"),
                    webhookDeliveriesPending: try one("SELECT count(*)::int FROM webhook_deliveries WHERE status = 'pending'"),
                    webhookDeliveriesDead: try one("SELECT count(*)::int FROM webhook_deliveries WHERE status = 'dead'"),
                    latestCleanBucket: try conn.query("SELECT max(time_bucket) FROM pricing_snapshots_clean")[0].decodeIfPresent(Date.self, at: 0),
                    errorsLastHour: try one(
                        "SELECT count(*)::int FROM system_events WHERE severity IN ('error', 'critical') AND created_at > now() - interval '1 hour'"),
                    checkedAt: Date())
            }
        } catch is PGError {
            throw APIError(.serviceUnavailable, code: "database_unavailable", message: "the database is unreachable (broker: \(broker))", retryAfterSeconds: 5)
        }
    }
}
