import Foundation

// Validated facts that ingest publishes. Every field is already checked; consumers may trust
// them (and still check invariants that span rows).

public struct AgentRegistration: Codable, Sendable, Equatable {
    public var logicalAgentId: String
    public var instanceId: InstanceID?
    public var instanceType: InstanceType?
    public var az: AvailabilityZone?
    public var amiId: String?
    public var mode: InstanceMode?
    public var poolId: PoolID?
    public var agentVersion: String?
    public var hostname: String?
    public var privateIp: String?
    public var publicIp: String?
    /// The zones where the instance's VPC has a subnet; nil when not known.
    public var usableZones: [AvailabilityZone]?

    public var region: Region? { az?.region ?? poolId?.region }
}

/// `heartbeat.received`
public struct HeartbeatReceived: Codable, Sendable, Equatable {
    public var heartbeatId: UUID
    public var clientId: UUID
    public var agentId: UUID
    public var status: ReportedAgentStatus
    public var instanceId: InstanceID?
    public var mode: InstanceMode?
    public var poolId: PoolID?
    public var agentVersion: String?
    public var observedAt: Date
    public var receivedAt: Date

    /// The rules ingest applies, checked again by the consumer: times within the clock skew
    /// and the spool age of `received_at`, a bounded version text.
    public func validate(_ limits: IngestLimits = IngestLimits()) throws {
        let check = FieldChecker(limits: limits, now: receivedAt)
        _ = try check.timestamp(observedAt, "payload.observed_at")
        _ = try check.text(agentVersion, "payload.agent_version", maxLength: 32)
    }
}

public struct PoolPrice: Codable, Sendable, Equatable {
    public var poolId: PoolID
    public var price: Double

    public init(poolId: PoolID, price: Double) {
        self.poolId = poolId
        self.price = price
    }
}

/// One agent report of the current prices of several pools (seed 004, pattern 2).
public struct PricingReport: Codable, Sendable, Equatable {
    public var reportId: UUID
    public var clientId: UUID
    public var agentId: UUID
    public var instanceId: InstanceID?
    public var pools: [PoolPrice]
    public var onDemandPrice: Double?
    public var observedAt: Date
    public var receivedAt: Date

    public init(
        reportId: UUID, clientId: UUID, agentId: UUID, instanceId: InstanceID?, pools: [PoolPrice], onDemandPrice: Double?,
        observedAt: Date, receivedAt: Date
    ) {
        self.reportId = reportId
        self.clientId = clientId
        self.agentId = agentId
        self.instanceId = instanceId
        self.pools = pools
        self.onDemandPrice = onDemandPrice
        self.observedAt = observedAt
        self.receivedAt = receivedAt
    }
}

/// One price observation with its source (seed 000, step 7).
public struct PricingSubmission: Codable, Sendable, Equatable {
    public var submissionId: UUID
    public var clientId: UUID
    public var sourceAgentId: UUID
    public var sourceInstanceId: InstanceID?
    public var sourceType: PriceSourceType
    public var poolId: PoolID
    public var spotPrice: Double
    public var onDemandPrice: Double?
    public var observedAt: Date
    public var submittedAt: Date
    public var receivedAt: Date
}

/// A price fact for the SEF, in either form; the SEF consumes both from one queue in arrival
/// order.
///
/// Schema version 2 (published now) carries the plain object: a `PricingReport` under
/// `pricing.reported`, a `PricingSubmission` under `pricing.submitted`. Version 1 (still read,
/// deprecated) carried both under `pricing.reported` wrapped as `{form, report|submission}`.
public enum PricingReported: VersionedPayload, Equatable {
    case report(PricingReport)
    case submission(PricingSubmission)

    public static var readableVersions: ClosedRange<Int> { 1...2 }

    enum LegacyKeys: String, CodingKey { case form, report, submission }

