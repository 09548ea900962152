import Foundation

// Request bodies as agents send them. Every field is optional at the decoding stage so that a
// missing field is reported by name; `validated(...)` turns a body into a trusted fact.

/// `POST /api/agents/register`
public struct RegisterRequest: Decodable, Sendable {
    public var logicalAgentId: String?
    public var instanceId: String?
    public var instanceType: String?
    public var region: String?
    public var az: String?
    public var amiId: String?
    public var mode: String?
    public var poolId: String?
    public var agentVersion: String?
    public var hostname: String?
    public var privateIp: String?
    public var publicIp: String?
    /// The zones where the instance's VPC has a subnet (nil: not known).
    public var usableZones: [String]?

    public func validated(_ check: FieldChecker) throws -> AgentRegistration {
        let logical = try check.required(check.identifier(logicalAgentId, "logical_agent_id", maxLength: 255), "logical_agent_id")
        let type = try check.parsed(instanceType, "instance_type", as: InstanceType.self, what: "instance type")
        let az = try check.parsed(az, "az", as: AvailabilityZone.self, what: "availability zone")
        let region = try check.parsed(region, "region", as: Region.self, what: "region")
        let pool = try check.parsed(poolId, "pool_id", as: PoolID.self, what: "pool id")
        try Consistency.check(region: region, az: az, pool: pool, instanceType: type)
        let usable = try usableZones.map { zones in
            guard zones.count <= 32 else { throw ValidationError(code: "too_many", field: "usable_zones", message: "at most 32 zones") }
            return try zones.enumerated().map { i, zone in
                let field = "usable_zones[\(i)]"
                let parsed = try check.required(check.parsed(zone, field, as: AvailabilityZone.self, what: "availability zone"), field)
                if let home = region ?? az?.region ?? pool?.region, parsed.region != home {
                    throw ValidationError(code: "inconsistent_location", field: field, message: "zone \(zone) is not in region \(home.rawValue)")
                }
                return parsed
            }
        }
        return AgentRegistration(
            logicalAgentId: logical,
            instanceId: try check.parsed(instanceId, "instance_id", as: InstanceID.self, what: "instance id"),
            instanceType: type ?? pool?.instanceType,
            az: az ?? pool?.az,
            amiId: try check.identifier(amiId, "ami_id", maxLength: 64),
            mode: try check.oneOf(mode, "mode", InstanceMode.self),
            poolId: pool,
            agentVersion: try check.text(agentVersion, "agent_version", maxLength: 32),
            hostname: try check.text(hostname, "hostname", maxLength: 255),
            privateIp: try check.ipAddress(privateIp, "private_ip"),
            publicIp: try check.ipAddress(publicIp, "public_ip"),
            usableZones: usable)
    }
}

/// `POST /api/agents/{id}/heartbeat` (seed 004, pattern 1)
public struct HeartbeatRequest: Decodable, Sendable {
    public var status: String?
    public var instanceId: String?
    public var mode: String?
    public var poolId: String?
    public var agentVersion: String?
    public var observedAt: Date?

    /// A heartbeat that says when it was observed gets an id derived from that time, so the
    /// sender's retry is the same fact; one without a time is "now" on arrival.
    public func validated(_ check: FieldChecker, clientId: UUID, agentId: UUID) throws -> HeartbeatReceived {
        let observed = try check.timestamp(observedAt, "observed_at")
        return HeartbeatReceived(
            heartbeatId: observed.map { UUID.nameBased(in: agentId, "heartbeat@\(Timestamp.format($0))") } ?? UUID(),
            clientId: clientId,
            agentId: agentId,
            status: try check.required(check.oneOf(status, "status", ReportedAgentStatus.self), "status"),
            instanceId: try check.parsed(instanceId, "instance_id", as: InstanceID.self, what: "instance id"),
            mode: try check.oneOf(mode, "mode", InstanceMode.self),
            poolId: try check.parsed(poolId, "pool_id", as: PoolID.self, what: "pool id"),
            agentVersion: try check.text(agentVersion, "agent_version", maxLength: 32),
            observedAt: observed ?? check.now,
            receivedAt: check.now)
    }
}

/// `POST /api/agents/{id}/pricing-report` (seed 004, pattern 2)
public struct PricingReportRequest: Decodable, Sendable {
    public struct Pool: Decodable, Sendable {
        public var id: String?
        public var price: Double?
    }

    /// Set by agents that spool and replay reports, so a replay is recognised as the same report.
    public var reportId: String?
    public var instanceId: String?
    public var pools: [Pool]?
    public var onDemandPrice: Double?
    public var observedAt: Date?

