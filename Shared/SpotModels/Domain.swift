import Foundation

/// An EC2 instance type such as `t3.medium` or `m5.2xlarge`.
public struct InstanceType: RawRepresentable, Hashable, Codable, Sendable {
    public let rawValue: String
    public init?(rawValue: String) {
        guard rawValue.utf8.count <= 32, Syntax.isInstanceType(rawValue.utf8) else { return nil }
        self.rawValue = rawValue
    }
}

/// An AWS region such as `us-east-1` or `us-gov-west-1`.
public struct Region: RawRepresentable, Hashable, Codable, Sendable {
    public let rawValue: String
    public init?(rawValue: String) {
        guard rawValue.utf8.count <= 32, Syntax.isRegion(rawValue.utf8) else { return nil }
        self.rawValue = rawValue
    }
}

/// An availability zone name: its region followed by one letter (`us-east-1a`).
public struct AvailabilityZone: RawRepresentable, Hashable, Codable, Sendable {
    public let rawValue: String
    public init?(rawValue: String) {
        let u = rawValue.utf8
        guard u.count <= 33, let last = u.last, Syntax.isLower(last), Syntax.isRegion(u.dropLast()) else { return nil }
        self.rawValue = rawValue
    }
    public var region: Region { Region(rawValue: String(rawValue.dropLast()))! }
}

/// A spot capacity pool: one instance type in one availability zone, written `type.az`
/// (`t3.medium.ap-south-1a`), as the seeds name pools.
public struct PoolID: RawRepresentable, Hashable, Codable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public let instanceType: InstanceType
    public let az: AvailabilityZone

    public init?(rawValue: String) {
        guard rawValue.utf8.count <= 80, let dot = rawValue.utf8.lastIndex(of: 46),  // "."
            let type = InstanceType(rawValue: String(rawValue[..<dot])),
            let az = AvailabilityZone(rawValue: String(rawValue[rawValue.index(after: dot)...]))
        else { return nil }
        self.rawValue = rawValue
        self.instanceType = type
        self.az = az
    }

    public init(instanceType: InstanceType, az: AvailabilityZone) {
        self.init(rawValue: "\(instanceType.rawValue).\(az.rawValue)")!
    }

    public var region: Region { az.region }
    public var description: String { rawValue }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        let s = try c.decode(String.self)
        guard let v = PoolID(rawValue: s) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "invalid pool id '\(s)'")
        }
        self = v
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
}

/// An EC2 instance id (`i-` and 8 or 17 hex digits).
public struct InstanceID: RawRepresentable, Hashable, Codable, Sendable {
    public let rawValue: String
    public init?(rawValue: String) {
        guard Syntax.isInstanceID(rawValue) else { return nil }
        self.rawValue = rawValue
    }
}

public enum InstanceMode: String, Codable, Sendable, CaseIterable {
    case spot
    case onDemand = "ondemand"
}

/// Who observed a price. The order is the SEF's source priority, highest first.
public enum PriceSourceType: String, Codable, Sendable, CaseIterable {
    case primary
    case replicaAutomatic = "replica-automatic"
    case replicaManual = "replica-manual"
    case interpolated
}

/// What an agent may say about itself in a heartbeat. `deleted` is set by operators only.
public enum ReportedAgentStatus: String, Codable, Sendable, CaseIterable {
    case online
    case switching
    case offline
}

/// An agent's status as the fleet records it (`agents.status`): what it reports, or `offline`
/// when it falls silent, or `deleted` by an operator.
public enum AgentStatus: String, Codable, Sendable, CaseIterable {
    case online
    case offline
    case switching
    case deleted
}

/// Where a command to an agent stands (`commands.status`): `pending` until an agent's
/// poll claims it, `delivered` while the agent works on it, then one of the final states.
public enum CommandStatus: String, Codable, Sendable, CaseIterable {
    case pending
    case delivered
    case succeeded
    case failed
    case expired
    case cancelled

    /// Whether the command is over (its agent's answer or its expiry came).
    public var isFinal: Bool { self != .pending && self != .delivered }
}

/// Why a workload moved to another instance (`switches.event_trigger`): the decision
/// engine's auto-switch, an operator's manual switch, an emergency launch, a rebalance
/// recommendation, or a failover to the replica.
public enum SwitchTrigger: String, Codable, Sendable, CaseIterable {
    case autoSwitch = "auto_switch"
    case manual
    case emergency
    case rebalance
    case failover
}

/// How the SEF filled a missing bucket.
public enum InterpolationMethod: String, Sendable, Hashable, CaseIterable, Codable {
    case linear
    case weightedAverage = "weighted-average"
    case crossPool = "cross-pool"
}

/// Whether a clean price was observed or computed.
public enum DataSource: String, Sendable, Hashable, Codable {
    case measured, interpolated
}

/// How far a switch's savings figure can be trusted: the weaker of its two prices' confidence
/// (seed 000's high / medium / low; unavailable without both prices).
public enum SavingsConfidence: String, Codable, Sendable {
    case high, medium, low, unavailable

    public init(old: Double?, new: Double?) {
        guard let old, let new else {
            self = .unavailable
            return
        }
        let c = min(old, new)
        self = c >= 0.95 ? .high : c >= 0.75 ? .medium : .low
    }
}

/// The body of every API error: `{"error": {"code", "message", "field"?}}`.
public struct ErrorBody: Encodable, Sendable {
    public struct Detail: Encodable, Sendable {
        public var code: String
        public var message: String
        public var field: String?
    }

    public var error: Detail

    public init(code: String, message: String, field: String? = nil) {
        error = Detail(code: code, message: message, field: field)
    }

    public var json: String { String(decoding: (try? WireJSON.encoder().encode(self)) ?? Data(), as: UTF8.self) }
}

extension UUID {
    /// The canonical text of an id on the wire and in the database: lowercase. Written by hand:
    /// `uuidString` formats through `sprintf` on Linux, and the SEF writes four ids per price point.
    public var lowercased: String { text(Self.lowerDigits) }

    /// `uuidString`'s text (uppercase), as `WireJSON.encoder()` writes an id, without `sprintf`.
    public var uppercased: String { text(Self.upperDigits) }

    private func text(_ digits: [UInt8]) -> String {
        var out = [UInt8](repeating: 0x2D, count: 36)  // -
        withUnsafeBytes(of: uuid) { bytes in
            var o = 0
            for (i, b) in bytes.enumerated() {
                if i == 4 || i == 6 || i == 8 || i == 10 { o += 1 }
                out[o] = digits[Int(b >> 4)]
                out[o + 1] = digits[Int(b & 0x0F)]
                o += 2
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static let lowerDigits = Array("0123456789abcdef".utf8)
    private static let upperDigits = Array("0123456789ABCDEF".utf8)
}
