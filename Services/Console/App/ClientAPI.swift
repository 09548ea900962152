import Crypto
import Foundation
import Hummingbird
import NIOCore
import SpotFleet
import SpotModels
import SpotRuntime
import SpotStore

/// The client REST API (seed 001). Lists are under `/api/client/{clientId}/…`, actions on one
/// agent under `/api/client/agents/{agentId}/…`; both check that the token's client owns what
/// the path names.
extension ConsoleController {
    func addClientAPI(to router: Router<ServiceRequestContext>) {
        let client = "/api/client/:clientId"
        router.get("\(client)/agents") { request, context in
            let client = try await authenticateClient(request, context)
            let agents = try await fleet.agents(client)
            return try HTTPJSON.response(Listing(items: agents), status: .ok)
        }
        router.get("\(client)/instances") { request, context in
            let client = try await authenticateClient(request, context)
            let items = try await fleet.instances(
                client, activeOnly: try Self.flag(request, "active"), limit: try Self.integer(request, "limit", default: 200, range: 1...1000))
            return try HTTPJSON.response(Listing(items: items), status: .ok)
        }
        router.get("\(client)/replicas") { request, context in
            let client = try await authenticateClient(request, context)
            var agent: UUID?
            if let raw = request.uri.queryParameters["agent_id"] {
                guard let id = UUID(uuidString: String(raw)) else {
                    throw APIError(.badRequest, code: "invalid_agent_id", message: "agent_id must be a UUID", field: "agent_id")
                }
                agent = id
            }
            let items = try await fleet.replicas(client, of: agent.map { [$0] }, activeOnly: try Self.flag(request, "active"))
            return try HTTPJSON.response(Listing(items: items), status: .ok)
        }
        router.get("\(client)/switches", use: switches)
        router.get("\(client)/savings", use: savings)
        router.get("\(client)/notifications") { request, context in
            let client = try await authenticateClient(request, context)
            let items = try await fleet.notifications(
                client, unreadOnly: try Self.flag(request, "unread"), limit: try Self.integer(request, "limit", default: 100, range: 1...500))
            return try HTTPJSON.response(Listing(items: items), status: .ok)
        }
        router.post("\(client)/notifications/:notificationId/read") { request, context in
            // marking what one has read changes nothing of the fleet
            let client = try await authenticateClient(request, context, scope: .read)
            let id = try pathUUID("notificationId", context, notFound: "notification_not_found")
            guard try await fleet.markRead(client, id) else {
                throw APIError(.notFound, code: "notification_not_found", message: "no such notification")
            }
            return try HTTPJSON.response(MarkedRead(notificationId: id), status: .ok)
        }
        router.get("\(client)/prices") { request, context in
            let client = try await authenticateClient(request, context)
            let days = try Self.integer(request, "days", default: 7, range: 1...90)
            let pools = try await fleet.pools(client)
            guard let raw = request.uri.queryParameters["pool_id"] else {
                return try HTTPJSON.response(["pools": pools], status: .ok)
            }
            guard PoolID(rawValue: String(raw)) != nil else {
                throw APIError(.badRequest, code: "invalid_pool_id", message: "pool_id must look like t3.medium.us-east-1b", field: "pool_id")
            }
            guard pools.contains(String(raw)) else {
                throw APIError(.notFound, code: "pool_not_found", message: "no such pool among this client's instance types")
            }
            return try HTTPJSON.response(try await fleet.prices(String(raw), seconds: days * 86_400), status: .ok)
        }
        addWebhookRoutes(to: router)
        addCredentialRoutes(to: router)

        let agent = "/api/client/agents/:agentId"
        router.get(RouterPath(agent)) { request, context in
            let (_, agent) = try await authenticateAgent(request, context)
            return try HTTPJSON.response(AgentDetail(agent: agent, pools: try await fleet.switchChoices(for: agent)), status: .ok)
        }
        router.delete(RouterPath(agent)) { request, context in
            let (client, agent) = try await authenticateAgent(request, context)
            guard try await directory.deleteAgent(agent.id, of: client) else { throw APIError.agentNotFound }
            return try HTTPJSON.response(["agent_id": agent.id.uuidString.lowercased(), "status": "deleted"], status: .ok)
        }
        router.post("\(agent)/config") { request, context in
            let (client, agent) = try await authenticateAgent(request, context)
            return try Self.response(try await applyConfig(try await decode(ConfigChange.self, from: request), client: client, agent: agent))
        }
        router.post("\(agent)/force-switch") { request, context in
            let (client, agent) = try await authenticateAgent(request, context)
            return try Self.response(try await forceSwitch(try await decode(ForceSwitch.self, from: request), client: client, agent: agent))
        }
        router.get("\(agent)/traffic") { request, context in
            let (client, agent) = try await authenticateAgent(request, context)
            return try Self.response(try await replicas.call(ReplicaRequest(operation: .getTraffic, clientId: client, agentId: agent.id)))
        }
        router.put("\(agent)/traffic") { request, context in
            let (client, agent) = try await authenticateAgent(request, context)
            let traffic = try await decode(TrafficConfig.self, from: request)
            return try Self.response(
                try await replicas.call(
                    ReplicaRequest(
                        operation: .setTraffic, clientId: client, agentId: agent.id,
                        body: String(decoding: try WireJSON.encoder().encode(traffic), as: UTF8.self))))
        }
        router.post("\(agent)/replicas/:replicaId/promote") { request, context in
            let (client, agent) = try await authenticateAgent(request, context)
            let replica = try pathUUID("replicaId", context, notFound: "replica_not_found")
            return try Self.response(
                try await replicas.call(ReplicaRequest(operation: .promoteReplica, clientId: client, agentId: agent.id, replicaId: replica)))
        }
        router.delete("\(agent)/replicas/:replicaId") { request, context in
            let (client, agent) = try await authenticateAgent(request, context)
            let replica = try pathUUID("replicaId", context, notFound: "replica_not_found")
            return try Self.response(
                try await replicas.call(ReplicaRequest(operation: .deleteReplica, clientId: client, agentId: agent.id, replicaId: replica)))
        }
    }