    public init(from decoder: any Decoder, version: Int, routingKey: String) throws {
        switch (version, routingKey) {
        case (1, RoutingKey.pricingReported):
            let c = try decoder.container(keyedBy: LegacyKeys.self)
            switch try c.decode(String.self, forKey: .form) {
            case "report": self = .report(try c.decode(PricingReport.self, forKey: .report))
            case "submission": self = .submission(try c.decode(PricingSubmission.self, forKey: .submission))
            case let other:
                throw DecodingError.dataCorruptedError(forKey: .form, in: c, debugDescription: "unknown form '\(other)'")
            }
        case (2, RoutingKey.pricingReported): self = .report(try PricingReport(from: decoder))
        case (2, RoutingKey.pricingSubmitted): self = .submission(try PricingSubmission(from: decoder))
        default:
            throw ValidationError(
                code: "unsupported_schema_version", field: "schema_version",
                message: "\(routingKey) is not a price fact of schema_version \(version)")
        }
    }

    /// Read only through its envelope, whose version and routing key decide the shape.
    public init(from decoder: any Decoder) throws {
        throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "a price fact is read through its envelope"))
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .report(let r): try r.encode(to: encoder)
        case .submission(let s): try s.encode(to: encoder)
        }
    }

    public var routingKey: String {
        switch self {
        case .report: RoutingKey.pricingReported
        case .submission: RoutingKey.pricingSubmitted
        }
    }

    /// The rules ingest applies, checked again by the consumer: a message published on the bus
    /// by anyone else must meet them too. Prices finite, above 0 and at most `maxPrice`; pools
    /// listed once, at most `maxPoolsPerReport`; observation times no further ahead of
    /// `received_at` than the clock skew and no older than `maxAge` before it. Fields are named
    /// by their path in the envelope (`payload.pools[0].price`).
    public func validate(_ limits: IngestLimits = IngestLimits()) throws {
        let check = FieldChecker(limits: limits, now: receivedAt)
        switch self {
        case .report(let r):
            let at = "payload"
            guard (1...limits.maxPoolsPerReport).contains(r.pools.count) else {
                throw ValidationError(code: "invalid_value", field: "\(at).pools", message: "pools must list 1 to \(limits.maxPoolsPerReport) pools")
            }
            var seen = Set<PoolID>()
            for (i, pool) in r.pools.enumerated() {
                _ = try check.price(pool.price, "\(at).pools[\(i)].price")
                guard seen.insert(pool.poolId).inserted else {
                    throw ValidationError(code: "duplicate_pool", field: "\(at).pools[\(i)].pool_id", message: "pool \(pool.poolId) is listed twice")
                }
            }
            _ = try check.price(r.onDemandPrice, "\(at).on_demand_price")
            _ = try check.timestamp(r.observedAt, "\(at).observed_at")
        case .submission(let s):
            let at = "payload"
            _ = try check.price(s.spotPrice, "\(at).spot_price")
            _ = try check.price(s.onDemandPrice, "\(at).on_demand_price")
            _ = try check.timestamp(s.observedAt, "\(at).observed_at")
            _ = try check.timestamp(s.submittedAt, "\(at).submitted_at")
        }
    }

    public var clientId: UUID {
        switch self {
        case .report(let r): r.clientId
        case .submission(let s): s.clientId
        }
    }

    /// The agent that observed the prices.
    public var agentId: UUID {
        switch self {
        case .report(let r): r.agentId
        case .submission(let s): s.sourceAgentId
        }
    }

    /// When ingest accepted it.
    public var receivedAt: Date {
        switch self {
        case .report(let r): r.receivedAt
        case .submission(let s): s.receivedAt
        }
    }

    /// The id consumers deduplicate on.
    public var messageId: UUID {
        switch self {
        case .report(let r): r.reportId
        case .submission(let s): s.submissionId
        }
    }
}

/// One clean bucket as the SEF committed it.
public struct CleanPrice: Codable, Sendable, Equatable {
    public var poolId: PoolID
    public var timeBucket: Date
    public var spotPrice: Double
    public var onDemandPrice: Double?
    public var confidence: Double
    public var dataSource: DataSource
    public var sourceType: PriceSourceType
    public var interpolationMethod: InterpolationMethod?
    public var averagedDualSource: Bool

    public init(
        poolId: PoolID, timeBucket: Date, spotPrice: Double, onDemandPrice: Double?, confidence: Double, dataSource: DataSource,
        sourceType: PriceSourceType, interpolationMethod: InterpolationMethod?, averagedDualSource: Bool
    ) {
        self.poolId = poolId
        self.timeBucket = timeBucket
        self.spotPrice = spotPrice
        self.onDemandPrice = onDemandPrice
        self.confidence = confidence
        self.dataSource = dataSource
        self.sourceType = sourceType
        self.interpolationMethod = interpolationMethod
        self.averagedDualSource = averagedDualSource
    }
}

