import Foundation
import ReplicaCore
import SpotFleet
import SpotModels
import SpotRuntime
import SpotStore

/// Promotion, termination notices and rebalance recommendations.
extension Coordinator {
    /// Promotes a ready replica in the caller's transaction: the replica is promoted, the agent
    /// remapped to its instance, both instance rows and a switches row (prices, confidence and
    /// data source from the clean snapshots) written, the replica's agent told by a `promote`
    /// command, and `replica.promoted` (plus `failover.completed` for a failover) queued.
    func promote(
        _ replica: inout ReplicaRecord, agent: inout AgentRecord, trigger: SwitchTrigger, initiatedAt: Date, terminateOld: Bool,
        oldTerminatedAt: Date?, eventId: UUID? = nil, failoverTimeMs: Int? = nil, on conn: PGConnection
    ) throws {
        try replica.lifecycle.move(to: .promoted)
        guard let newInstance = replica.instanceId, let newPool = replica.poolId.flatMap(PoolID.init(rawValue:)) else {
            throw ReplicaRefusal(409, "replica_instance_unknown", "the replica has no instance yet")
        }
        let oldInstance = agent.instanceId
        let oldPool = agent.poolId
        try replica.saveLifecycle(on: conn)
        replica.promotedAt = Date()
        _ = try conn.execute(
            "UPDATE replica_instances SET tags = tags || jsonb_build_object('old_instance_id', $2::text) WHERE id = $1",
            [replica.id, oldInstance])
        replica.tags = .object((replica.tags.object ?? [:]).merging(["old_instance_id": oldInstance.map(JSONValue.string) ?? .null]) { $1 })

        let old = try PriceBook.latest(pool: oldPool, on: conn)
        let new = try PriceBook.latest(pool: replica.poolId, on: conn)
        let savingsConfidence = SavingsConfidence(old: old?.confidence, new: new?.confidence).rawValue
        let timing: JSONValue = .object([
            "trigger": .string(trigger.rawValue), "failover_time_ms": failoverTimeMs.map { .number(Double($0)) } ?? .null,
            "replica_type": .string(replica.type.rawValue),
        ])
        try Switches.record(
            Switches.Record(
                clientId: agent.clientId, agentId: agent.id,
                old: Switches.Side(
                    instanceId: oldInstance, instanceType: agent.instanceType, region: agent.azValue?.region.rawValue, az: agent.az,
                    mode: agent.mode, poolId: oldPool, spotPrice: old?.price, priceConfidence: old?.confidence, priceDataSource: old?.dataSource),
                new: Switches.Side(
                    instanceId: newInstance, instanceType: newPool.instanceType.rawValue, region: newPool.region.rawValue, az: newPool.az.rawValue,
                    mode: "spot", poolId: newPool.rawValue, spotPrice: new?.price, priceConfidence: new?.confidence, priceDataSource: new?.dataSource),
                onDemandPrice: new?.onDemand ?? old?.onDemand, savingsImpact: old.flatMap { o in new.map { o.price - $0.price } },
                savingsConfidence: savingsConfidence, trigger: trigger, timing: timing, initiatedAt: initiatedAt, instanceReadyAt: replica.readyAt,
                oldTerminatedAt: oldTerminatedAt),
            agentStatus: .online, failover: trigger == .failover, on: conn)
        agent.instanceId = newInstance
        agent.instanceType = newPool.instanceType.rawValue
        agent.az = newPool.az.rawValue
        agent.poolId = newPool.rawValue
        agent.mode = "spot"
        try Agents.refreshReplicaSummary(agent.id, on: conn)

        // the promoted agent moves the traffic to its instance; a failover with traffic to move
        // completes when it has (`promotionAnswered`)
        let traffic = try traffic(of: agent.id, on: conn) ?? TrafficConfig()
        let completesFailover = trigger == .failover && !traffic.isEmpty
        try Commands.issue(
            try .init(
                .promote, clientId: agent.clientId, agentId: agent.id, targetInstanceId: newInstance, replicaId: replica.id,
                payload: PromotePayload(
                    replicaId: replica.id, oldInstanceId: oldInstance, newInstanceId: newInstance, trigger: trigger, traffic: traffic,
                    eventId: eventId, failoverTimeMs: failoverTimeMs, completesFailover: completesFailover),
                issuedBy: "replicas", priority: 10),
            producer: Self.producer, on: conn)
        if terminateOld, let oldInstance, oldTerminatedAt == nil {
            // the old primary's agent stops its own instance once the wait is over
            try Commands.issue(
                try .init(
                    .terminate, clientId: agent.clientId, agentId: agent.id, targetInstanceId: oldInstance,
                    payload: ["instance_id": oldInstance, "reason": "replaced by replica \(replica.id.uuidString.lowercased())"],
                    terminateWaitSeconds: agent.terminateWaitSeconds, issuedBy: "replicas"),
                producer: Self.producer, on: conn)
        }
        let report = FailoverReport(
            clientId: agent.clientId, agentId: agent.id, eventId: eventId, replicaId: replica.id, oldInstanceId: oldInstance,
            newInstanceId: newInstance, trigger: trigger, failoverTimeMs: failoverTimeMs, reason: nil)
        try Outbox.append(Envelope(type: RoutingKey.replicaPromoted, producer: Self.producer, payload: report), on: conn)
        if trigger == .failover && !completesFailover {
            try Outbox.append(Envelope(type: RoutingKey.failoverCompleted, producer: Self.producer, payload: report), on: conn)
        }
        try event(
            "replica.promoted", agent: agent, replica: replica.id,
            "replica promoted (\(trigger)): \(oldInstance ?? "?") -> \(newInstance)", on: conn)
    }

