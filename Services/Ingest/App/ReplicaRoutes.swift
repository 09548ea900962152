import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SpotBus
import SpotFleet
import SpotModels
import SpotRuntime
import SpotStore

/// The replica API (seeds 000 and 002). Ingest authenticates the client, checks that the
/// agent is its own, and relays the call to `spotguard-replicas` over the bus (request/reply);
/// the coordinator validates, acts in one transaction and answers with the status and body
/// written here. State transfers (large gzip blobs) and command long-polls are served here
/// directly from PostgreSQL.
extension IngestController {
    func addReplicaRoutes(to router: Router<ServiceRequestContext>) {
        let agent = "/api/agents/:agentId"
        let replica = "\(agent)/replicas/:replicaId"
        router.post("\(agent)/replicas") { try await relay(.createReplica, $0, $1) }
        router.get("\(agent)/replicas") { try await relay(.listReplicas, $0, $1) }
        router.post("\(replica)/promote") { try await relay(.promoteReplica, $0, $1) }
        router.delete("\(replica)") { try await relay(.deleteReplica, $0, $1) }
        router.post("\(replica)/sync-status") { try await relay(.syncStatus, $0, $1) }
        router.post("\(agent)/create-emergency-replica") { try await relay(.createEmergencyReplica, $0, $1) }
        router.post("\(agent)/termination-imminent") { try await relay(.terminationImminent, $0, $1) }
        router.post("\(agent)/interruption") { try await relay(.interruption, $0, $1) }
        router.post("\(agent)/manual-replica/enable") { try await relay(.enableManualReplica, $0, $1) }
        router.post("\(agent)/manual-replica/disable") { try await relay(.disableManualReplica, $0, $1) }
        router.post("\(agent)/manual-switch") { try await relay(.manualSwitch, $0, $1) }
        router.get("\(agent)/sef-status") { try await relay(.sefStatus, $0, $1) }
        router.post("\(agent)/config") { try await relay(.setModes, $0, $1) }
        router.get("\(agent)/traffic") { try await relay(.getTraffic, $0, $1) }
        router.put("\(agent)/traffic") { try await relay(.setTraffic, $0, $1) }
        router.post("\(agent)/commands/:commandId/result") { try await relay(.commandResult, $0, $1) }
        router.post("\(agent)/commands/:commandId/lease", use: renewLease)
        router.get("\(agent)/pending-commands", use: pendingCommands)
        router.post("\(replica)/state-transfer", use: uploadState)
        router.get("\(replica)/state-transfer", use: downloadState)
    }

    /// What only people (client tokens) decide; an agent token gets 403 `token_scope`.
    static let operatorOperations: Set<ReplicaOperation> = [
        .createReplica, .promoteReplica, .deleteReplica, .enableManualReplica, .disableManualReplica, .manualSwitch, .setModes,
    ]

    /// Relays one call and writes the coordinator's answer.
    func relay(_ operation: ReplicaOperation, _ request: Request, _ context: ServiceRequestContext) async throws -> Response {
        let receivedAt = Date()
        let (client, agent) = try await authenticateAgent(request, context, operatorOnly: Self.operatorOperations.contains(operation))
        return try await replicas.respond(
            ReplicaRequest(
                operation: operation, clientId: client, agentId: agent, replicaId: try uuid("replicaId", context),
                commandId: try uuid("commandId", context), query: Dictionary(request.uri.queryParameters.map { (String($0.key), String($0.value)) }) { $1 },
                body: try await jsonBody(request).map { String(decoding: $0, as: UTF8.self) }, receivedAt: receivedAt))
    }

    /// A UUID path parameter, if the route has one; a malformed one is 404 like a missing one.
    func uuid(_ name: String, _ context: ServiceRequestContext) throws -> UUID? {
        guard let raw = context.parameters.get(name) else { return nil }
        guard let id = UUID(uuidString: raw) else {
            throw APIError(
                .notFound, code: name == "commandId" ? "command_not_found" : "replica_not_found",
                message: "no such \(name == "commandId" ? "command" : "replica")")
        }
        return id
    }

    // MARK: commands

