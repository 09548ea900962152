import Foundation
import ReplicaCore
import SpotFleet
import SpotModels
import SpotRuntime
import SpotStore

/// The agents' traffic configurations (`agent_traffic`), and what their promoted replicas and
/// fenced old primaries report about moving it.
extension Coordinator {
    func traffic(of agent: UUID, on conn: PGConnection) throws -> TrafficConfig? {
        guard let text = try conn.query("SELECT config::text FROM agent_traffic WHERE agent_id = $1", [agent]).first?.decode(String.self, at: 0) else {
            return nil
        }
        return try WireJSON.decoder().decode(TrafficConfig.self, from: Data(text.utf8))
    }

    /// `PUT …/traffic`: the whole configuration, validated (an empty one moves nothing).
    func setTraffic(_ r: ReplicaRequest, agent: AgentRecord, on conn: PGConnection) throws -> APIReply {
        let config = try decode(TrafficConfig.self, r.body)
        try config.validate()
        let text = String(decoding: try WireJSON.encoder().encode(config), as: UTF8.self)
        _ = try conn.execute(
            """
            INSERT INTO agent_traffic (agent_id, client_id, config, updated_at) VALUES ($1, $2, $3::jsonb, now())
            ON CONFLICT (agent_id) DO UPDATE SET config = EXCLUDED.config, updated_at = now()
            """, [agent.id, agent.clientId, text])
        try event(
            "agent.traffic_changed", agent: agent, replica: nil,
            "traffic: \(config.elasticIps.count) Elastic IPs, \(config.targetGroups.count) target groups, \(config.dnsRecords.count) DNS records",
            on: conn)
        return try .json(200, TrafficView(agentId: agent.id, traffic: config))
    }

    /// The promoted replica's agent answered its `promote`: the traffic outcome goes on the
    /// switch row; a failover waiting for its traffic completes (or fails) now; the old
    /// primary is told to fence itself once its target groups drained it.
    func promotionAnswered(_ commandId: UUID, status: CommandStatus, result: JSONValue?, error: String?, agent: AgentRecord, on conn: PGConnection) throws {
        guard
            let text = try conn.query("SELECT payload::text FROM commands WHERE id = $1", [commandId]).first?.decode(String.self, at: 0),
            let payload = try? WireJSON.decoder().decode(PromotePayload.self, from: Data(text.utf8))
        else { return }  // a promotion of a release before traffic moved: nothing to add
        let outcome = result?["traffic"].flatMap { try? $0.decoded(as: TrafficOutcome.self) }
        if let outcome {
            try Switches.recordTraffic(
                agentId: agent.id, newInstanceId: payload.newInstanceId, try .encoding(outcome),
                on: conn)
        }
        let moved = status == .succeeded && (outcome?.moved ?? payload.traffic.isEmpty)
        if payload.completesFailover {
            let failedSteps = outcome?.steps.filter { $0.status != "done" }.map { "\($0.kind) \($0.target): \($0.detail ?? "failed")" } ?? []
            let report = FailoverReport(
                clientId: agent.clientId, agentId: agent.id, eventId: payload.eventId, replicaId: payload.replicaId,
                oldInstanceId: payload.oldInstanceId, newInstanceId: payload.newInstanceId, trigger: payload.trigger,
                failoverTimeMs: payload.failoverTimeMs,
                reason: moved ? nil : "traffic not moved: " + (failedSteps.isEmpty ? error ?? "the promotion failed" : failedSteps.joined(separator: "; ")),
                traffic: outcome)
            try Outbox.append(
                Envelope(type: moved ? RoutingKey.failoverCompleted : RoutingKey.failoverFailed, producer: Self.producer, payload: report), on: conn)
        }
        if !moved {
            try alert(
                "traffic_not_moved", agent: agent, replica: payload.replicaId,
                "the traffic did not fully move to \(payload.newInstanceId): \(error ?? outcome.map { "\($0.steps.filter { $0.status != "done" }.count) steps failed" } ?? "no outcome")",
                dedupKey: nil, on: conn)
        }
        guard status == .succeeded, let old = payload.oldInstanceId, old != payload.newInstanceId else { return }
        let drain = try trafficDrainSeconds(result)
        try Commands.issue(
            try .init(
                .fence, clientId: agent.clientId, agentId: agent.id, targetInstanceId: old,
                payload: FencePayload(
                    instanceId: old, newInstanceId: payload.newInstanceId, drainSeconds: drain,
                    reason: "replaced by \(payload.newInstanceId) (\(payload.trigger.rawValue))"),
                issuedBy: "replicas", priority: 10, expiresIn: .seconds(Int64(drain) + 900)),
            producer: Self.producer, on: conn)
    }

    /// How long the old primary may still drain, as its successor's agent measured it (the
    /// groups' deregistration delay), bounded to ten minutes.
    func trafficDrainSeconds(_ result: JSONValue?) throws -> Int {
        guard case .number(let n)? = result?["drain_seconds"] else { return 0 }
        return max(0, min(600, Int(n)))
    }

    /// The old primary ran its stop hook.
    func fenceAnswered(_ commandId: UUID, status: CommandStatus, agent: AgentRecord, on conn: PGConnection) throws {
        guard let old = try conn.query("SELECT target_instance_id FROM commands WHERE id = $1", [commandId]).first?.decodeIfPresent(String.self, at: 0)
        else { return }
        if status == .succeeded {
            try Switches.recordFenced(agentId: agent.id, oldInstanceId: old, at: Date(), on: conn)
        } else {
            try alert("fence_failed", agent: agent, replica: nil, "\(old) could not run its stop hook: it may still serve", dedupKey: nil, on: conn)
        }
    }
}
