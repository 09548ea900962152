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
}

public struct PoolPrice: Codable, Sendable, Equatable {
    public var poolId: PoolID
    public var price: Double
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

/// `pricing.reported`: either form, so the SEF consumes one queue in arrival order.
public enum PricingReported: Codable, Sendable, Equatable {
    case report(PricingReport)
    case submission(PricingSubmission)

    enum CodingKeys: String, CodingKey { case form, report, submission }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        switch try c.decode(String.self, forKey: .form) {
        case "report": self = .report(try c.decode(PricingReport.self, forKey: .report))
        case "submission": self = .submission(try c.decode(PricingSubmission.self, forKey: .submission))
        case let other:
            throw DecodingError.dataCorruptedError(forKey: .form, in: c, debugDescription: "unknown form '\(other)'")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .report(let r):
            try c.encode("report", forKey: .form)
            try c.encode(r, forKey: .report)
        case .submission(let s):
            try c.encode("submission", forKey: .form)
            try c.encode(s, forKey: .submission)
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
