import Foundation

/// Routing keys of `spotguard.events`: facts in the past tense.
public enum RoutingKey {
    public static let pricingReported = "pricing.reported"
    /// One price observation with its source (schema version 2; version 1 carried it on
    /// `pricing.reported` inside a `{form, submission}` wrapper).
    public static let pricingSubmitted = "pricing.submitted"
    public static let heartbeatReceived = "heartbeat.received"
    public static let interruptionRebalance = "interruption.rebalance"
    public static let interruptionTermination = "interruption.termination"
    public static let switchReported = "switch.reported"
    public static let pricingCleaned = "pricing.cleaned"
    public static let replicaPromoted = "replica.promoted"
    public static let failoverCompleted = "failover.completed"
    public static let failoverFailed = "failover.failed"
    public static let commandIssued = "command.issued"
    public static let agentOffline = "agent.offline"
    public static let qualityAlert = "quality.alert"
    public static let configChanged = "config.changed"
    public static let replicaAlert = "replica.alert"
    public static let accessChanged = "access.changed"
}

/// `access.changed`: who may send what changed (a token rotated, a client suspended or
/// reactivated, an agent deleted or its tokens revoked). Every process that caches tokens or agent ownership drops
/// what it holds of the client or agent named, so the change holds everywhere at once.
public struct AccessChanged: Codable, Sendable, Equatable {
    public enum Change: String, Codable, Sendable {
        case tokenRotated = "token_rotated"
        case clientSuspended = "client_suspended"
        case clientReactivated = "client_reactivated"
        case agentDeleted = "agent_deleted"
        case agentTokensRevoked = "agent_tokens_revoked"
        case clientTokenRevoked = "client_token_revoked"
    }

    public var change: Change
    public var clientId: UUID
    public var agentId: UUID?

    public init(change: Change, clientId: UUID, agentId: UUID? = nil) {
        self.change = change
        self.clientId = clientId
        self.agentId = agentId
    }
}

/// Every message on the bus: an id (consumers deduplicate on it), the routing key it was
/// published under (`type`), the schema version of its payload, and the payload
/// (docs/asyncapi.yaml). A payload whose shape changed across versions is a
/// `VersionedPayload`; every other payload is at version 1. A consumer refuses a version it
/// cannot read with `unsupported_schema_version` rather than guessing.
public struct Envelope<Payload: Codable & Sendable>: Codable, Sendable {
    /// The version this build publishes for `Payload`.
    public static var currentSchemaVersion: Int { (Payload.self as? any VersionedPayload.Type)?.readableVersions.upperBound ?? 1 }
    /// The versions this build reads for `Payload`.
    public static var readableVersions: ClosedRange<Int> { (Payload.self as? any VersionedPayload.Type)?.readableVersions ?? 1...1 }

    public var id: UUID
    public var type: String
    public var schemaVersion: Int
    public var occurredAt: Date
    public var producer: String
    public var payload: Payload

    public init(id: UUID = UUID(), type: String, occurredAt: Date = Date(), producer: String, payload: Payload) {
        self.id = id
        self.type = type
        self.schemaVersion = Self.currentSchemaVersion
        self.occurredAt = occurredAt
        self.producer = producer
        self.payload = payload
    }

    enum CodingKeys: String, CodingKey { case id, type, schemaVersion, occurredAt, producer, payload }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(UUID.self, forKey: .id)
        type = try c.decode(String.self, forKey: .type)
        schemaVersion = try c.decode(Int.self, forKey: .schemaVersion)
        occurredAt = try c.decode(Date.self, forKey: .occurredAt)
        producer = try c.decode(String.self, forKey: .producer)
        if let routingKey = decoder.userInfo[WireJSON.routingKeyInfo] as? String, type != routingKey {
            throw ValidationError(code: "type_mismatch", field: "type", message: "type '\(type.prefix(80))' is not the routing key '\(routingKey)'")
        }
        guard Self.readableVersions.contains(schemaVersion) else {
            let versions = Self.readableVersions.map(String.init).joined(separator: ", ")
            throw ValidationError(
                code: "unsupported_schema_version", field: "schema_version",
                message: "\(type) is read in schema_version \(versions), not \(schemaVersion)")
        }
        if let versioned = Payload.self as? any VersionedPayload.Type {
            let read = try versioned.init(from: try c.superDecoder(forKey: .payload), version: schemaVersion, routingKey: type)
            guard let payload = read as? Payload else { throw ValidationError(code: "invalid_value", field: "payload", message: "unexpected payload") }
            self.payload = payload
        } else {
            payload = try c.decode(Payload.self, forKey: .payload)
        }
    }
}

/// A payload whose wire shape changed across schema versions. A consumer still reads every
/// version in `readableVersions`; a publisher writes the last.
public protocol VersionedPayload: Codable, Sendable {
    static var readableVersions: ClosedRange<Int> { get }
    /// Reads the payload of an envelope of `version` published under `routingKey`.
    init(from decoder: any Decoder, version: Int, routingKey: String) throws
    /// The routing key this payload is published under (its shape may depend on it).
    var routingKey: String { get }
}

/// The one JSON dialect of SpotGuard, on the bus and on HTTP: snake_case keys (camelCase
/// properties converted), ISO 8601 dates with an explicit offset, fractional seconds kept.
public enum WireJSON {
    /// - Parameter pretty: indented, for files people read (a bench's results).
    public static func encoder(pretty: Bool = false) -> JSONEncoder {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .custom { date, encoder in
            var c = encoder.singleValueContainer()
            try c.encode(Timestamp.format(date))
        }
        e.keyEncodingStrategy = .convertToSnakeCase
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        if pretty { e.outputFormatting.insert(.prettyPrinted) }
        return e
    }

    /// Set in a decoder's `userInfo` to the routing key a message came with: an envelope whose
    /// `type` says otherwise is refused before its payload is read.
    static let routingKeyInfo = CodingUserInfoKey(rawValue: "spotguard.routing-key")!

    /// - Parameter routingKey: for a bus message, the routing key it came with.
    public static func decoder(routingKey: String? = nil) -> JSONDecoder {
        let d = JSONDecoder()
        if let routingKey { d.userInfo[routingKeyInfo] = routingKey }
        d.keyDecodingStrategy = .convertFromSnakeCase
        d.dateDecodingStrategy = .custom { decoder in
            let c = try decoder.singleValueContainer()
            let s = try c.decode(String.self)
            guard let date = Timestamp.parse(s) else {
                throw DecodingError.dataCorruptedError(
                    in: c, debugDescription: "expected an ISO 8601 timestamp with a UTC offset, e.g. 2025-11-23T10:00:00Z")
            }
            return date
        }
        return d
    }
}

public enum Timestamp {
    /// Parses RFC 3339 / ISO 8601 date-times that carry an offset (`Z` or `±hh:mm`), with or
    /// without fractional seconds. A time without an offset is ambiguous and rejected.
    public static func parse(_ s: String) -> Date? {
        guard s.count <= 40 else { return nil }
        if let d = try? Date(s, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) { return d }
        if let d = try? Date(s, strategy: Date.ISO8601FormatStyle()) { return d }
        return nil
    }

    public static func format(_ d: Date) -> String {
        d.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }
}