    struct CommandBatch: Encodable {
        var commands: [Commands.Delivered]
        var count: Int
        /// The agent's primary instance now: an old primary that learns it is no longer the
        /// one fences itself (stops serving), whatever commands it missed.
        var primaryInstanceId: String?
        /// Its primary epoch: raised by each switch or promotion. The agent refuses a switch or
        /// promotion issued at a lower one.
        var primaryEpoch: Int64?
    }

    /// `GET /api/agents/{id}/pending-commands?instance_id=&wait=`: answers at once when
    /// commands wait, otherwise holds up to `wait` seconds (default and most: the configured
    /// long-poll) and answers as soon as a `command.issued` for the agent arrives.
    @Sendable func pendingCommands(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (_, agent) = try await authenticateAgent(request, context)
        let query = request.uri.queryParameters
        var instance: String?
        if let raw = query["instance_id"] {
            guard let id = InstanceID(rawValue: String(raw)) else {
                throw APIError(.badRequest, code: "invalid_instance_id", message: "instance_id must look like i-0123456789abcdef0", field: "instance_id")
            }
            instance = id.rawValue
        }
        var wait = configuration.longPoll
        if let raw = query["wait"] {
            guard let seconds = Int(String(raw)), seconds >= 0, .seconds(seconds) <= configuration.longPoll else {
                throw APIError(
                    .badRequest, code: "out_of_range", message: "wait must be 0 to \(configuration.longPoll.components.seconds) seconds", field: "wait")
            }
            wait = .seconds(seconds)
        }
        let deadline = ContinuousClock.now + wait
        let target = instance
        while true {
            // listen before looking, so a command issued in between still wakes this poll
            let ticket = mailbox.listen(agent)
            let commands: [Commands.Delivered]
            let primary: (instance: String?, epoch: Int64?)
            do {
                (commands, primary) = try await store.withConnection { conn in
                    let row = try conn.query("SELECT instance_id, primary_epoch FROM agents WHERE id = $1", [agent]).first
                    return (
                        try Commands.claim(agentId: agent, instanceId: target, on: conn),
                        (try row?.decodeIfPresent(String.self, at: 0), try row?.decode(Int64.self, at: 1))
                    )
                }
            } catch let e as PGError where e.isRetryable {
                mailbox.forget(ticket)
                throw APIError.databaseUnavailable
            } catch {
                mailbox.forget(ticket)
                throw error
            }
            let left = deadline - ContinuousClock.now
            if !commands.isEmpty || left <= .zero {
                mailbox.forget(ticket)
                return try json(
                    CommandBatch(commands: commands, count: commands.count, primaryInstanceId: primary.instance, primaryEpoch: primary.epoch), status: .ok)
            }
            await mailbox.wait(ticket, upTo: left)
        }
    }

    struct Lease: Encodable {
        var commandId: UUID
        var leaseExpiresAt: Date
    }

    /// `POST /api/agents/{id}/commands/{commandId}/lease`: the agent is still working on the
    /// command; its lease is extended by its kind's. 409 when the agent no longer holds it.
    @Sendable func renewLease(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (_, agent) = try await authenticateAgent(request, context)
        guard let command = try uuid("commandId", context) else {
            throw APIError(.notFound, code: "command_not_found", message: "no such command for this agent")
        }
        guard let until = try await store.write({ try Commands.renew(command, agentId: agent, on: $0) }) else {
            throw APIError(.conflict, code: "command_not_held", message: "the agent does not hold this command (answered, cancelled, expired or not fetched)")
        }
        return try json(Lease(commandId: command, leaseExpiresAt: until), status: .ok)
    }

    // MARK: state transfer

    struct StoredState: Encodable {
        var success = true
        var replicaId: UUID
        var sizeBytes: Int
        var sha256: String
        var sequence: Int
        var uploadedAt: Date
    }

