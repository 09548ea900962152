import Foundation
import SpotModels
import SpotRuntime
import SpotStore

/// Applies `switch.reported` (seed 004, switches steps 10–12) in one transaction: a switches
/// row with timings, both prices (as reported, else the clean snapshot's, with confidence and
/// source) and the savings impact; the new instance registered; the old one closed only when
/// the agent auto-terminates and says it did; the agent remapped; the command completed. The
/// report id makes a redelivered report a no-op.
struct SwitchRecorder: Sendable {
    struct Price {
        var value: Double?
        var confidence: Double?
        var source: String?
    }

    func apply(_ r: SwitchReported, on conn: PGConnection) throws {
        guard let agent = try conn.query(
            "SELECT auto_terminate_enabled FROM agents WHERE id = $1 AND client_id = $2 FOR UPDATE", [r.agentId, r.clientId]
        ).first else { return }  // ingest checked the agent; a deleted one is not revived
        let autoTerminate = try agent.decode(Bool.self, at: 0)
        var trigger = "manual"
        if let command = r.commandId, let issuer = try conn.query(
            "SELECT issued_by FROM commands WHERE id = $1 AND agent_id = $2", [command, r.agentId]
        ).first?.decode(String.self, at: 0) {
            trigger = issuer == "decisions" ? "auto_switch" : issuer == "replicas" ? "failover" : "manual"
        }
        for pool in [r.old.poolId, r.new.poolId].compactMap({ $0 }) {
            _ = try conn.execute(
                "INSERT INTO spot_pools (id, pool_name, instance_type, region, az) VALUES ($1, $1, $2, $3, $4) ON CONFLICT DO NOTHING",
                [pool.rawValue, pool.instanceType.rawValue, pool.region.rawValue, pool.az.rawValue])
        }
        func price(_ side: SwitchReported.Side, reported: Double?) throws -> Price {
            if side.mode == .onDemand { return Price(value: r.onDemandPrice, confidence: r.onDemandPrice == nil ? nil : 1, source: r.onDemandPrice == nil ? nil : "reported") }
            if let reported { return Price(value: reported, confidence: 1, source: "reported") }
            guard let pool = side.poolId, let row = try conn.query(
                """
                SELECT spot_price::float8, confidence_score::float8, data_source FROM pricing_snapshots_clean
                 WHERE pool_id = $1 AND time_bucket <= $2 ORDER BY time_bucket DESC LIMIT 1
                """, [pool.rawValue, r.initiatedAt]
            ).first else { return Price() }
            return Price(value: try row.decode(Double.self, at: 0), confidence: try row.decode(Double.self, at: 1), source: try row.decode(String.self, at: 2))
        }
        let old = try price(r.old, reported: r.oldSpotPrice)
        let new = try price(r.new, reported: r.newSpotPrice)
        let impact = old.value.flatMap { o in new.value.map { o - $0 } }
        let confidence = SavingsConfidence(old: old.confidence, new: new.confidence).rawValue
        let oldTerminated = autoTerminate ? r.oldTerminatedAt : nil
        let inserted = try conn.query(
            """
            INSERT INTO switches (client_id, agent_id, command_id, report_id, old_instance_id, old_instance_type, old_region, old_az, old_mode,
                                  old_pool_id, old_ami_id, new_instance_id, new_instance_type, new_region, new_az, new_mode, new_pool_id,
                                  new_ami_id, on_demand_price, old_spot_price, new_spot_price, old_price_confidence, new_price_confidence,
                                  old_price_data_source, new_price_data_source, savings_impact, savings_confidence, event_trigger,
                                  initiated_at, ami_created_at, instance_launched_at, instance_ready_at, old_terminated_at)
            SELECT $1, $2, (SELECT id FROM commands WHERE id = $3 AND agent_id = $2), $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
                   $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33
            ON CONFLICT (report_id) DO NOTHING
            RETURNING id
            """,
            [
                r.clientId, r.agentId, r.commandId, r.reportId, r.old.instanceId.rawValue, r.old.instanceType?.rawValue,
                r.old.az?.region.rawValue, r.old.az?.rawValue, r.old.mode.rawValue, r.old.poolId?.rawValue, r.old.amiId,
                r.new.instanceId.rawValue, r.new.instanceType?.rawValue, r.new.az?.region.rawValue, r.new.az?.rawValue, r.new.mode.rawValue,
                r.new.poolId?.rawValue, r.new.amiId, r.onDemandPrice, r.old.mode == .spot ? old.value : nil,
                r.new.mode == .spot ? new.value : nil, old.confidence, new.confidence, old.source, new.source, impact, confidence, trigger,
                r.initiatedAt, r.amiCreatedAt, r.instanceLaunchedAt, r.instanceReadyAt, oldTerminated,
            ])
        guard let switchId = try inserted.first?.decode(UUID.self, at: 0) else { return }  // a redelivery
        _ = try conn.execute(
            """
            INSERT INTO instances AS i (id, client_id, agent_id, instance_type, region, az, ami_id, current_mode, current_pool_id,
                                        spot_price, on_demand_price, is_active, installed_at, last_switch_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, true, coalesce($12, now()), now())
            ON CONFLICT (id) DO UPDATE SET agent_id = EXCLUDED.agent_id, current_mode = EXCLUDED.current_mode,
                current_pool_id = EXCLUDED.current_pool_id, is_active = true, terminated_at = NULL, last_switch_at = now()
             WHERE i.client_id = EXCLUDED.client_id
            """,
            [
                r.new.instanceId.rawValue, r.clientId, r.agentId, r.new.instanceType?.rawValue, r.new.az?.region.rawValue,
                r.new.az?.rawValue, r.new.amiId, r.new.mode.rawValue, r.new.poolId?.rawValue, r.new.mode == .spot ? new.value : nil,
                r.onDemandPrice, r.instanceReadyAt,
            ])
        _ = try conn.execute(
            """
            UPDATE instances SET last_switch_at = now(), is_active = is_active AND $3::timestamptz IS NULL,
                   terminated_at = coalesce($3, terminated_at)
             WHERE id = $1 AND client_id = $2
            """, [r.old.instanceId.rawValue, r.clientId, oldTerminated])
        _ = try conn.execute(
            """
            UPDATE agents SET instance_id = $2, current_mode = $3, current_pool_id = $4,
                   instance_type = coalesce($5, instance_type), az = coalesce($6, az), region = coalesce($7, region)
             WHERE id = $1
            """,
            [
                r.agentId, r.new.instanceId.rawValue, r.new.mode.rawValue, r.new.poolId?.rawValue, r.new.instanceType?.rawValue,
                r.new.az?.rawValue, r.new.az?.region.rawValue,
            ])
        if let command = r.commandId {
            _ = try conn.execute(
                """
                UPDATE commands SET status = 'succeeded', completed_at = now(), result = jsonb_build_object('switch_id', $3::uuid)
                 WHERE id = $1 AND agent_id = $2 AND status IN ('pending', 'delivered')
                """, [command, r.agentId, switchId])
        }
    }
}