    public func validated(_ check: FieldChecker, clientId: UUID, agentId: UUID) throws -> PricingReport {
        let pools = try check.required(pools, "pools")
        guard !pools.isEmpty else {
            throw ValidationError(code: "invalid_value", field: "pools", message: "pools must list at least one pool")
        }
        guard pools.count <= check.limits.maxPoolsPerReport else {
            throw ValidationError(
                code: "too_many_items", field: "pools",
                message: "pools lists more than \(check.limits.maxPoolsPerReport) pools")
        }
        var seen = Set<PoolID>()
        var prices: [PoolPrice] = []
        prices.reserveCapacity(pools.count)
        for (i, pool) in pools.enumerated() {
            let id = try check.required(check.parsed(pool.id, "pools[\(i)].id", as: PoolID.self, what: "pool id"), "pools[\(i)].id")
            let price = try check.required(check.price(pool.price, "pools[\(i)].price"), "pools[\(i)].price")
            guard seen.insert(id).inserted else {
                throw ValidationError(code: "duplicate_pool", field: "pools[\(i)].id", message: "pool \(id) is listed twice")
            }
            prices.append(PoolPrice(poolId: id, price: price))
        }
        return PricingReport(
            reportId: try check.uuid(reportId, "report_id") ?? UUID(),
            clientId: clientId,
            agentId: agentId,
            instanceId: try check.parsed(instanceId, "instance_id", as: InstanceID.self, what: "instance id"),
            pools: prices,
            onDemandPrice: try check.price(onDemandPrice, "on_demand_price"),
            observedAt: try check.timestamp(observedAt, "observed_at") ?? check.now,
            receivedAt: check.now)
    }
}

/// `POST /api/pricing/submit` (seed 000, step 7)
public struct PricingSubmitRequest: Decodable, Sendable {
    public var submissionId: String?
    public var sourceInstanceId: String?
    public var sourceAgentId: String?
    public var sourceType: String?
    public var poolId: String?
    public var instanceType: String?
    public var region: String?
    public var az: String?
    public var spotPrice: Double?
    /// Seed 000 spells it `ondemand_price`; `on_demand_price` is SpotGuard's one name.
    public var ondemandPrice: Double?
    public var onDemandPrice: Double?
    public var observedAt: Date?
    public var submittedAt: Date?
    public var clientId: String?

    public func validated(_ check: FieldChecker, clientId tokenClient: UUID) throws -> PricingSubmission {
        let pool = try check.required(check.parsed(poolId, "pool_id", as: PoolID.self, what: "pool id"), "pool_id")
        try Consistency.check(
            region: try check.parsed(region, "region", as: Region.self, what: "region"),
            az: try check.parsed(az, "az", as: AvailabilityZone.self, what: "availability zone"),
            pool: pool,
            instanceType: try check.parsed(instanceType, "instance_type", as: InstanceType.self, what: "instance type"))
        if let claimed = try check.uuid(clientId, "client_id"), claimed != tokenClient {
            throw ValidationError(
                code: "client_mismatch", field: "client_id",
                message: "client_id does not match the client of the bearer token")
        }
        let source = try check.required(check.oneOf(sourceType, "source_type", PriceSourceType.self), "source_type")
        guard source != .interpolated else {
            throw ValidationError(
                code: "invalid_enum", field: "source_type",
                message: "source_type 'interpolated' is reserved for prices SpotGuard computes")
        }
        if ondemandPrice != nil, onDemandPrice != nil {
            throw ValidationError(
                code: "ambiguous_field", field: "on_demand_price",
                message: "send on_demand_price or ondemand_price, not both")
        }
        return PricingSubmission(
            submissionId: try check.required(check.uuid(submissionId, "submission_id"), "submission_id"),
            clientId: tokenClient,
            sourceAgentId: try check.required(check.uuid(sourceAgentId, "source_agent_id"), "source_agent_id"),
            sourceInstanceId: try check.parsed(sourceInstanceId, "source_instance_id", as: InstanceID.self, what: "instance id"),
            sourceType: source,
            poolId: pool,
            spotPrice: try check.required(check.price(spotPrice, "spot_price"), "spot_price"),
            onDemandPrice: try check.price(onDemandPrice ?? ondemandPrice, ondemandPrice != nil ? "ondemand_price" : "on_demand_price"),
            observedAt: try check.required(check.timestamp(observedAt, "observed_at"), "observed_at"),
            submittedAt: try check.timestamp(submittedAt, "submitted_at") ?? check.now,
            receivedAt: check.now)
    }
}

public enum Consistency {
    /// Region, zone, pool and type given side by side must name the same place.
    public static func check(region: Region?, az: AvailabilityZone?, pool: PoolID?, instanceType: InstanceType?, at prefix: String = "") throws {
        if let region, let az, az.region != region {
            throw ValidationError(code: "inconsistent_location", field: prefix + "az", message: "az \(az.rawValue) is not in region \(region.rawValue)")
        }
        if let pool, let az, pool.az != az {
            throw ValidationError(code: "inconsistent_location", field: prefix + "pool_id", message: "pool \(pool) is not in az \(az.rawValue)")
        }
        if let pool, let region, pool.region != region {
            throw ValidationError(code: "inconsistent_location", field: prefix + "pool_id", message: "pool \(pool) is not in region \(region.rawValue)")
        }
        if let pool, let instanceType, pool.instanceType != instanceType {
            throw ValidationError(
                code: "inconsistent_instance_type", field: prefix + "pool_id",
                message: "pool \(pool) is not of instance type \(instanceType.rawValue)")
        }
    }
}

