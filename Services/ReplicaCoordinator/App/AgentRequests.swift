import Foundation
import Logging
import ReplicaCore
import SpotFleet
import SpotModels
import SpotRuntime
import SpotStore

extension Coordinator {
    // MARK: modes

    func setModes(_ agent: AgentRecord, _ flags: [String: Bool], settings: ModeChange = ModeChange(), on conn: PGConnection) throws {
        try Agents.setModes(
            agent.id,
            Agents.Modes(
                manualReplica: flags["manual_replica_enabled"], autoSwitch: flags["auto_switch_enabled"], autoTerminate: flags["auto_terminate_enabled"],
                autoReplica: flags["auto_replica_enabled"], terminateWaitSeconds: settings.terminateWaitSeconds, decisionEngine: settings.decisionEngine,
                interruptionCost: settings.interruptionCost),
            on: conn)
        var changes = flags.mapValues { JSONValue.bool($0) }
        if let waitSeconds = settings.terminateWaitSeconds { changes["terminate_wait_seconds"] = .number(Double(waitSeconds)) }
        if let engine = settings.decisionEngine { changes["decision_engine"] = .string(engine) }
        if let cost = settings.interruptionCost { changes["interruption_cost"] = .number(cost) }
        try Outbox.append(
            Envelope(
                type: RoutingKey.configChanged, producer: Self.producer, payload: ConfigChanged(agentId: agent.id, clientId: agent.clientId, changes: changes)),
            on: conn)
        try event("agent.config_changed", agent: agent, replica: nil, "modes changed: \(JSONValue.object(changes).text)", on: conn)
    }

    func changeModes(_ r: ReplicaRequest, agent: AgentRecord, on conn: PGConnection) throws -> APIReply {
        let body = try decode(ModeChange.self, r.body)
        if let wait = body.terminateWaitSeconds, !(0...86_400).contains(wait) {
            throw ReplicaRefusal(400, "out_of_range", "terminate_wait_seconds must be between 0 and 86400", field: "terminate_wait_seconds")
        }
        if let engine = body.decisionEngine, !ModeChange.decisionEngines.contains(engine) {
            throw ReplicaRefusal(
                400, "invalid_value", "decision_engine must be one of \(ModeChange.decisionEngines.joined(separator: ", "))", field: "decision_engine")
        }
        if let cost = body.interruptionCost, !(cost.isFinite && (0...1_000_000).contains(cost)) {
            throw ReplicaRefusal(400, "out_of_range", "interruption_cost must be between 0 and 1000000 (dollars)", field: "interruption_cost")
        }
        if agent.manualReplicaEnabled, body.autoSwitchEnabled == true || body.autoTerminateEnabled == true {
            throw ReplicaRefusal(409, "manual_mode_active", "disable manual replica mode before enabling auto-switch or auto-terminate")
        }
        var flags: [String: Bool] = [:]
        flags["auto_switch_enabled"] = body.autoSwitchEnabled
        flags["auto_terminate_enabled"] = body.autoTerminateEnabled
        flags["auto_replica_enabled"] = body.autoReplicaEnabled
        try setModes(agent, flags, settings: body, on: conn)
        let updated = try AgentRecord.lock(agent.id, client: agent.clientId, on: conn)
        return try .json(200, ModesView(updated))
    }

    func manualSwitch(_ r: ReplicaRequest, agent: inout AgentRecord, on conn: PGConnection) throws -> APIReply {
        guard agent.manualReplicaEnabled else {
            throw ReplicaRefusal(409, "manual_mode_inactive", "enable manual replica mode first")
        }
        let active = try ReplicaRecord.list(agent: agent.id, activeOnly: true, on: conn)
        guard var replica = active.first(where: { $0.type == .manual && $0.status == .ready }) else {
            throw ReplicaRefusal(409, "replica_not_ready", "the manual replica is not ready yet; try again once it is synced")
        }
        replica = try ReplicaRecord.lock(replica.id, agent: agent.id, on: conn)
        let old = agent.instanceId
        try promote(&replica, agent: &agent, trigger: .manual, initiatedAt: r.receivedAt, terminateOld: true, oldTerminatedAt: nil, on: conn)
        let next = try replaceManualReplica(agent, on: conn)
        return try .json(
            200,
            Switched(
                oldInstanceId: old, newInstanceId: replica.instanceId, promotedReplicaId: replica.id, newReplicaId: next?.id))
    }

    // MARK: commands

