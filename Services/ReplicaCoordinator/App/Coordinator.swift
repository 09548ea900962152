import Foundation
import Logging
import ReplicaCore
import SpotFleet
import SpotModels
import SpotRuntime
import SpotStore

/// Answers the relayed replica API. Each call is one transaction that starts by locking the
/// agent's row, so any number of coordinator copies serialise per agent; a refusal rolls the
/// transaction back and becomes a 4xx reply, a storage failure is thrown (the call is retried,
/// by this copy or another).
public struct Coordinator: Sendable {
    static let producer = "spotguard-replicas"

    let store: PostgresStore
    let configuration: ReplicaConfiguration
    /// Kicks the outbox relay after a commit that wrote messages.
    let notify: @Sendable () -> Void

    public init(store: PostgresStore, configuration: ReplicaConfiguration, notify: @escaping @Sendable () -> Void) {
        self.store = store
        self.configuration = configuration
        self.notify = notify
    }

    /// - Parameter requestId: the bus message id: a call delivered twice creates one replica.
    public func answer(_ request: ReplicaRequest, requestId: UUID) async throws -> APIReply {
        do {
            let reply = try await store.transaction { conn in try self.perform(request, requestId: requestId, on: conn) }
            notify()
            return reply
        } catch let refusal as ReplicaRefusal {
            return refusal.reply
        } catch let invalid as ValidationError {
            return ReplicaRefusal(400, invalid.code, invalid.message, field: invalid.field).reply
        }
    }

    func perform(_ r: ReplicaRequest, requestId: UUID, on conn: PGConnection) throws -> APIReply {
        var agent = try AgentRecord.lock(r.agentId, client: r.clientId, on: conn)
        switch r.operation {
        case .createReplica:
            return try createReplica(r, requestId: requestId, agent: agent, on: conn)
        case .listReplicas:
            let all = r.query["include_terminated"] == "true"
            let replicas = try ReplicaRecord.list(agent: agent.id, activeOnly: !all, on: conn).map(ReplicaView.init)
            return try .json(200, ReplicaList(replicas: replicas, total: replicas.count))
        case .promoteReplica:
            let body = try decode(PromoteBody.self, r.body)
            var replica = try ReplicaRecord.lock(try require(r.replicaId), agent: agent.id, on: conn)
            if replica.status == .promoted {
                return try .json(200, PromotedView(replica: replica, oldInstanceId: nil, demoted: body.demoteOldPrimary ?? true))
            }
            let old = agent.instanceId
            try promote(
                &replica, agent: &agent, trigger: .manual, initiatedAt: r.receivedAt,
                terminateOld: !(body.demoteOldPrimary ?? true), oldTerminatedAt: nil, on: conn)
            try replaceManualReplica(agent, on: conn)
            return try .json(200, PromotedView(replica: replica, oldInstanceId: old, demoted: body.demoteOldPrimary ?? true))
        case .deleteReplica:
            var replica = try ReplicaRecord.lock(try require(r.replicaId), agent: agent.id, on: conn)
            try terminate(&replica, agent: agent, reason: nil, on: conn)
            try replaceManualReplica(agent, on: conn)
            return try .json(200, Terminated(replicaId: replica.id, terminatedAt: replica.terminatedAt ?? Date()))
        case .createEmergencyReplica:
            return try createEmergencyReplica(r, requestId: requestId, agent: agent, on: conn)
        case .terminationImminent:
            let body = try decode(TerminationBody.self, r.body)
            return try handleTermination(
                agent: &agent, instanceId: body.instanceId, terminationTime: body.terminationTime, replicaId: body.replicaId,
                receivedAt: r.receivedAt, on: conn)
        case .interruption:
            return try handleInterruption(r, agent: &agent, on: conn)
        case .syncStatus:
            return try syncStatus(r, agent: agent, on: conn)
        case .enableManualReplica:
            if agent.autoSwitchEnabled || agent.autoTerminateEnabled {
                throw ReplicaRefusal(
                    409, "auto_mode_active", "disable auto-switch and auto-terminate before enabling manual replica mode")
            }
            try setModes(agent, ["manual_replica_enabled": true], on: conn)
            agent.manualReplicaEnabled = true
            let replica = try ensureManualReplica(agent, on: conn)
            return try .json(200, ModeChanged(manualReplicaEnabled: true, replica: replica.map(ReplicaView.init)))
        case .disableManualReplica:
            try setModes(agent, ["manual_replica_enabled": false], on: conn)
            var terminated = 0
            for var replica in try ReplicaRecord.list(agent: agent.id, activeOnly: true, on: conn) where replica.type == .manual {
                try terminate(&replica, agent: agent, reason: "manual replica mode disabled", on: conn)
                terminated += 1
            }
            return try .json(200, ModeChanged(manualReplicaEnabled: false, replica: nil, terminatedReplicas: terminated))
        case .manualSwitch:
            return try manualSwitch(r, agent: &agent, on: conn)
        case .setModes:
            return try changeModes(r, agent: agent, on: conn)
        case .sefStatus:
            return try sefStatus(agent, on: conn)
        case .commandResult:
            return try commandResult(r, agent: &agent, on: conn)
        case .getTraffic:
            return try .json(200, TrafficView(agentId: agent.id, traffic: try traffic(of: agent.id, on: conn) ?? TrafficConfig()))
        case .setTraffic:
            return try setTraffic(r, agent: agent, on: conn)
        }
    }

