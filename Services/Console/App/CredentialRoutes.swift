import Foundation
import Hummingbird
import SpotFleet
import SpotModels
import SpotRuntime

/// Credentials, for a client's `admin` tokens: enrollment secrets instances enroll with (no
/// client token goes onto an instance), revocation of an agent's tokens, and further client
/// tokens with scopes.
extension ConsoleController {
    struct EnrollmentRequest: Decodable {
        var uses: Int?
        var ttlSeconds: Int?
        var accountId: String?
        var agentId: UUID?
    }

    struct TokenRequest: Decodable {
        var name: String?
        var scope: String?
        var ttlSeconds: Int?
    }

    struct Revoked: Encodable {
        var agentId: UUID
        var revoked: Int
    }

    func addCredentialRoutes(to router: Router<ServiceRequestContext>) {
        // `uses` instances (default 1, at most 10,000) may enroll with it within `ttl_seconds`
        // (default 3600, 60 s to 7 days), from `account_id` only when given, as `agent_id` when given.
        router.post("/api/client/:clientId/enrollments") { request, context in
            let client = try await authenticateClient(request, context, scope: .admin)
            let body = try await decode(EnrollmentRequest.self, from: request)
            let uses = body.uses ?? 1
            guard (1...10_000).contains(uses) else {
                throw APIError(.badRequest, code: "out_of_range", message: "uses must be 1 to 10000", field: "uses")
            }
            let ttl = body.ttlSeconds ?? 3600
            guard (60...604_800).contains(ttl) else {
                throw APIError(.badRequest, code: "out_of_range", message: "ttl_seconds must be 60 to 604800 (7 days)", field: "ttl_seconds")
            }
            if let account = body.accountId, account.wholeMatch(of: /[0-9]{12}/) == nil {
                throw APIError(.badRequest, code: "invalid_account_id", message: "account_id is a 12-digit AWS account id", field: "account_id")
            }
            if let agent = body.agentId { try await directory.requireAgent(agent, of: client) }
            let secret = try await directory.createEnrollmentSecret(
                client: client, agent: body.agentId, account: body.accountId, uses: uses, lifetime: TimeInterval(ttl), createdBy: "client token")
            return try HTTPJSON.response(secret, status: .created)
        }
        // every token of the agent stops working, on every ingest copy, within a bus round trip
        router.post("/api/client/agents/:agentId/revoke-tokens") { request, context in
            let (client, agent) = try await authenticateAgent(request, context, scope: .admin)
            let revoked = try await directory.revokeAgentTokens(agent.id, of: client)
            return try HTTPJSON.response(Revoked(agentId: agent.id, revoked: revoked), status: .ok)
        }
        // a further token: `name` (1–100 characters), `scope` read | operate | admin, and
        // optionally `ttl_seconds` (60 s to 1 year; default: until revoked)
        router.post("/api/client/:clientId/tokens") { request, context in
            let client = try await authenticateClient(request, context, scope: .admin)
            let body = try await decode(TokenRequest.self, from: request)
            // the shared text rule (code points as PostgreSQL counts them; no control character,
            // as a NUL would cut the name short on its way to the database), refused as this
            // route's own code
            let checked = try? FieldChecker(limits: IngestLimits(), now: Date()).text(body.name, "name", maxLength: 100)
            guard let name = checked ?? nil else {
                throw APIError(.badRequest, code: "invalid_name", message: "name must be 1 to 100 printable characters", field: "name")
            }
            guard let raw = body.scope, let scope = ClientScope(rawValue: raw) else {
                throw APIError(.badRequest, code: "invalid_scope", message: "scope must be read, operate or admin", field: "scope")
            }
            if let ttl = body.ttlSeconds, !(60...31_536_000).contains(ttl) {
                throw APIError(.badRequest, code: "out_of_range", message: "ttl_seconds must be 60 to 31536000 (a year)", field: "ttl_seconds")
            }
            let made = try await directory.createClientToken(client, name: name, scope: scope, lifetime: body.ttlSeconds.map(TimeInterval.init))
            return try HTTPJSON.response(made, status: .created)
        }
        router.get("/api/client/:clientId/tokens") { request, context in
            let client = try await authenticateClient(request, context, scope: .admin)
            return try HTTPJSON.response(Listing(items: try await directory.clientTokens(client)), status: .ok)
        }
        // stops working on every console and ingest copy within a bus round trip
        router.delete("/api/client/:clientId/tokens/:keyId") { request, context in
            let client = try await authenticateClient(request, context, scope: .admin)
            guard let key = context.parameters.get("keyId"), try await directory.revokeClientToken(key, of: client) else {
                throw APIError(.notFound, code: "token_not_found", message: "no such token")
            }
            return Response(status: .noContent)
        }
    }
}
