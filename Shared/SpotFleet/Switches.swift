import Foundation
import SpotModels
import SpotStore

/// An agent moving from one instance to another — a switch its agent reported, or a replica
/// promoted by the coordinator. Both write the same rows by the same rules: the `switches`
/// row, the new instance's row, the old instance's row, the agent's mapping.
public enum Switches {
    /// One side of a switch, as the `switches` row keeps it.
    public struct Side: Sendable, Equatable {
        public var instanceId: String?
        public var instanceType: String?
        public var region: String?
        public var az: String?
        public var mode: String?
        public var poolId: String?
        public var amiId: String?
        /// The spot price (nil on on-demand), its confidence and where it came from.
        public var spotPrice: Double?
        public var priceConfidence: Double?
        public var priceDataSource: String?

        public init(
            instanceId: String?, instanceType: String?, region: String?, az: String?, mode: String?, poolId: String?, amiId: String? = nil,
            spotPrice: Double? = nil, priceConfidence: Double? = nil, priceDataSource: String? = nil
        ) {
            self.instanceId = instanceId
            self.instanceType = instanceType
            self.region = region
            self.az = az
            self.mode = mode
            self.poolId = poolId
            self.amiId = amiId
            self.spotPrice = spotPrice
            self.priceConfidence = priceConfidence
            self.priceDataSource = priceDataSource
        }
    }

    public struct Record: Sendable {
        public var clientId: UUID
        public var agentId: UUID
        /// The command that asked for it (kept only when it is this agent's).
        public var commandId: UUID?
        /// The agent's id of its report: a second report with it records nothing.
        public var reportId: UUID?
        public var old: Side
        public var new: Side
        public var onDemandPrice: Double?
        public var savingsImpact: Double?
        public var savingsConfidence: String?
        public var trigger: SwitchTrigger
        public var timing: JSONValue?
        public var initiatedAt: Date?
        public var amiCreatedAt: Date?
        public var instanceLaunchedAt: Date?
        public var instanceReadyAt: Date?
        public var oldTerminatedAt: Date?
        /// What moving the traffic did (`TrafficOutcome`), when the switch's agent moved it.
        public var traffic: JSONValue?

        public init(
            clientId: UUID, agentId: UUID, commandId: UUID? = nil, reportId: UUID? = nil, old: Side, new: Side, onDemandPrice: Double?,
            savingsImpact: Double?, savingsConfidence: String?, trigger: SwitchTrigger, timing: JSONValue? = nil, initiatedAt: Date?,
            amiCreatedAt: Date? = nil, instanceLaunchedAt: Date? = nil, instanceReadyAt: Date?, oldTerminatedAt: Date?, traffic: JSONValue? = nil
        ) {
            self.traffic = traffic
            self.clientId = clientId
            self.agentId = agentId
            self.commandId = commandId
            self.reportId = reportId
            self.old = old
            self.new = new
            self.onDemandPrice = onDemandPrice
            self.savingsImpact = savingsImpact
            self.savingsConfidence = savingsConfidence
            self.trigger = trigger
            self.timing = timing
            self.initiatedAt = initiatedAt
            self.amiCreatedAt = amiCreatedAt
            self.instanceLaunchedAt = instanceLaunchedAt
            self.instanceReadyAt = instanceReadyAt
            self.oldTerminatedAt = oldTerminatedAt
        }
    }