    // MARK: replicas

    func createReplica(_ r: ReplicaRequest, requestId: UUID, agent: AgentRecord, on conn: PGConnection) throws -> APIReply {
        if let existing = try existingReplica(requestId, agent: agent, on: conn) { return try .json(201, Created(existing)) }
        let body = try decode(CreateReplicaBody.self, r.body)
        if let active = try ReplicaRecord.list(agent: agent.id, activeOnly: true, on: conn).first(where: { $0.type == .manual }) {
            throw ReplicaRefusal(409, "replica_exists", "the agent already has an active manual replica (\(active.id.uuidString.lowercased()))")
        }
        var pool: PoolID?
        if let text = body.poolId {
            guard let p = PoolID(rawValue: text) else {
                throw ReplicaRefusal(400, "invalid_pool_id", "pool_id must look like t3.medium.us-east-1b", field: "pool_id")
            }
            pool = p
        }
        if let cost = body.maxHourlyCost, !(cost > 0 && cost < 1000) {
            throw ReplicaRefusal(400, "invalid_value", "max_hourly_cost must be between 0 and 1000", field: "max_hourly_cost")
        }
        if let user = body.createdBy, user.count > 255 {
            throw ReplicaRefusal(400, "too_long", "created_by is longer than 255 characters", field: "created_by")
        }
        try Self.checkTags(body.tags)
        let replica = try launch(
            .manual, for: agent, id: requestId,
            placement: .init(pool: pool, excludeZones: Set(body.excludeZones ?? []), maxHourlyCost: body.maxHourlyCost),
            createdBy: "user", user: body.createdBy, tags: body.tags ?? .object([:]), on: conn)
        return try .json(201, Created(replica))
    }