/// `pricing.cleaned`: the clean buckets one SEF transaction created or changed.
public struct PricingCleaned: Codable, Sendable, Equatable {
    public var prices: [CleanPrice]
    public init(prices: [CleanPrice]) { self.prices = prices }
}

/// `quality.alert`: something about the data an operator should look at.
public struct QualityAlert: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        /// More than the allowed share of an agent's pool prices were interpolated.
        case interpolatedShare = "interpolated_share"
        /// A gap that could not be filled (blackout, or no peer data).
        case gapUnfilled = "gap_unfilled"
        /// Many rejected submissions from one client in a short window.
        case rejectedBurst = "rejected_burst"
    }
    public var kind: Kind
    public var severity: String
    public var clientId: UUID?
    public var agentId: UUID?
    public var poolId: PoolID?
    public var message: String
    public var details: [String: String]
    public var detectedAt: Date

    public init(
        kind: Kind, severity: String, clientId: UUID? = nil, agentId: UUID? = nil, poolId: PoolID? = nil, message: String,
        details: [String: String] = [:], detectedAt: Date
    ) {
        self.kind = kind
        self.severity = severity
        self.clientId = clientId
        self.agentId = agentId
        self.poolId = poolId
        self.message = message
        self.details = details
        self.detectedAt = detectedAt
    }
}

/// `switch.reported`: an agent moved its workload from one instance to another.
public struct SwitchReported: Codable, Sendable, Equatable {
    public struct Side: Codable, Sendable, Equatable {
        public var instanceId: InstanceID
        public var instanceType: InstanceType?
        public var az: AvailabilityZone?
        public var mode: InstanceMode
        public var poolId: PoolID?
        public var amiId: String?
    }

    public var reportId: UUID
    public var clientId: UUID
    public var agentId: UUID
    public var commandId: UUID?
    public var old: Side
    public var new: Side
    public var initiatedAt: Date
    public var amiCreatedAt: Date?
    public var instanceLaunchedAt: Date?
    public var instanceReadyAt: Date?
    public var oldTerminatedAt: Date?
    public var onDemandPrice: Double?
    public var oldSpotPrice: Double?
    public var newSpotPrice: Double?
    public var receivedAt: Date
    /// What moving the traffic to the new instance did, when the agent has traffic to move.
    public var traffic: TrafficOutcome?
    /// The rules ingest applies, checked again by each consumer: each side's pool, zone and
    /// type name one place, a spot side names its pool, the two instances differ, prices are
    /// prices, and no step is before `initiated_at` or beyond the clock skew of `received_at`.
    public func validate(_ limits: IngestLimits = IngestLimits()) throws {
        let check = FieldChecker(limits: limits, now: receivedAt)
        for (side, name) in [(old, "payload.old"), (new, "payload.new")] {
            try Consistency.check(region: nil, az: side.az, pool: side.poolId, instanceType: side.instanceType, at: name + ".")
            if side.mode == .spot, side.poolId == nil { throw ValidationError.missing(name + ".pool_id") }
        }
        guard old.instanceId != new.instanceId else {
            throw ValidationError(code: "invalid_value", field: "payload.new.instance_id", message: "the new instance must differ from the old one")
        }
        _ = try check.price(onDemandPrice, "payload.on_demand_price")
        _ = try check.price(oldSpotPrice, "payload.old_spot_price")
        _ = try check.price(newSpotPrice, "payload.new_spot_price")
        _ = try check.timestamp(initiatedAt, "payload.initiated_at")
        let steps = [
            ("payload.ami_created_at", amiCreatedAt), ("payload.instance_launched_at", instanceLaunchedAt),
            ("payload.instance_ready_at", instanceReadyAt), ("payload.old_terminated_at", oldTerminatedAt),
        ]
        for (field, time) in steps {
            _ = try check.timestamp(time, field)
            if let time, time < initiatedAt { throw ValidationError(code: "invalid_value", field: field, message: "\(field) is before initiated_at") }
        }
    }
}