    func commandResult(_ r: ReplicaRequest, agent: inout AgentRecord, on conn: PGConnection) throws -> APIReply {
        let body = try decode(CommandResultBody.self, r.body)
        guard let status = body.status.flatMap(CommandStatus.init(rawValue:)), status == .succeeded || status == .failed else {
            throw ReplicaRefusal(400, "invalid_status", "status must be succeeded or failed", field: "status")
        }
        if let message = body.errorMessage, message.count > 2000 {
            throw ReplicaRefusal(400, "too_long", "error_message is longer than 2000 characters", field: "error_message")
        }
        if let result = body.result, result.object == nil {
            throw ReplicaRefusal(400, "invalid_type", "result must be an object", field: "result")
        }
        let commandId = try require(r.commandId)
        guard
            let row = try conn.query(
                "SELECT command_type, status, replica_id FROM commands WHERE id = $1 AND agent_id = $2 FOR UPDATE", [commandId, agent.id]
            ).first
        else { throw ReplicaRefusal(404, "command_not_found", "no such command for this agent") }
        let kind = CommandKind(rawValue: try row.decode(String.self, at: 0))
        let current = try row.decode(CommandStatus.self, at: 1)
        let replicaId = try row.decodeIfPresent(UUID.self, at: 2)
        if current == status { return try .json(200, ResultAnswer(commandId: commandId, status: status)) }
        guard !current.isFinal else {
            throw ReplicaRefusal(409, "command_closed", "the command is already \(current.rawValue)")
        }
        let launched = try body.instanceId.map(instanceId)
        try Commands.complete(commandId, agentId: agent.id, status: status, result: body.result ?? .object([:]), errorMessage: body.errorMessage, on: conn)
        if kind == .terminate, status == .succeeded {
            // the instance is gone: close its row (a replaced primary's, or a replica's)
            if let instance = try conn.query("SELECT payload->>'instance_id' FROM commands WHERE id = $1", [commandId]).first?
                .decodeIfPresent(String.self, at: 0)
            {
                try Instances.markTerminated(instance, clientId: agent.clientId, on: conn)
            }
        }
        if kind == .promote {
            try promotionAnswered(commandId, status: status, result: body.result, error: body.errorMessage, agent: agent, on: conn)
        }
        if kind == .fence {
            try fenceAnswered(commandId, status: status, agent: agent, on: conn)
        }
        if kind == .checkPrimary, status == .succeeded, let replicaId {
            try primaryChecked(commandId, replicaId: replicaId, result: body.result, agent: &agent, on: conn)
        }
        if kind == .launchReplica, let replicaId {
            var replica = try ReplicaRecord.lock(replicaId, agent: agent.id, on: conn)
            if status == .failed {
                if try replica.lifecycle.move(to: .failed) {
                    try replica.saveLifecycle(on: conn, failureReason: "launch failed: \(body.errorMessage ?? "no reason given")")
                    try Agents.refreshReplicaSummary(agent.id, on: conn)
                    try alert(
                        "replica_launch_failed", agent: agent, replica: replica.id, body.errorMessage ?? "the agent could not launch the replica",
                        dedupKey: nil, on: conn)
                    try replaceManualReplica(agent, on: conn)
                }
            } else if let launched {
                if replica.status.isActive {
                    try replica.lifecycle.launched(instanceId: launched)
                    try replica.saveLifecycle(on: conn)
                } else {
                    // launched after the replica was ended: the instance must not keep running
                    var ended = replica
                    ended.lifecycle = ReplicaLifecycle(status: replica.status, syncStatus: replica.lifecycle.syncStatus, instanceId: launched)
                    try stopInstance(of: ended, agent: agent, on: conn)
                }
            } else {
                throw ReplicaRefusal(400, "missing_field", "a succeeded launch_replica reports instance_id", field: "instance_id")
            }
        }
        return try .json(200, ResultAnswer(commandId: commandId, status: status))
    }

    // MARK: status

    func sefStatus(_ agent: AgentRecord, on conn: PGConnection) throws -> APIReply {
        let replicas = try ReplicaRecord.list(agent: agent.id, activeOnly: true, on: conn).map(ReplicaView.init)
        let last = try conn.query(
            """
            SELECT signal_type, detected_at, response_action, risk_score::float8, failover_time_ms, success
              FROM spot_interruption_events WHERE agent_id = $1 ORDER BY detected_at DESC LIMIT 1
            """, [agent.id]
        ).first.map {
            LastInterruption(
                signalType: try $0.decode(String.self, at: 0), detectedAt: try $0.decode(Date.self, at: 1),
                action: try $0.decodeIfPresent(String.self, at: 2), riskScore: try $0.decodeIfPresent(Double.self, at: 3),
                failoverTimeMs: try $0.decodeIfPresent(Int.self, at: 4), success: try $0.decodeIfPresent(Bool.self, at: 5))
        }
        let price = try PriceBook.latest(pool: agent.poolId, on: conn)
        return try .json(
            200,
            SEFStatus(
                agentId: agent.id, instanceId: agent.instanceId, poolId: agent.poolId, status: agent.status, modes: ModesView(agent),
                replicas: replicas, lastInterruption: last, lastFailoverAt: agent.lastFailoverAt,
                currentPrice: price.map { PriceView(spotPrice: $0.price, confidence: $0.confidence, dataSource: $0.dataSource) }))
    }
}
