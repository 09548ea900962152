import Foundation

/// Where a workload's traffic enters, per agent: what a promotion or switch moves to the new
/// primary before the old one is fenced. Stored by the replica coordinator, set through the
/// client API (`PUT /api/agents/{id}/traffic`) or sent by the agent at registration from its
/// configuration file; carried to the agent that moves it on `promote` and `switch` commands.
public struct TrafficConfig: Codable, Sendable, Equatable {
    /// Elastic IPs re-associated to the new primary (`AllowReassociation`).
    public var elasticIps: [ElasticIP]
    /// Target groups: the new primary registered, the old deregistered.
    public var targetGroups: [TargetGroup]
    /// Route 53 A records pointed (UPSERT) at the new primary's address.
    public var dnsRecords: [DNSRecord]

    public struct ElasticIP: Codable, Sendable, Equatable {
        public var allocationId: String
        public init(allocationId: String) { self.allocationId = allocationId }
    }

    public struct TargetGroup: Codable, Sendable, Equatable {
        public var arn: String
        /// The target's port; nil uses the target group's own.
        public var port: Int?
        public init(arn: String, port: Int?) {
            self.arn = arn
            self.port = port
        }
    }

    public struct DNSRecord: Codable, Sendable, Equatable {
        public var zoneId: String
        /// The hosted zone's domain (`example.com`): the record must lie inside it.
        public var zoneName: String
        public var name: String
        public var type: String
        public var ttl: Int
        /// `private` (default) or `public`: which of the new primary's addresses the record names.
        public var address: String

        public init(zoneId: String, zoneName: String, name: String, type: String = "A", ttl: Int = 60, address: String = "private") {
            self.zoneId = zoneId
            self.zoneName = zoneName
            self.name = name
            self.type = type
            self.ttl = ttl
            self.address = address
        }

        enum CodingKeys: String, CodingKey { case zoneId, zoneName, name, type, ttl, address }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            self.init(
                zoneId: try c.decode(String.self, forKey: .zoneId), zoneName: try c.decode(String.self, forKey: .zoneName),
                name: try c.decode(String.self, forKey: .name), type: try c.decodeIfPresent(String.self, forKey: .type) ?? "A",
                ttl: try c.decodeIfPresent(Int.self, forKey: .ttl) ?? 60, address: try c.decodeIfPresent(String.self, forKey: .address) ?? "private")
        }
    }

    public init(elasticIps: [ElasticIP] = [], targetGroups: [TargetGroup] = [], dnsRecords: [DNSRecord] = []) {
        self.elasticIps = elasticIps
        self.targetGroups = targetGroups
        self.dnsRecords = dnsRecords
    }

    enum CodingKeys: String, CodingKey { case elasticIps, targetGroups, dnsRecords }

    /// Missing lists are empty: `{}` is "no traffic to move".
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            elasticIps: try c.decodeIfPresent([ElasticIP].self, forKey: .elasticIps) ?? [],
            targetGroups: try c.decodeIfPresent([TargetGroup].self, forKey: .targetGroups) ?? [],
            dnsRecords: try c.decodeIfPresent([DNSRecord].self, forKey: .dnsRecords) ?? [])
    }

    public var isEmpty: Bool { elasticIps.isEmpty && targetGroups.isEmpty && dnsRecords.isEmpty }

    /// At most this many entries per kind: every one is a step of a failover inside the notice.
    public static let maxEntries = 10

    /// Refuses what AWS would refuse later, when it is too late: malformed ids, a port out of
    /// range, a record outside its zone, a type other than A, a TTL out of range, duplicates.
    public func validate() throws {
        func refuse(_ code: String, _ field: String, _ message: String) -> ValidationError {
            ValidationError(code: code, field: field, message: message)
        }
        for (kind, count) in [("elastic_ips", elasticIps.count), ("target_groups", targetGroups.count), ("dns_records", dnsRecords.count)]
        where count > Self.maxEntries {
            throw refuse("too_many", kind, "at most \(Self.maxEntries) \(kind.replacingOccurrences(of: "_", with: " "))")
        }
        for (i, eip) in elasticIps.enumerated() where !Self.matches(eip.allocationId, prefix: "eipalloc-") {
            throw refuse("invalid_allocation_id", "elastic_ips[\(i)].allocation_id", "allocation_id must look like eipalloc-0123456789abcdef0")
        }
        if Set(elasticIps.map(\.allocationId)).count != elasticIps.count {
            throw refuse("duplicate", "elastic_ips", "an allocation id is listed twice")
        }
        for (i, group) in targetGroups.enumerated() {
            guard Self.isTargetGroupArn(group.arn) else {
                throw refuse(
                    "invalid_target_group_arn", "target_groups[\(i)].arn",
                    "arn must look like arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/name/0123456789abcdef")
            }
            if let port = group.port, !(1...65535).contains(port) {
                throw refuse("out_of_range", "target_groups[\(i)].port", "port must be 1 to 65535")
            }
        }
        if Set(targetGroups.map { "\($0.arn) \($0.port ?? 0)" }).count != targetGroups.count {
            throw refuse("duplicate", "target_groups", "a target group and port are listed twice")
        }
        for (i, record) in dnsRecords.enumerated() {
            let field = "dns_records[\(i)]"
            guard record.zoneId.range(of: #"^(/hostedzone/)?[A-Z0-9]{1,32}$"#, options: .regularExpression) != nil else {
                throw refuse("invalid_zone_id", "\(field).zone_id", "zone_id must look like Z0123456789ABCDEFGHIJ")
            }
            let zone = Self.normalized(record.zoneName)
            let name = Self.normalized(record.name)
            guard Self.isDomainName(zone) else { throw refuse("invalid_zone_name", "\(field).zone_name", "zone_name must be a domain name") }
            guard Self.isDomainName(name) else { throw refuse("invalid_name", "\(field).name", "name must be a domain name") }
            guard name == zone || name.hasSuffix("." + zone) else {
                throw refuse("record_outside_zone", "\(field).name", "\(record.name) is not inside the zone \(record.zoneName)")
            }
            guard record.type == "A" else { throw refuse("unsupported_record_type", "\(field).type", "type must be A") }
            guard (0...172_800).contains(record.ttl) else { throw refuse("out_of_range", "\(field).ttl", "ttl must be 0 to 172800 seconds") }
            guard ["private", "public"].contains(record.address) else {
                throw refuse("invalid_value", "\(field).address", "address must be private or public")
            }
        }
        if Set(dnsRecords.map { "\(Self.normalized($0.zoneId)) \(Self.normalized($0.name))" }).count != dnsRecords.count {
            throw refuse("duplicate", "dns_records", "a record is listed twice")
        }
    }

    static func matches(_ id: String, prefix: String) -> Bool {
        id.hasPrefix(prefix) && id.count >= prefix.count + 8 && id.count <= prefix.count + 17
            && id.dropFirst(prefix.count).allSatisfy { $0.isHexDigit && !$0.isUppercase }
    }

    static func isTargetGroupArn(_ arn: String) -> Bool {
        arn.count <= 256
            && arn.range(
                of: #"^arn:aws[a-z-]*:elasticloadbalancing:[a-z]{2}(-[a-z]+)+-\d:\d{12}:targetgroup/[A-Za-z0-9-]{1,32}/[0-9a-f]{16}$"#,
                options: .regularExpression) != nil
    }

    /// Lower case, without the trailing dot.
    static func normalized(_ name: String) -> String {
        let lower = name.lowercased()
        return lower.hasSuffix(".") ? String(lower.dropLast()) : lower
    }

    static func isDomainName(_ name: String) -> Bool {
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        return name.count <= 253 && labels.count >= 2
            && labels.enumerated().allSatisfy { i, label in
                (1...63).contains(label.count) && !label.hasPrefix("-") && !label.hasSuffix("-")
                    && label.allSatisfy {
                        $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || ($0 == "_" && i == 0) || ($0 == "*" && i == 0 && label == "*"))
                    }
            }
    }
}