    // MARK: termination notice

    struct FailoverAnswer: Encodable {
        var success = true
        var message = "Automatic failover completed"
        var newInstanceId: String?
        var oldInstanceId: String?
        var replicaId: UUID?
        var failoverTimeMs: Int?
        var action = "replica_promoted"
        var eventId: UUID
    }

    /// Seed 000's "no replica" body, answered with 409: the request was understood and
    /// recorded, but the agent's state (no ready replica) rules out a failover.
    struct NoReplicaAnswer: Encodable {
        var success = false
        var error = "No replica available"
        var code = "emergency_snapshot_required"
        var action = "emergency_snapshot_required"
        var message = "Agent should create emergency state snapshot and upload to S3"
        var emergencyReplicaId: UUID?
        var eventId: UUID
    }

    struct ReplicaLostAnswer: Encodable {
        var success = true
        var action = "replica_lost"
        var message = "The interrupted instance was a replica; it was marked failed"
        var replicaId: UUID
    }

    /// A termination notice (two minutes left). With a ready replica: promote it now. Without:
    /// record it, launch an `automatic-termination` replica and tell the agent to snapshot.
    /// A repeated notice for the same instance answers as the first did, and promotes at most once.
    func handleTermination(
        agent: inout AgentRecord, instanceId given: String?, terminationTime: Date?, replicaId: UUID?, receivedAt: Date,
        on conn: PGConnection
    ) throws -> APIReply {
        let instance = try given.map(instanceId) ?? agent.instanceId
        guard let instance else {
            throw ReplicaRefusal(409, "agent_instance_unknown", "the agent has not reported its instance yet", field: "instance_id")
        }
        var recorded = try conn.query(
            """
            SELECT id, response_action, replica_id, failover_time_ms, new_instance_id FROM spot_interruption_events
             WHERE agent_id = $1 AND instance_id = $2 AND signal_type = 'termination-notice' FOR UPDATE
            """, [agent.id, instance]
        ).first.map { r in
            (
                id: try r.decode(UUID.self, at: 0), action: try r.decodeIfPresent(String.self, at: 1),
                replica: try r.decodeIfPresent(UUID.self, at: 2), ms: try r.decodeIfPresent(Int.self, at: 3),
                newInstance: try r.decodeIfPresent(String.self, at: 4)
            )
        }
        let active = try ReplicaRecord.list(agent: agent.id, activeOnly: true, on: conn)
        let plan = FailoverPlan.decide(
            .init(instance: instance, primary: agent.instanceId, recordedAction: recorded?.action, recordedReplica: recorded?.replica, named: replicaId),
            active: active.map { .init(id: $0.id, type: $0.type, status: $0.status, instanceId: $0.instanceId, readyAt: $0.readyAt) })
        let promoting: UUID?
        let emergencyPlan: (emergency: UUID?, firstNotice: Bool)
        switch plan {
        case .alreadyPromoted:
            let done = recorded!
            return try .json(
                200,
                FailoverAnswer(
                    newInstanceId: done.newInstance, oldInstanceId: instance, replicaId: done.replica, failoverTimeMs: done.ms,
                    eventId: done.id))
        case .replicaLost(let id):
            var replica = try ReplicaRecord.lock(id, agent: agent.id, on: conn)
            try replica.lifecycle.move(to: .failed)
            try replica.saveLifecycle(on: conn, failureReason: "spot interruption of the replica's instance")
            try Agents.refreshReplicaSummary(agent.id, on: conn)
            try alert("replica_interrupted", agent: agent, replica: replica.id, "the replica's spot instance is being reclaimed", dedupKey: nil, on: conn)
            try replaceManualReplica(agent, on: conn)
            return try .json(200, ReplicaLostAnswer(replicaId: replica.id))
        case .notPrimary:
            throw ReplicaRefusal(409, "instance_not_primary", "\(instance) is not the agent's current instance", field: "instance_id")
        case .namedReplicaNotActive(let id):
            throw ReplicaRefusal(409, "replica_not_ready", "replica \(id.uuidString.lowercased()) is not active for this agent", field: "replica_id")
        case .promote(let id):
            (promoting, emergencyPlan) = (id, (nil, false))
        case .noReadyReplica(let emergency, let firstNotice):
            (promoting, emergencyPlan) = (nil, (emergency, firstNotice))
        }
        if recorded == nil {
            let id = try conn.query(
                """
                INSERT INTO spot_interruption_events (agent_id, client_id, instance_id, pool_id, signal_type, signal_time,
                                                      termination_time, response_action, detected_at)
                VALUES ($1, $2, $3, $4, 'termination-notice', $5, $6, 'recorded', $5) RETURNING id
                """, [agent.id, agent.clientId, instance, agent.poolId, receivedAt, terminationTime]
            )[0].decode(UUID.self, at: 0)
            recorded = (id, "recorded", nil, nil, nil)
            try Agents.recordSignal(agent.id, "termination-notice", on: conn)
        }
        let eventId = recorded!.id
        if let promoting {
            var replica = try ReplicaRecord.lock(promoting, agent: agent.id, on: conn)
            let ms = max(0, Int(Date().timeIntervalSince(receivedAt) * 1000))
            try promote(
                &replica, agent: &agent, trigger: .failover, initiatedAt: receivedAt, terminateOld: false,
                oldTerminatedAt: terminationTime ?? receivedAt.addingTimeInterval(120), eventId: eventId, failoverTimeMs: ms, on: conn)
            _ = try conn.execute(
                """
                UPDATE spot_interruption_events SET response_action = 'replica_promoted', replica_id = $2, new_instance_id = $3,
                       failover_completed = true, failover_completed_at = now(), failover_time_ms = $4, success = true
                 WHERE id = $1
                """, [eventId, replica.id, replica.instanceId, ms])
            try Outbox.append(
                Envelope(
                    type: RoutingKey.interruptionTermination, producer: Self.producer,
                    payload: InterruptionRecorded(
                        eventId: eventId, clientId: agent.clientId, agentId: agent.id, instanceId: instance, poolId: nil,
                        signalType: .terminationNotice, riskScore: nil, action: "replica_promoted")), on: conn)
            try replaceManualReplica(agent, on: conn)
            return try .json(
                200,
                FailoverAnswer(
                    newInstanceId: replica.instanceId, oldInstanceId: instance, replicaId: replica.id, failoverTimeMs: ms, eventId: eventId))
        }
        // no ready replica: the first notice launches one (a repeat finds it in `active`)
        var emergency = emergencyPlan.emergency
        if emergencyPlan.firstNotice {
            if emergency == nil {
                do {
                    emergency = try launch(
                        .automaticTermination, for: agent, placement: .init(safe: true), createdBy: "system", user: nil,
                        tags: .object(["reason": .string("termination notice without a ready replica")]), on: conn
                    ).id
                } catch let refusal as ReplicaRefusal {
                    try event("replica.not_launched", agent: agent, replica: nil, refusal.message, severity: "warning", on: conn)
                }
            }
            // the answer says so too; the command reaches the agent even if the answer is lost
            try Commands.issue(
                try .init(
                    .snapshot, clientId: agent.clientId, agentId: agent.id, targetInstanceId: instance, replicaId: emergency,
                    payload: ["reason": "termination notice without a ready replica", "instance_id": instance],
                    issuedBy: "replicas", priority: 10, expiresIn: .seconds(120)),
                producer: Self.producer, on: conn)
            _ = try conn.execute(
                """
                UPDATE spot_interruption_events SET response_action = 'emergency_snapshot_required', replica_id = $2, success = false,
                       error_message = 'no ready replica'
                 WHERE id = $1
                """, [eventId, emergency])
            let report = FailoverReport(
                clientId: agent.clientId, agentId: agent.id, eventId: eventId, replicaId: emergency, oldInstanceId: instance,
                newInstanceId: nil, trigger: .failover, failoverTimeMs: nil, reason: "no ready replica")
            try Outbox.append(Envelope(type: RoutingKey.failoverFailed, producer: Self.producer, payload: report), on: conn)
            try Outbox.append(
                Envelope(
                    type: RoutingKey.interruptionTermination, producer: Self.producer,
                    payload: InterruptionRecorded(
                        eventId: eventId, clientId: agent.clientId, agentId: agent.id, instanceId: instance, poolId: agent.poolId,
                        signalType: .terminationNotice, riskScore: nil, action: "emergency_snapshot_required")), on: conn)
            try event(
                "failover.failed", agent: agent, replica: emergency, "termination notice for \(instance) without a ready replica", severity: "error", on: conn)
        }
        return try .json(409, NoReplicaAnswer(emergencyReplicaId: emergency, eventId: eventId))
    }

