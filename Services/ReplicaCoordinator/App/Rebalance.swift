import Foundation
import ReplicaCore
import SpotFleet
import SpotMarket
import SpotModels
import SpotRuntime
import SpotStore

extension Coordinator {
    // MARK: rebalance recommendation

    struct RebalanceAnswer: Encodable {
        var success = true
        var eventId: UUID
        var signalType = InterruptionSignal.rebalanceRecommendation.rawValue
        var riskScore: Double
        var riskComponents: RiskModel.Score
        var threshold: Double
        var action: String
        var reason: String
        var replicaId: UUID?
    }

    /// `POST /interruption`: a termination notice takes the failover path; a rebalance
    /// recommendation is recorded with its risk and, above the threshold, gets an
    /// `automatic-rebalance` replica in the cheapest pool without recent signals.
    func handleInterruption(_ r: ReplicaRequest, agent: inout AgentRecord, on conn: PGConnection) throws -> APIReply {
        let body = try decode(InterruptionBody.self, r.body)
        guard let text = body.signalType, let signal = InterruptionSignal(named: text) else {
            throw ReplicaRefusal(
                400, "unknown_signal_type", "signal_type must be rebalance-recommendation or termination-notice", field: "signal_type")
        }
        if signal == .terminationNotice {
            return try handleTermination(
                agent: &agent, instanceId: body.instanceId, terminationTime: body.terminationTime, replicaId: body.replicaId,
                receivedAt: r.receivedAt, on: conn)
        }
        if let ts = body.timestamp, !(ts > 0 && ts < 4_102_444_800) {
            throw ReplicaRefusal(400, "out_of_range", "timestamp must be seconds since 1970", field: "timestamp")
        }
        let signalTime = body.signalTime ?? body.timestamp.map { Date(timeIntervalSince1970: $0) } ?? r.receivedAt
        let instance = try body.instanceId.map(instanceId) ?? agent.instanceId
        if let existing = try conn.query(
            """
            SELECT id, risk_score::float8, response_action, replica_id, risk_components::text FROM spot_interruption_events
             WHERE agent_id = $1 AND signal_type = 'rebalance-recommendation' AND signal_time = $2
            """, [agent.id, signalTime]
        ).first {
            let components = try JSONDecoder().decode(RiskModel.Score.self, from: Data((try existing.decodeIfPresent(String.self, at: 4) ?? "{}").utf8))
            return try .json(
                200,
                RebalanceAnswer(
                    eventId: try existing.decode(UUID.self, at: 0), riskScore: try existing.decodeIfPresent(Double.self, at: 1) ?? 0,
                    riskComponents: components, threshold: configuration.risk.threshold,
                    action: try existing.decodeIfPresent(String.self, at: 2) ?? "recorded", reason: "already recorded",
                    replicaId: try existing.decodeIfPresent(UUID.self, at: 3)))
        }
        // the pool's interruption rate as the decision engine sees it: the band it last used
        // for the pool (pool_risk_analysis) as the prior, the fleet's record as of now over it
        let inputs = try conn.query(
            """
            SELECT (SELECT advisor_band FROM pool_risk_analysis WHERE pool_id = $1 ORDER BY analyzed_at DESC LIMIT 1),
                   (SELECT extract(epoch FROM now() - coalesce(i.installed_at, i.created_at)) / 3600 FROM instances i WHERE i.id = $2)::float8,
                   (SELECT coalesce(stddev_pop(spot_price) / nullif(avg(spot_price), 0), 0) FROM pricing_snapshots_clean
                     WHERE pool_id = $1 AND time_bucket > now() - interval '6 hours')::float8
            """, [agent.poolId, instance]
        )[0]
        let interruptions = InterruptionModel()
        let record = try agent.poolId.map { try PoolEvidence.read([$0], model: interruptions, on: conn)[$0] } ?? nil
        let band = try inputs.decodeIfPresent(Int.self, at: 0).flatMap(AdvisorBand.init)
        let score = configuration.risk.score(
            .init(
                poolMonthlyRate: interruptions.monthly(band: band, evidence: record?.evidence ?? .init()),
                instanceAgeHours: try inputs.decodeIfPresent(Double.self, at: 1) ?? 0, priceVolatility: try inputs.decodeIfPresent(Double.self, at: 2) ?? 0))
        let active = try ReplicaRecord.list(agent: agent.id, activeOnly: true, on: conn)
        var action = "recorded"
        var reason: String
        var replicaId: UUID?
        if let standby = active.first {
            reason = "the agent already has an active \(standby.type.rawValue) replica"
            replicaId = standby.id
        } else if !agent.autoReplicaEnabled {
            reason = "automatic replicas are disabled for this agent"
        } else if !configuration.risk.warrantsReplica(score) {
            reason = "risk \(score.total) is below the threshold \(configuration.risk.threshold)"
        } else {
            do {
                replicaId = try launch(
                    .automaticRebalance, for: agent, placement: .init(safe: true), createdBy: "system", user: nil,
                    tags: .object(["risk_score": .number(score.total)]), on: conn
                ).id
                action = "replica_created"
                reason = "risk \(score.total) reached the threshold \(configuration.risk.threshold)"
            } catch let refusal as ReplicaRefusal {
                reason = "risk warranted a replica but none could be placed: \(refusal.message)"
            }
        }
        let components = String(decoding: try JSONEncoder().encode(score), as: UTF8.self)
        let eventId = try conn.query(
            """
            INSERT INTO spot_interruption_events (agent_id, client_id, instance_id, pool_id, signal_type, signal_time,
                                                  risk_score, risk_components, response_action, replica_id, detected_at)
            VALUES ($1, $2, $3, $4, 'rebalance-recommendation', $5, $6, $7::jsonb, $8, $9, $10) RETURNING id
            """, [agent.id, agent.clientId, instance, agent.poolId, signalTime, score.total, components, action, replicaId, r.receivedAt]
        )[0].decode(UUID.self, at: 0)
        try Agents.recordSignal(agent.id, "rebalance-recommendation", on: conn)
        try Outbox.append(
            Envelope(
                type: RoutingKey.interruptionRebalance, producer: Self.producer,
                payload: InterruptionRecorded(
                    eventId: eventId, clientId: agent.clientId, agentId: agent.id, instanceId: instance, poolId: agent.poolId,
                    signalType: .rebalanceRecommendation, riskScore: score.total, action: action)), on: conn)
        return try .json(
            200,
            RebalanceAnswer(
                eventId: eventId, riskScore: score.total, riskComponents: score, threshold: configuration.risk.threshold, action: action,
                reason: reason, replicaId: replicaId))
    }
}