    func createEmergencyReplica(_ r: ReplicaRequest, requestId: UUID, agent: AgentRecord, on conn: PGConnection) throws -> APIReply {
        if let existing = try existingReplica(requestId, agent: agent, on: conn) {
            return try .json(201, Created(existing, urgency: nil))
        }
        let body = try decode(EmergencyBody.self, r.body)
        guard let signalText = body.signalType, let signal = InterruptionSignal(named: signalText) else {
            throw ReplicaRefusal(
                400, "unknown_signal_type", "signal_type must be rebalance-recommendation or termination-notice", field: "signal_type")
        }
        if let urgency = body.urgency, urgency != "high", urgency != "critical" {
            throw ReplicaRefusal(400, "invalid_value", "urgency must be high or critical", field: "urgency")
        }
        // one emergency replica at a time: a second request gets the one already on its way
        if let active = try ReplicaRecord.list(agent: agent.id, activeOnly: true, on: conn).first(where: { $0.type != .manual }) {
            return try .json(200, Created(active, urgency: body.urgency))
        }
        let type: ReplicaType = signal == .terminationNotice ? .automaticTermination : .automaticRebalance
        let replica = try launch(
            type, for: agent, id: requestId,
            placement: .init(excludeZones: Set(body.excludeZones ?? []), preferredZones: body.preferredZones ?? [], safe: true),
            createdBy: "system", user: nil, tags: .object(["urgency": .string(body.urgency ?? "high")]), on: conn)
        return try .json(201, Created(replica, urgency: body.urgency ?? "high"))
    }

    func existingReplica(_ id: UUID, agent: AgentRecord, on conn: PGConnection) throws -> ReplicaRecord? {
        try conn.query("SELECT \(ReplicaRecord.columns) FROM replica_instances WHERE id = $1 AND agent_id = $2", [id, agent.id])
            .first.map(ReplicaRecord.init)
    }

    /// Ends an active replica; the primary's agent terminates the instance if one runs.
    func terminate(_ replica: inout ReplicaRecord, agent: AgentRecord, reason: String?, on conn: PGConnection) throws {
        guard try replica.lifecycle.move(to: .terminated) else { return }
        try replica.saveLifecycle(on: conn, failureReason: reason)
        replica.terminatedAt = Date()
        try stopInstance(of: replica, agent: agent, on: conn)
        try Agents.refreshReplicaSummary(agent.id, on: conn)
        try event("replica.terminated", agent: agent, replica: replica.id, reason ?? "replica terminated", on: conn)
    }

    /// Cancels a launch nobody fetched yet, or asks the primary to terminate the instance.
    func stopInstance(of replica: ReplicaRecord, agent: AgentRecord, on conn: PGConnection) throws {
        try Commands.cancelPending(.launchReplica, replicaId: replica.id, on: conn)
        guard let instance = replica.instanceId else { return }
        try Commands.issue(
            try .init(
                .terminate, clientId: agent.clientId, agentId: agent.id, targetInstanceId: agent.instanceId, replicaId: replica.id,
                payload: ["instance_id": instance, "reason": "replica ended"], terminateWaitSeconds: 0, issuedBy: "replicas"),
            producer: Self.producer, on: conn)
    }

    /// `ensureManualReplica` after something else happened in the transaction (a failover, a
    /// lost or deleted replica): a replica that cannot be placed now is said once an hour and
    /// tried again by the reconciler, and never undoes what the transaction did.
    @discardableResult
    func replaceManualReplica(_ agent: AgentRecord, on conn: PGConnection) throws -> ReplicaRecord? {
        do {
            return try ensureManualReplica(agent, on: conn)
        } catch let refusal as ReplicaRefusal {
            try event(
                "replica.not_launched", agent: agent, replica: nil, refusal.message, severity: "warning",
                dedupKey: "not-launched:\(agent.id.uuidString.lowercased()):\(Int(Date().timeIntervalSince1970) / 3600)", on: conn)
            return nil
        }
    }