    struct Listing<Item: Encodable>: Encodable {
        var items: [Item]
        var count: Int
        init(items: [Item]) {
            self.items = items
            count = items.count
        }
    }

    struct MarkedRead: Encodable {
        var notificationId: UUID
        var isRead = true
    }

    struct AgentDetail: Encodable {
        var agent: FleetViews.AgentView
        var pools: [FleetViews.PoolChoice]
    }

    static func response(_ reply: APIReply) throws -> Response {
        Response(
            status: HTTPResponse.Status(code: reply.status), headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(string: reply.body)))
    }

    static func reply<T: Encodable>(_ status: Int, _ value: T) throws -> APIReply {
        APIReply(status: status, body: String(decoding: try WireJSON.encoder().encode(value), as: UTF8.self))
    }

    static func refusal(_ status: Int, _ code: String, _ message: String, field: String? = nil) throws -> APIReply {
        try reply(status, ErrorBody(code: code, message: message, field: field))
    }

    // MARK: configuration

    /// The agent's modes (seed 001's AgentConfigModal). Manual replica mode and the automatic
    /// modes exclude each other: asking for both is 409 `modes_exclusive`; turning manual mode
    /// on while an automatic mode stays on is the coordinator's 409 `auto_mode_active`.
    struct ConfigChange: Decodable, Sendable {
        var autoSwitchEnabled: Bool?
        var autoTerminateEnabled: Bool?
        var manualReplicaEnabled: Bool?
        var autoReplicaEnabled: Bool?
        var terminateWaitSeconds: Int?
        var decisionEngine: String?
        var interruptionCost: Double?
    }

    func applyConfig(_ change: ConfigChange, client: UUID, agent: FleetViews.AgentView) async throws -> APIReply {
        if change.manualReplicaEnabled == true, change.autoSwitchEnabled == true || change.autoTerminateEnabled == true {
            return try Self.refusal(
                409, "modes_exclusive", "manual replica mode excludes auto-switch and auto-terminate; turn those off to use manual replicas")
        }
        let modes = ModeChange(
            autoSwitchEnabled: change.autoSwitchEnabled, autoTerminateEnabled: change.autoTerminateEnabled,
            autoReplicaEnabled: change.autoReplicaEnabled, terminateWaitSeconds: change.terminateWaitSeconds,
            decisionEngine: change.decisionEngine, interruptionCost: change.interruptionCost)
        func call(_ operation: ReplicaOperation, body: String? = nil) async throws -> APIReply {
            try await replicas.call(ReplicaRequest(operation: operation, clientId: client, agentId: agent.id, body: body))
        }
        // manual mode off first, so automatic modes may come on; on last, after they went off
        if change.manualReplicaEnabled == false, agent.manualReplicaEnabled {
            let r = try await call(.disableManualReplica)
            guard (200..<300).contains(r.status) else { return r }
        }
        if !modes.isEmpty {
            let r = try await call(.setModes, body: String(decoding: try WireJSON.encoder().encode(modes), as: UTF8.self))
            guard (200..<300).contains(r.status) else { return r }
        }
        if change.manualReplicaEnabled == true, !agent.manualReplicaEnabled {
            let r = try await call(.enableManualReplica)
            guard (200..<300).contains(r.status) else { return r }
        }
        return try Self.reply(200, try await fleet.agent(agent.id, of: client))
    }

    // MARK: force switch

    /// `{"target": "replica"}` promotes the manual replica (manual mode); otherwise
    /// `{"target_mode": "spot"|"ondemand", "target_pool_id": "…"}` queues a `switch` for the
    /// primary to that pool (a zone of the agent's instance type and region) or to on-demand.
    struct ForceSwitch: Decodable, Sendable {
        var target: String?
        var targetMode: String?
        var targetPoolId: String?
    }

    struct SwitchQueued: Encodable {
        var commandId: UUID
        var targetMode: String
        var targetPoolId: String?
    }

    func forceSwitch(_ body: ForceSwitch, client: UUID, agent: FleetViews.AgentView) async throws -> APIReply {
        if body.target == "replica" {
            return try await replicas.call(ReplicaRequest(operation: .manualSwitch, clientId: client, agentId: agent.id))
        }
        if let target = body.target, target != "pool" {
            return try Self.refusal(400, "invalid_value", "target must be replica or pool", field: "target")
        }
        guard let modeText = body.targetMode ?? (body.targetPoolId == nil ? nil : "spot"), let mode = InstanceMode(rawValue: modeText) else {
            return try Self.refusal(400, "invalid_mode", "target_mode must be spot or ondemand", field: "target_mode")
        }
        var pool: PoolID?
        if let text = body.targetPoolId {
            guard let p = PoolID(rawValue: text) else {
                return try Self.refusal(400, "invalid_pool_id", "target_pool_id must look like t3.medium.us-east-1b", field: "target_pool_id")
            }
            guard try await fleet.switchChoices(for: agent).contains(where: { $0.poolId == text }) else {
                return try Self.refusal(
                    400, "pool_not_eligible", "target_pool_id must be a zone of the agent's instance type in its region", field: "target_pool_id")
            }
            pool = p
        } else if mode == .spot {
            return try Self.refusal(400, "missing_field", "a switch to spot needs target_pool_id", field: "target_pool_id")
        }
        if agent.manualReplicaEnabled {
            return try Self.refusal(409, "manual_mode_active", "a manual-replica agent switches to its replica: send {\"target\": \"replica\"}")
        }
        guard agent.instanceId != nil else {
            return try Self.refusal(409, "no_primary", "the agent has no running instance to switch")
        }
        let command = try await fleet.forceSwitch(agent, client: client, mode: mode, pool: pool)
        return try Self.reply(202, SwitchQueued(commandId: command, targetMode: mode.rawValue, targetPoolId: pool?.rawValue))
    }

    // MARK: webhooks

    struct WebhookRequest: Decodable, Sendable {
        var url: String?
        var secret: String?
        var events: [String]?
        var format: String?
    }

    struct WebhookView: Encodable, Sendable {
        var id: UUID
        var url: String
        var events: [String]
        var format: String
        var isActive: Bool
        var createdAt: Date
        var pending: Int
        var dead: Int
        /// Only in the answer that created it.
        var secret: String?
    }

    func addWebhookRoutes(to router: Router<ServiceRequestContext>) {
        let path = "/api/client/:clientId/webhooks"
        router.get(RouterPath(path)) { request, context in
            let client = try await authenticateClient(request, context)
            return try HTTPJSON.response(Listing(items: try await webhooks(client)), status: .ok)
        }
        router.post(RouterPath(path)) { request, context in
            let client = try await authenticateClient(request, context, scope: .admin)
            return try HTTPJSON.response(try await createWebhook(client, try await decode(WebhookRequest.self, from: request)), status: .created)
        }
        router.delete("\(path)/:webhookId") { request, context in
            let client = try await authenticateClient(request, context, scope: .admin)
            try await deleteWebhook(client, try pathUUID("webhookId", context, notFound: "webhook_not_found"))
            return Response(status: .noContent)
        }
    }

    /// A new subscription (at most 20 active a client), checked field by field; the answer is the
    /// only one that carries its secret. The API and the dashboard both create through it.
    func createWebhook(_ client: UUID, _ body: WebhookRequest) async throws -> WebhookView {
        guard let url = body.url, url.count <= 2048, let parsed = URL(string: url), ["http", "https"].contains(parsed.scheme ?? ""),
            parsed.host?.isEmpty == false, url.wholeMatch(of: /[^\s]+/) != nil
        else { throw APIError(.badRequest, code: "invalid_url", message: "url must be an http(s) URL", field: "url") }
        let events = body.events ?? []
        guard events.count <= 50, events.allSatisfy(EventFilter.isValid) else {
            throw APIError(
                .badRequest, code: "invalid_event_filter", message: "events are event types like failover.completed or patterns like failover.*",
                field: "events")
        }
        let format = body.format ?? "json"
        guard ["json", "slack"].contains(format) else {
            throw APIError(.badRequest, code: "invalid_value", message: "format must be json or slack", field: "format")
        }
        let secret = body.secret ?? Self.randomHex(32)
        guard (16...256).contains(secret.count) else {
            throw APIError(.badRequest, code: "invalid_secret", message: "secret must be 16 to 256 characters", field: "secret")
        }
        let filter = JSONValue.array(events.map { .string($0) }).text
        let id = try await store.transaction { conn in
            guard
                try conn.query("SELECT count(*)::int FROM webhook_subscriptions WHERE client_id = $1 AND is_active", [client])[0]
                    .decode(Int.self, at: 0) < 20
            else { throw APIError(.conflict, code: "too_many_webhooks", message: "at most 20 active webhooks per client") }
            return try conn.query(
                "INSERT INTO webhook_subscriptions (client_id, url, secret, event_filter, payload_format) VALUES ($1, $2, $3, $4::jsonb, $5) RETURNING id",
                [client, url, secret, filter, format])[0].decode(UUID.self, at: 0)
        }
        guard var view = try await webhooks(client).first(where: { $0.id == id }) else {
            throw APIError(.notFound, code: "webhook_not_found", message: "the webhook was deleted as it was made")
        }
        view.secret = secret
        return view
    }

    /// The notifier sends nothing more to an inactive subscription and ends its pending deliveries.
    func deleteWebhook(_ client: UUID, _ id: UUID) async throws {
        let changed = try await store.transaction { conn in
            try conn.execute("UPDATE webhook_subscriptions SET is_active = false WHERE id = $1 AND client_id = $2 AND is_active", [id, client])
        }
        guard changed == 1 else { throw APIError(.notFound, code: "webhook_not_found", message: "no such webhook") }
    }

    func webhooks(_ client: UUID) async throws -> [WebhookView] {
        try await store.read { conn in
            try conn.query(
                """
                SELECT s.id, s.url, s.event_filter::text, s.payload_format, s.is_active, s.created_at,
                       count(*) FILTER (WHERE d.status = 'pending')::int, count(*) FILTER (WHERE d.status = 'dead')::int
                  FROM webhook_subscriptions s LEFT JOIN webhook_deliveries d ON d.subscription_id = s.id
                 WHERE s.client_id = $1 AND s.is_active GROUP BY s.id ORDER BY s.created_at
                """, [client]
            ).map { r in
                WebhookView(
                    id: try r.decode(UUID.self, at: 0), url: try r.decode(String.self, at: 1),
                    events: (JSONValue.parse(try r.decode(String.self, at: 2))?.array ?? []).compactMap(\.string),
                    format: try r.decode(String.self, at: 3), isActive: try r.decode(Bool.self, at: 4), createdAt: try r.decode(Date.self, at: 5),
                    pending: try r.decode(Int.self, at: 6), dead: try r.decode(Int.self, at: 7))
            }
        }
    }

    static func randomHex(_ bytes: Int) -> String {
        var rng = SystemRandomNumberGenerator()
        return (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &rng)) }.joined()
    }
}
