import Foundation
import SpotFleet
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
        guard
            let agent = try conn.query(
                "SELECT auto_terminate_enabled FROM agents WHERE id = $1 AND client_id = $2 FOR UPDATE", [r.agentId, r.clientId]
            ).first
        else { return }  // ingest checked the agent; a deleted one is not revived
        let autoTerminate = try agent.decode(Bool.self, at: 0)
        var trigger = SwitchTrigger.manual
        if let command = r.commandId,
            let issuer = try conn.query(
                "SELECT issued_by FROM commands WHERE id = $1 AND agent_id = $2", [command, r.agentId]
            ).first?.decode(String.self, at: 0)
        {
            trigger = issuer == "decisions" ? .autoSwitch : issuer == "replicas" ? .failover : .manual
        }
        try Pools.ensure([r.old.poolId, r.new.poolId].compactMap { $0 }, on: conn)
        // the agent knows its own type's on-demand price; after a switch to another type the
        // price that counts is the new type's, from the price book
        var onDemand = r.onDemandPrice
        if let newType = r.new.instanceType, newType != r.old.instanceType {
            onDemand = try conn.query(
                """
                SELECT c.on_demand_price::float8 FROM spot_pools p
                  CROSS JOIN LATERAL (SELECT on_demand_price FROM pricing_snapshots_clean c
                                       WHERE c.pool_id = p.id AND c.on_demand_price IS NOT NULL AND c.time_bucket <= $3
                                       ORDER BY c.time_bucket DESC LIMIT 1) c
                 WHERE p.instance_type = $1 AND p.region = $2 LIMIT 1
                """, [newType.rawValue, (r.new.az ?? r.old.az)?.region.rawValue, r.initiatedAt]
            ).first?.decodeIfPresent(Double.self, at: 0)
        }
        func price(_ side: SwitchReported.Side, reported: Double?) throws -> Price {
            if side.mode == .onDemand {
                return Price(value: onDemand, confidence: onDemand == nil ? nil : 1, source: onDemand == nil ? nil : "reported")
            }
            if let reported { return Price(value: reported, confidence: 1, source: "reported") }
            guard let pool = side.poolId,
                let row = try conn.query(
                    """
                    SELECT spot_price::float8, confidence_score::float8, data_source FROM pricing_snapshots_clean
                     WHERE pool_id = $1 AND time_bucket <= $2 ORDER BY time_bucket DESC LIMIT 1
                    """, [pool.rawValue, r.initiatedAt]
                ).first
            else { return Price() }
            return Price(value: try row.decode(Double.self, at: 0), confidence: try row.decode(Double.self, at: 1), source: try row.decode(String.self, at: 2))
        }
        let old = try price(r.old, reported: r.oldSpotPrice)
        let new = try price(r.new, reported: r.newSpotPrice)
        let impact = old.value.flatMap { o in new.value.map { o - $0 } }
        let confidence = SavingsConfidence(old: old.confidence, new: new.confidence).rawValue
        let oldTerminated = autoTerminate ? r.oldTerminatedAt : nil
        func side(_ s: SwitchReported.Side, _ price: Price) -> Switches.Side {
            Switches.Side(
                instanceId: s.instanceId.rawValue, instanceType: s.instanceType?.rawValue, region: s.az?.region.rawValue, az: s.az?.rawValue,
                mode: s.mode.rawValue, poolId: s.poolId?.rawValue, amiId: s.amiId, spotPrice: s.mode == .spot ? price.value : nil,
                priceConfidence: price.confidence, priceDataSource: price.source)
        }
        guard
            let switchId = try Switches.record(
                Switches.Record(
                    clientId: r.clientId, agentId: r.agentId, commandId: r.commandId, reportId: r.reportId, old: side(r.old, old), new: side(r.new, new),
                    onDemandPrice: onDemand, savingsImpact: impact, savingsConfidence: confidence, trigger: trigger, initiatedAt: r.initiatedAt,
                    amiCreatedAt: r.amiCreatedAt, instanceLaunchedAt: r.instanceLaunchedAt, instanceReadyAt: r.instanceReadyAt,
                    oldTerminatedAt: oldTerminated,
                    traffic: try r.traffic.map(JSONValue.encoding)),
                on: conn)
        else { return }  // a redelivery
        if let command = r.commandId {
            try Commands.complete(
                command, agentId: r.agentId, status: .succeeded, result: .object(["switch_id": .string(switchId.uuidString.lowercased())]), on: conn)
        }
    }
}