    /// In manual mode the agent always has one manual replica: launches it when missing
    /// (unless too many failed lately). Returns the active manual replica.
    @discardableResult
    func ensureManualReplica(_ agent: AgentRecord, on conn: PGConnection) throws -> ReplicaRecord? {
        let active = try ReplicaRecord.list(agent: agent.id, activeOnly: true, on: conn)
        if let manual = active.first(where: { $0.type == .manual }) { return manual }
        guard agent.manualReplicaEnabled else { return nil }
        let failed =
            try conn.query(
                """
                SELECT count(*)::int FROM replica_instances
                 WHERE agent_id = $1 AND replica_type = 'manual' AND status = 'failed' AND terminated_at > now() - interval '10 minutes'
                """, [agent.id]
            ).first?.decode(Int.self, at: 0) ?? 0
        guard failed < configuration.relaunchLimit else {
            try alert(
                "replica_relaunch_limit", agent: agent, replica: nil,
                "\(failed) manual replicas failed within 10 minutes; not launching another until one succeeds or the window passes",
                dedupKey: "relaunch-limit:\(agent.id.uuidString.lowercased()):\(Int(Date().timeIntervalSince1970) / 600)", on: conn)
            return nil
        }
        return try launch(.manual, for: agent, placement: .init(), createdBy: "coordinator", user: nil, tags: .object([:]), on: conn)
    }

    // MARK: sync

    func syncStatus(_ r: ReplicaRequest, agent: AgentRecord, on conn: PGConnection) throws -> APIReply {
        let body = try decode(SyncBody.self, r.body)
        guard let syncText = body.syncStatus, let sync = SyncStatus(rawValue: syncText), sync != .initializing else {
            throw ReplicaRefusal(400, "invalid_sync_status", "sync_status must be syncing, synced or out-of-sync", field: "sync_status")
        }
        var requested: ReplicaStatus?
        if let text = body.status {
            guard let s = ReplicaStatus(rawValue: text) else {
                throw ReplicaRefusal(400, "invalid_status", "status must be syncing or ready", field: "status")
            }
            requested = s
        }
        if let latency = body.syncLatencyMs, !(0...86_400_000).contains(latency) {
            throw ReplicaRefusal(400, "out_of_range", "sync_latency_ms must be between 0 and 86400000", field: "sync_latency_ms")
        }
        if let progress = body.stateTransferProgress, !(progress >= 0 && progress <= 100) {
            throw ReplicaRefusal(400, "out_of_range", "state_transfer_progress must be between 0 and 100", field: "state_transfer_progress")
        }
        if let held = body.stateVersion, held < 1 {
            throw ReplicaRefusal(400, "out_of_range", "state_version must be at least 1", field: "state_version")
        }
        var replica = try ReplicaRecord.lock(try require(r.replicaId), agent: agent.id, on: conn)
        if let text = body.instanceId { try replica.lifecycle.launched(instanceId: try instanceId(text)) }
        let before = replica.status
        // synced means holding the newest state version the primary shipped
        let versions = try conn.query(
            """
            SELECT max(version), min(created_at) FILTER (WHERE version > coalesce($2, 0)), now() FROM state_versions WHERE agent_id = $1
            """, [agent.id, body.stateVersion])[0]
        let freshness = StateFreshness.judge(
            reported: sync, requested: requested, held: body.stateVersion, latest: try versions.decodeIfPresent(Int64.self, at: 0),
            oldestMissingAt: try versions.decodeIfPresent(Date.self, at: 1), now: try versions.decode(Date.self, at: 2),
            tolerance: configuration.stateLagTolerance)
        try replica.lifecycle.report(sync: freshness.sync, status: freshness.requested)
        if freshness.behind { replica.lifecycle.heldOlderState() }
        try replica.saveLifecycle(on: conn)
        _ = try conn.execute(
            """
            UPDATE replica_instances SET last_sync_at = now(), sync_latency_ms = coalesce($2, sync_latency_ms),
                   state_transfer_progress = coalesce($3, state_transfer_progress),
                   state_version = coalesce($4, state_version), state_lag_seconds = $5
             WHERE id = $1
            """, [replica.id, body.syncLatencyMs, body.stateTransferProgress, body.stateVersion, freshness.lagSeconds])
        if before != replica.status {
            try Agents.refreshReplicaSummary(agent.id, on: conn)
            try event(
                "replica.\(replica.status.rawValue)", agent: agent, replica: replica.id, "replica \(before.rawValue) -> \(replica.status.rawValue)", on: conn)
            if replica.status == .ready, replica.type == .automaticTermination {
                var primary = agent
                try recover(&replica, agent: &primary, on: conn)
            }
        }
        return try .json(
            200,
            SyncAnswer(
                replicaId: replica.id, status: replica.status.rawValue, syncStatus: replica.lifecycle.syncStatus.rawValue,
                stateVersion: body.stateVersion, stateLagSeconds: freshness.lagSeconds))
    }