/// What moving the traffic did, step by step: recorded on the failover or switch, shown in the
/// dashboard and published in `failover.completed` / `switch.reported`.
public struct TrafficOutcome: Codable, Sendable, Equatable {
    public var steps: [Step]
    /// From the start of the first step to the end of the last.
    public var movedMs: Int
    public var moved: Bool { steps.allSatisfy { $0.status == "done" } }

    public struct Step: Codable, Sendable, Equatable {
        /// `elastic_ip`, `target_register`, `target_deregister` or `dns_record`.
        public var kind: String
        /// The allocation id, the target group ARN, or the record name.
        public var target: String
        /// `done` or `failed`.
        public var status: String
        public var attempts: Int
        public var ms: Int
        public var detail: String?

        public init(kind: String, target: String, status: String, attempts: Int, ms: Int, detail: String?) {
            self.kind = kind
            self.target = target
            self.status = status
            self.attempts = attempts
            self.ms = ms
            self.detail = detail
        }
    }

    public init(steps: [Step], movedMs: Int) {
        self.steps = steps
        self.movedMs = movedMs
    }

    static let kinds: Set<String> = ["elastic_ip", "target_register", "target_deregister", "dns_record"]

    /// An agent's report of it, checked like any other input (`field` names where it sits).
    public func validated(_ field: String) throws -> TrafficOutcome {
        guard steps.count <= 4 * TrafficConfig.maxEntries else {
            throw ValidationError(code: "too_many", field: "\(field).steps", message: "at most \(4 * TrafficConfig.maxEntries) steps")
        }
        guard (0...86_400_000).contains(movedMs) else {
            throw ValidationError(code: "out_of_range", field: "\(field).moved_ms", message: "moved_ms must be 0 to 86400000")
        }
        var steps = steps
        for (i, step) in steps.enumerated() {
            let at = "\(field).steps[\(i)]"
            guard Self.kinds.contains(step.kind) else {
                throw ValidationError(code: "invalid_value", field: "\(at).kind", message: "kind must be one of \(Self.kinds.sorted().joined(separator: ", "))")
            }
            guard ["done", "failed"].contains(step.status) else {
                throw ValidationError(code: "invalid_value", field: "\(at).status", message: "status must be done or failed")
            }
            guard (1...10_000).contains(step.attempts), (0...86_400_000).contains(step.ms), (1...256).contains(step.target.count) else {
                throw ValidationError(code: "out_of_range", field: at, message: "attempts 1–10000, ms 0–86400000, target 1–256 characters")
            }
            steps[i].detail = step.detail.map { String($0.prefix(500)) }
        }
        return TrafficOutcome(steps: steps, movedMs: movedMs)
    }
}