    /// Stores the primary's state for its replica (gzip, as sent; the latest replaces the
    /// previous) in the same database as everything else, so it survives any restart.
    @Sendable func uploadState(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (_, agent) = try await authenticateAgent(request, context)
        // taken before the body is read, so a refused upload is never buffered
        guard stateTransfers.enter() else { throw APIError.busy }
        defer { stateTransfers.leave() }
        guard let replica = try uuid("replicaId", context) else { throw APIError.agentNotFound }
        try Self.requireGzip(request.headers)
        var buffer = try await HTTPJSON.bytes(of: request, limit: configuration.maxStateTransferBytes)
        let bytes = Array(buffer.readableBytesView)
        buffer = ByteBuffer()  // one copy in memory while it is stored
        guard bytes.count >= 18, bytes[0] == 0x1f, bytes[1] == 0x8b else {
            throw APIError(.badRequest, code: "not_gzip", message: "the body is not gzip data")
        }
        let digest = Array(SHA256.hash(data: bytes))
        let stored = try await store.read { conn -> [PGRow] in
            let rows = try conn.query(
                """
                INSERT INTO replica_state_transfers AS t (replica_id, agent_id, content, sha256, size_bytes)
                SELECT r.id, r.agent_id, $3, $4, $5 FROM replica_instances r WHERE r.id = $1 AND r.agent_id = $2 AND r.is_active
                ON CONFLICT (replica_id) DO UPDATE SET content = EXCLUDED.content, sha256 = EXCLUDED.sha256,
                    size_bytes = EXCLUDED.size_bytes, sequence = t.sequence + 1, uploaded_at = now()
                RETURNING sequence, uploaded_at
                """, [replica, agent, PGBytes(bytes), PGBytes(digest), bytes.count])
            if rows.isEmpty { return try conn.query("SELECT status FROM replica_instances WHERE id = $1 AND agent_id = $2", [replica, agent]) }
            return rows
        }
        guard let row = stored.first else { throw APIError(.notFound, code: "replica_not_found", message: "no such replica for this agent") }
        guard row.count == 2 else {
            throw APIError(.conflict, code: "replica_inactive", message: "the replica is \(try row.decode(String.self, at: 0))")
        }
        return try json(
            StoredState(
                replicaId: replica, sizeBytes: bytes.count, sha256: digest.map { String(format: "%02x", $0) }.joined(),
                sequence: try row.decode(Int.self, at: 0), uploadedAt: try row.decode(Date.self, at: 1)),
            status: .created)
    }

    /// The state is gzip data: sent as `application/gzip` (or octet-stream), or as any type with
    /// `Content-Encoding: gzip` (the seeds' agents send gzipped JSON that way). It is stored
    /// as sent and served back as `application/gzip`.
    static func requireGzip(_ headers: HTTPFields) throws {
        let encoding = headers[.contentEncoding]?.lowercased().trimmingCharacters(in: .whitespaces) ?? "identity"
        guard encoding == "gzip" || encoding == "x-gzip" || encoding == "identity" else {
            throw APIError(.unsupportedMediaType, code: "unsupported_content_encoding", message: "send the state gzip-encoded (Content-Encoding: gzip)")
        }
        let contentType = headers[.contentType]?.lowercased() ?? ""
        guard encoding != "identity" || ["application/gzip", "application/x-gzip", "application/octet-stream"].contains(where: contentType.hasPrefix) else {
            throw APIError(.unsupportedMediaType, code: "unsupported_media_type", message: "send the state as application/gzip or with Content-Encoding: gzip")
        }
    }

    /// The latest stored state, for the replica to restore.
    @Sendable func downloadState(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (_, agent) = try await authenticateAgent(request, context)
        guard stateTransfers.enter() else { throw APIError.busy }
        defer { stateTransfers.leave() }
        guard let replica = try uuid("replicaId", context) else { throw APIError.agentNotFound }
        let rows = try await store.read { conn in
            try conn.query(
                "SELECT content, sha256, sequence FROM replica_state_transfers WHERE replica_id = $1 AND agent_id = $2", [replica, agent])
        }
        guard let row = rows.first else {
            throw APIError(.notFound, code: "no_state_transfer", message: "no state was transferred to this replica yet")
        }
        let content = try row.decode(PGBytes.self, at: 0).bytes
        let digest = try row.decode(PGBytes.self, at: 1).bytes.map { String(format: "%02x", $0) }.joined()
        return Response(
            status: .ok,
            headers: [
                .contentType: "application/gzip", .eTag: "\"\(digest)\"", HTTPField.Name("X-SpotGuard-Sequence")!: String(try row.decode(Int.self, at: 2)),
            ],
            body: .init(byteBuffer: ByteBuffer(bytes: content)))
    }
}