    /// Records the switch and moves the agent to its new instance, in the caller's transaction.
    /// Returns the switch's id, or nil when a report with the same id was recorded before (then
    /// nothing is written).
    ///
    /// - The new instance's row is created or taken over (an instance id belongs to the client
    ///   that first had it: another client's row is left alone), active, in the new pool and mode.
    /// - The old instance's row is closed when the switch says it was terminated.
    /// - The agent points at the new instance; `agentStatus` (when given) is its status now, and
    ///   `failover` marks the time of its last failover (a primary promoted a moment ago is not
    ///   yet expected to have spoken).
    @discardableResult
    public static func record(_ r: Record, agentStatus: AgentStatus? = nil, failover: Bool = false, on conn: PGConnection) throws -> UUID? {
        let inserted = try conn.query(
            """
            INSERT INTO switches (client_id, agent_id, command_id, report_id, old_instance_id, old_instance_type, old_region, old_az, old_mode,
                                  old_pool_id, old_ami_id, new_instance_id, new_instance_type, new_region, new_az, new_mode, new_pool_id,
                                  new_ami_id, on_demand_price, old_spot_price, new_spot_price, old_price_confidence, new_price_confidence,
                                  old_price_data_source, new_price_data_source, savings_impact, savings_confidence, event_trigger,
                                  timing_data, initiated_at, ami_created_at, instance_launched_at, instance_ready_at, old_terminated_at,
                                  traffic)
            SELECT $1, $2, (SELECT id FROM commands WHERE id = $3 AND agent_id = $2), $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
                   $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29::jsonb, $30, $31, $32,
                   $33, $34, $35::jsonb
            ON CONFLICT (report_id) DO NOTHING
            RETURNING id
            """,
            [
                r.clientId, r.agentId, r.commandId, r.reportId, r.old.instanceId, r.old.instanceType, r.old.region, r.old.az, r.old.mode,
                r.old.poolId, r.old.amiId, r.new.instanceId, r.new.instanceType, r.new.region, r.new.az, r.new.mode, r.new.poolId,
                r.new.amiId, r.onDemandPrice, r.old.spotPrice, r.new.spotPrice, r.old.priceConfidence, r.new.priceConfidence,
                r.old.priceDataSource, r.new.priceDataSource, r.savingsImpact, r.savingsConfidence, r.trigger, r.timing?.text,
                r.initiatedAt, r.amiCreatedAt, r.instanceLaunchedAt, r.instanceReadyAt, r.oldTerminatedAt, r.traffic?.text,
            ])
        guard let id = try inserted.first?.decode(UUID.self, at: 0) else { return nil }
        if let instance = r.new.instanceId {
            _ = try conn.execute(
                """
                INSERT INTO instances AS i (id, client_id, agent_id, instance_type, region, az, ami_id, current_mode, current_pool_id,
                                            spot_price, on_demand_price, is_active, installed_at, last_switch_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, true, coalesce($12, now()), now())
                ON CONFLICT (id) DO UPDATE SET agent_id = EXCLUDED.agent_id, current_mode = EXCLUDED.current_mode,
                    current_pool_id = EXCLUDED.current_pool_id, is_active = true, terminated_at = NULL, last_switch_at = now(),
                    -- registered before this (late) report arrived: it ran since it was ready
                    installed_at = least(i.installed_at, EXCLUDED.installed_at)
                 WHERE i.client_id = EXCLUDED.client_id
                """,
                [
                    instance, r.clientId, r.agentId, r.new.instanceType, r.new.region, r.new.az, r.new.amiId, r.new.mode, r.new.poolId,
                    r.new.spotPrice, r.onDemandPrice, r.instanceReadyAt,
                ])
        }
        if let instance = r.old.instanceId {
            _ = try conn.execute(
                """
                UPDATE instances SET last_switch_at = now(), is_active = is_active AND $3::timestamptz IS NULL,
                       terminated_at = coalesce($3, terminated_at)
                 WHERE id = $1 AND client_id = $2
                """, [instance, r.clientId, r.oldTerminatedAt])
        }
        _ = try conn.execute(
            """
            UPDATE agents SET primary_epoch = primary_epoch + CASE WHEN instance_id IS DISTINCT FROM $2 THEN 1 ELSE 0 END,
                   instance_id = $2, current_mode = coalesce($3, current_mode), current_pool_id = $4,
                   instance_type = coalesce($5, instance_type), az = coalesce($6, az), region = coalesce($7, region),
                   status = coalesce($8, status),
                   last_failover_at = CASE WHEN $9 THEN now() ELSE last_failover_at END
             WHERE id = $1
            """,
            [
                r.agentId, r.new.instanceId, r.new.mode, r.new.poolId, r.new.instanceType, r.new.az, r.new.region, agentStatus, failover,
            ])
        return id
    }

    /// What moving the traffic to `newInstanceId` did, on the agent's latest switch to it (a
    /// promotion's row is written before its agent moves the traffic); the switch's id.
    @discardableResult
    public static func recordTraffic(agentId: UUID, newInstanceId: String, _ outcome: JSONValue, on conn: PGConnection) throws -> UUID? {
        try conn.query(
            """
            UPDATE switches SET traffic = $3::jsonb
             WHERE id = (SELECT id FROM switches WHERE agent_id = $1 AND new_instance_id = $2 ORDER BY created_at DESC LIMIT 1)
            RETURNING id
            """, [agentId, newInstanceId, outcome.text]
        ).first?.decode(UUID.self, at: 0)
    }

    /// The old primary of the agent's latest switch away from `oldInstanceId` stopped serving.
    public static func recordFenced(agentId: UUID, oldInstanceId: String, at time: Date, on conn: PGConnection) throws {
        _ = try conn.execute(
            """
            UPDATE switches SET fenced_at = coalesce(fenced_at, $3)
             WHERE id = (SELECT id FROM switches WHERE agent_id = $1 AND old_instance_id = $2 ORDER BY created_at DESC LIMIT 1)
            """, [agentId, oldInstanceId, time])
    }
}