    // MARK: helpers

    /// A replica's labels: an object of at most 50 strings, keys of 1 to 128 characters and
    /// values of at most 256 (EC2's limits for tags, which an operator may copy them to).
    static func checkTags(_ tags: JSONValue?) throws {
        guard let tags else { return }
        guard let labels = tags.object else {
            throw ReplicaRefusal(400, "invalid_type", "tags must be an object of strings", field: "tags")
        }
        guard labels.count <= 50 else { throw ReplicaRefusal(400, "too_many", "tags has more than 50 labels", field: "tags") }
        for (key, value) in labels.sorted(by: { $0.key < $1.key }) {
            guard (1...128).contains(key.count) else {
                throw ReplicaRefusal(400, "invalid_value", "a tag's key must have 1 to 128 characters", field: "tags")
            }
            guard let text = value.string, text.count <= 256 else {
                throw ReplicaRefusal(400, "invalid_value", "a tag's value must be a string of at most 256 characters", field: "tags.\(key)")
            }
        }
    }

    func decode<T: Decodable>(_ type: T.Type, _ body: String?) throws -> T {
        let text = (body?.isEmpty ?? true) ? "{}" : body!
        do {
            return try WireJSON.decoder().decode(T.self, from: Data(text.utf8))
        } catch let e as DecodingError {
            throw ValidationError(decoding: e)
        }
    }

    func require(_ id: UUID?) throws -> UUID {
        guard let id else { throw ReplicaRefusal(400, "missing_id", "the path names no id") }
        return id
    }

    func instanceId(_ text: String) throws -> String {
        guard let id = InstanceID(rawValue: text) else {
            throw ReplicaRefusal(400, "invalid_instance_id", "instance_id must look like i-0123456789abcdef0", field: "instance_id")
        }
        return id.rawValue
    }

    func event(
        _ type: String, agent: AgentRecord, replica: UUID?, _ message: String, severity: String = "info", dedupKey: String? = nil, on conn: PGConnection
    ) throws {
        try SystemEvents.record(
            .init(
                type, severity: severity, component: "spotguard-replicas", clientId: agent.clientId, agentId: agent.id, message: message,
                details: .object(["replica_id": replica.map { .string($0.uuidString.lowercased()) } ?? .null]), dedupKey: dedupKey),
            on: conn)
    }

    /// A system event and a `replica.alert` for the notifier (once per `dedupKey`).
    func alert(_ kind: String, agent: AgentRecord, replica: UUID?, _ message: String, dedupKey: String?, on conn: PGConnection) throws {
        if let dedupKey, try SystemEvents.exists(dedupKey: dedupKey, on: conn) { return }
        try event("replica.alert", agent: agent, replica: replica, message, severity: "warning", dedupKey: dedupKey, on: conn)
        try Outbox.append(
            Envelope(
                type: RoutingKey.replicaAlert, producer: Self.producer,
                payload: AgentAlert(
                    kind: kind, clientId: agent.clientId, agentId: agent.id, replicaId: replica, message: message, since: nil)),
            on: conn)
    }
}

extension ReplicaRefusal {
    var reply: APIReply { APIReply(status: status, body: ErrorBody(code: code, message: message, field: field).json) }
}

extension APIReply {
    static func json<T: Encodable>(_ status: Int, _ value: T) throws -> APIReply {
        APIReply(status: status, body: String(decoding: try WireJSON.encoder().encode(value), as: UTF8.self))
    }
}
