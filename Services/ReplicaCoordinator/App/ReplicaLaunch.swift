import Foundation
import ReplicaCore
import SpotFleet
import SpotModels
import SpotRuntime
import SpotStore

/// Where a new replica goes, and the `launch_replica` command that makes it.
extension Coordinator {
    struct PlacementRequest {
        var pool: PoolID? = nil
        var excludeZones: Set<String> = []
        var preferredZones: [String] = []
        var maxHourlyCost: Double? = nil
        var safe = false
    }

    /// Creates a replica in the chosen pool and asks the primary's agent to launch it.
    @discardableResult
    func launch(
        _ type: ReplicaType, for agent: AgentRecord, id: UUID = UUID(), placement: PlacementRequest, createdBy: String,
        user: String?, tags: JSONValue, on conn: PGConnection
    ) throws -> ReplicaRecord {
        guard let instanceType = agent.instanceTypeValue, let az = agent.azValue, let primary = agent.instanceId else {
            throw ReplicaRefusal(409, "agent_location_unknown", "the agent has not reported its instance, type and zone yet")
        }
        // only zones where the workload's VPC has a subnet: elsewhere the launch would be refused
        let usable = agent.usableZones
        let quotes = try PriceBook.quotes(type: instanceType, region: az.region, window: configuration.priceWindow, on: conn)
            .filter { usable?.contains($0.pool.az.rawValue) ?? true }
        var chosen: PoolQuote?
        if let pool = placement.pool {
            if let usable, !usable.contains(pool.az.rawValue) {
                throw ReplicaRefusal(409, "zone_not_usable", "the workload's VPC has no subnet in \(pool.az.rawValue)", field: "pool_id")
            }
            guard pool.instanceType == instanceType, pool.region == az.region, pool.az != az else {
                throw ReplicaRefusal(
                    409, "pool_not_allowed", "a replica runs the agent's instance type in its region, outside its zone", field: "pool_id")
            }
            chosen = quotes.first { $0.pool == pool } ?? PoolQuote(pool: pool, price: 0, confidence: 0)
        } else {
            func pick(_ zones: Set<String>) -> PoolQuote? {
                Placement.choose(
                    from: quotes.filter { zones.isEmpty || zones.contains($0.pool.az.rawValue) }, instanceType: instanceType,
                    primaryAZ: az, excludeZones: placement.excludeZones, maxHourlyCost: placement.maxHourlyCost, safe: placement.safe)
            }
            chosen = pick(Set(placement.preferredZones)) ?? pick([])
            // for an emergency, a pool with recent signals is better than none
            if chosen == nil, placement.safe {
                chosen = Placement.choose(
                    from: quotes, instanceType: instanceType, primaryAZ: az, excludeZones: placement.excludeZones,
                    maxHourlyCost: placement.maxHourlyCost)
            }
        }
        guard let chosen else {
            throw ReplicaRefusal(
                409, "no_candidate_pool",
                "no \(instanceType.rawValue) pool in \(az.region.rawValue) outside \(az.rawValue) has a clean price from the last \(configuration.priceWindow.components.seconds / 60) minutes within the limits"
            )
        }
        let cost: Double? = chosen.price > 0 ? chosen.price : nil
        let rows = try conn.query(
            """
            INSERT INTO replica_instances (id, agent_id, replica_type, pool_id, instance_type, region, az, created_by,
                                           created_by_user, parent_instance_id, hourly_cost, tags)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb)
            RETURNING \(ReplicaRecord.columns)
            """,
            [
                id, agent.id, type.rawValue, chosen.pool.rawValue, instanceType.rawValue, az.region.rawValue,
                chosen.pool.az.rawValue, createdBy, user, primary, cost, tags.text,
            ])
        let replica = try ReplicaRecord(rows[0])
        try Commands.issue(
            try .init(
                .launchReplica, clientId: agent.clientId, agentId: agent.id, targetInstanceId: primary, replicaId: id,
                payload: LaunchPayload(
                    replicaId: id, replicaType: type.rawValue, poolId: chosen.pool.rawValue, instanceType: instanceType.rawValue,
                    region: az.region.rawValue, az: chosen.pool.az.rawValue),
                targetMode: .spot, targetPoolId: chosen.pool.rawValue, issuedBy: "replicas",
                priority: type == .automaticTermination ? 10 : type == .automaticRebalance ? 5 : 0,
                expiresIn: configuration.launchExpiry),
            producer: Self.producer, on: conn)
        try Agents.refreshReplicaSummary(agent.id, on: conn)
        try event(
            "replica.launching", agent: agent, replica: id,
            "\(type.rawValue) replica launching in \(chosen.pool.rawValue)", on: conn)
        return replica
    }
}