/// `POST /api/agents/{id}/switch-report` (seed 004, switches step 9): what an agent did after
/// a switch command (or on its own).
public struct SwitchReportRequest: Decodable, Sendable {
    public struct Instance: Decodable, Sendable {
        public var instanceId: String?
        public var instanceType: String?
        public var az: String?
        public var mode: String?
        public var poolId: String?
        public var amiId: String?
    }

    public struct Timing: Decodable, Sendable {
        public var initiatedAt: Date?
        public var amiCreatedAt: Date?
        public var instanceLaunchedAt: Date?
        public var instanceReadyAt: Date?
        public var oldTerminatedAt: Date?
    }

    public struct Pricing: Decodable, Sendable {
        public var onDemand: Double?
        public var oldSpot: Double?
        public var newSpot: Double?
    }

    public var reportId: String?
    public var commandId: String?
    public var oldInstance: Instance?
    public var newInstance: Instance?
    public var timing: Timing?
    public var pricing: Pricing?
    public var traffic: TrafficOutcome?

    public func validated(_ check: FieldChecker, clientId: UUID, agentId: UUID) throws -> SwitchReported {
        func side(_ i: Instance?, _ name: String) throws -> SwitchReported.Side {
            let i = try check.required(i, name)
            let pool = try check.parsed(i.poolId, "\(name).pool_id", as: PoolID.self, what: "pool id")
            let mode = try check.required(check.oneOf(i.mode, "\(name).mode", InstanceMode.self), "\(name).mode")
            if mode == .spot, pool == nil { throw ValidationError.missing("\(name).pool_id") }
            let type = try check.parsed(i.instanceType, "\(name).instance_type", as: InstanceType.self, what: "instance type")
            let az = try check.parsed(i.az, "\(name).az", as: AvailabilityZone.self, what: "availability zone")
            try Consistency.check(region: nil, az: az, pool: pool, instanceType: type)
            return SwitchReported.Side(
                instanceId: try check.required(
                    check.parsed(i.instanceId, "\(name).instance_id", as: InstanceID.self, what: "instance id"), "\(name).instance_id"),
                instanceType: type ?? pool?.instanceType, az: az ?? pool?.az, mode: mode, poolId: mode == .spot ? pool : nil,
                amiId: try check.identifier(i.amiId, "\(name).ami_id", maxLength: 64))
        }
        let old = try side(oldInstance, "old_instance")
        let new = try side(newInstance, "new_instance")
        guard old.instanceId != new.instanceId else {
            throw ValidationError(code: "invalid_value", field: "new_instance.instance_id", message: "the new instance must differ from the old one")
        }
        let t = try check.required(timing, "timing")
        let initiated = try check.required(check.timestamp(t.initiatedAt, "timing.initiated_at"), "timing.initiated_at")
        let times = [
            ("timing.ami_created_at", try check.timestamp(t.amiCreatedAt, "timing.ami_created_at")),
            ("timing.instance_launched_at", try check.timestamp(t.instanceLaunchedAt, "timing.instance_launched_at")),
            ("timing.instance_ready_at", try check.timestamp(t.instanceReadyAt, "timing.instance_ready_at")),
            ("timing.old_terminated_at", try check.timestamp(t.oldTerminatedAt, "timing.old_terminated_at")),
        ]
        for (field, time) in times where time.map({ $0 < initiated }) == true {
            throw ValidationError(code: "invalid_value", field: field, message: "\(field) is before timing.initiated_at")
        }
        return SwitchReported(
            // a switch from one instance to another happens once: a report without its own id
            // gets one derived from that pair, so a retried report is not a second switch
            reportId: try check.uuid(reportId, "report_id") ?? UUID.nameBased(in: agentId, "switch:\(old.instanceId.rawValue)>\(new.instanceId.rawValue)"),
            clientId: clientId, agentId: agentId,
            commandId: try check.uuid(commandId, "command_id"), old: old, new: new, initiatedAt: initiated,
            amiCreatedAt: times[0].1, instanceLaunchedAt: times[1].1, instanceReadyAt: times[2].1, oldTerminatedAt: times[3].1,
            onDemandPrice: try check.price(pricing?.onDemand, "pricing.on_demand"), oldSpotPrice: try check.price(pricing?.oldSpot, "pricing.old_spot"),
            newSpotPrice: try check.price(pricing?.newSpot, "pricing.new_spot"), receivedAt: check.now,
            traffic: try traffic.map { try $0.validated("traffic") })
    }
}