    // MARK: a primary lost without a notice

    /// Instance states of a primary that serves no more.
    static let lostStates: Set<String> = ["shutting-down", "terminated", "stopping", "stopped", "not-found"]

    /// The replica's agent looked at the silent primary's instance (`check_primary`). When the
    /// instance is gone and the primary is still the agent's and still silent, the replica is
    /// promoted now — under the agent's row lock, so never twice and never beside a primary
    /// that came back — and the loss is recorded as an `instance-lost` interruption. A stopped
    /// instance could be started again: the new primary's agent terminates it. A primary whose
    /// instance still runs is cut off, not lost: it is left as it is and alerted (once an hour).
    func primaryChecked(_ commandId: UUID, replicaId: UUID, result: JSONValue?, agent: inout AgentRecord, on conn: PGConnection) throws {
        guard case .object(let fields)? = result, let state = fields["primary_state"]?.string else {
            throw ReplicaRefusal(400, "missing_field", "a succeeded check_primary reports result.primary_state", field: "result.primary_state")
        }
        guard
            let checked = try conn.query("SELECT payload->>'primary_instance_id' FROM commands WHERE id = $1", [commandId]).first?
                .decodeIfPresent(String.self, at: 0), checked == agent.instanceId
        else { return }  // the agent has another primary by now
        // its last sign of life: its last heartbeat, or its promotion when it has not spoken since —
        // the previous primary's last heartbeat is not this one's (and would name its loss after that one)
        let promotedAt = try conn.query(
            "SELECT max(created_at) FROM switches WHERE agent_id = $1 AND new_instance_id = $2", [agent.id, checked]
        ).first?.decodeIfPresent(Date.self, at: 0)
        let lastSign = [agent.lastHeartbeatAt, promotedAt].compactMap { $0 }.max()
        let silent = lastSign.map { Date().timeIntervalSince($0) >= Double(configuration.silenceBeforeCheck.components.seconds) } ?? true
        guard Self.lostStates.contains(state) else {
            if silent {
                try alert(
                    "primary_unreachable", agent: agent, replica: replicaId,
                    "\(checked) sends nothing but its instance is \(state): not failed over (it may still be serving)",
                    dedupKey: "primary-unreachable:\(agent.id.uuidString.lowercased()):\(Int(Date().timeIntervalSince1970) / 3600)", on: conn)
            }
            return
        }
        guard silent else { return }  // it spoke again since the check was issued
        var replica = try ReplicaRecord.lock(replicaId, agent: agent.id, on: conn)
        guard replica.status == .ready, replica.instanceId != nil else { return }
        let detected = Date()
        let lastHeard = lastSign ?? detected
        let eventId = try conn.query(
            """
            INSERT INTO spot_interruption_events (agent_id, client_id, instance_id, pool_id, signal_type, signal_time, response_action,
                                                  detected_at, error_message)
            VALUES ($1, $2, $3, $4, 'instance-lost', $5, 'recorded', $6, $7)
            ON CONFLICT (agent_id, signal_type, signal_time) DO NOTHING RETURNING id
            """, [agent.id, agent.clientId, checked, agent.poolId, lastHeard, detected, "instance \(state), no notice"]
        ).first?.decode(UUID.self, at: 0)
        // the failover time counts from the last sign of life: what the workload was without a primary
        let ms = max(0, Int(detected.timeIntervalSince(lastHeard) * 1000))
        try promote(
            &replica, agent: &agent, trigger: .failover, initiatedAt: detected, terminateOld: false,
            oldTerminatedAt: state == "terminated" || state == "not-found" || state == "shutting-down" ? detected : nil,
            eventId: eventId, failoverTimeMs: ms, on: conn)
        if let eventId {
            _ = try conn.execute(
                """
                UPDATE spot_interruption_events SET response_action = 'replica_promoted', replica_id = $2, new_instance_id = $3,
                       failover_completed = true, failover_completed_at = now(), failover_time_ms = $4, success = true
                 WHERE id = $1
                """, [eventId, replica.id, replica.instanceId, ms])
        }
        if state == "stopped" || state == "stopping", let newInstance = replica.instanceId {
            // fenced: a stopped primary started again would serve beside the new one
            try Commands.issue(
                try .init(
                    .terminate, clientId: agent.clientId, agentId: agent.id, targetInstanceId: newInstance,
                    payload: ["instance_id": checked, "reason": "the old primary was \(state) and replaced"], issuedBy: "replicas", priority: 10),
                producer: Self.producer, on: conn)
        }
        try alert(
            "primary_lost", agent: agent, replica: replica.id, "\(checked) was \(state) without a notice; replica \(replica.instanceId ?? "?") promoted",
            dedupKey: nil, on: conn)
        try replaceManualReplica(agent, on: conn)
    }
}
