import Foundation

extension AWSCaller {
    /// The same credentials and transport for another service.
    public func sibling(service: String, region: String, endpoint: URL) -> AWSCaller {
        var other = AWSCaller(service: service, region: region, endpoint: endpoint, credentials: credentials, transport: transport)
        other.maxAttempts = maxAttempts
        other.backoffBase = backoffBase
        other.backoffCap = backoffCap
        other.clock = clock
        return other
    }
}

extension XMLNode {
    /// The `member` children of a Query-protocol list (ELBv2 answers lists this way).
    public func members(_ name: String) -> [XMLNode] { self[name]?.children.filter { $0.name == "member" } ?? [] }
}

extension EC2Client {
    /// Moves an Elastic IP to an instance; `allowReassociation` takes it from the one holding it.
    public func associateAddress(allocationId: String, instanceId: String, allowReassociation: Bool = true) async throws -> String? {
        try await call(
            "AssociateAddress", [("AllocationId", allocationId), ("InstanceId", instanceId), ("AllowReassociation", String(allowReassociation))]
        ).value("associationId")
    }

    /// An ELBv2 client with this client's credentials (`AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2` overrides the endpoint).
    public func elbv2(_ env: [String: String] = ProcessInfo.processInfo.environment) -> ELBv2Client {
        ELBv2Client(
            aws: aws.sibling(
                service: "elasticloadbalancing", region: region,
                endpoint: AWSCaller.endpoint("ELASTIC_LOAD_BALANCING_V2", env) ?? URL(string: "https://elasticloadbalancing.\(region).amazonaws.com/")!))
    }

    /// A Route 53 client with this client's credentials (`AWS_ENDPOINT_URL_ROUTE_53` overrides the endpoint).
    public func route53(_ env: [String: String] = ProcessInfo.processInfo.environment) -> Route53Client {
        // Route 53 is global: signed for us-east-1 whatever the instance's region
        Route53Client(
            aws: aws.sibling(
                service: "route53", region: "us-east-1", endpoint: AWSCaller.endpoint("ROUTE_53", env) ?? URL(string: "https://route53.amazonaws.com/")!))
    }
}

/// Elastic Load Balancing v2 (Query API, Version 2015-12-01).
public struct ELBv2Client: Sendable {
    public var aws: AWSCaller

    func call(_ action: String, _ parameters: [(String, String)]) async throws -> XMLNode {
        try await aws.query(action, version: "2015-12-01", parameters)
    }

    static func target(_ instanceId: String, port: Int?) -> [(String, String)] {
        [("Targets.member.1.Id", instanceId)] + (port.map { [("Targets.member.1.Port", String($0))] } ?? [])
    }

    /// Registering a registered target again is accepted: the call is idempotent.
    public func registerTarget(group: String, instanceId: String, port: Int?) async throws {
        _ = try await call("RegisterTargets", [("TargetGroupArn", group)] + Self.target(instanceId, port: port))
    }

    /// Deregistering an unregistered target is accepted too.
    public func deregisterTarget(group: String, instanceId: String, port: Int?) async throws {
        _ = try await call("DeregisterTargets", [("TargetGroupArn", group)] + Self.target(instanceId, port: port))
    }

    /// The group's `deregistration_delay.timeout_seconds` (AWS's default 300 when not told).
    public func deregistrationDelay(group: String) async throws -> Int {
        let attributes =
            try await call("DescribeTargetGroupAttributes", [("TargetGroupArn", group)])["DescribeTargetGroupAttributesResult"]?
            .members("Attributes") ?? []
        return attributes.first { $0.value("Key") == "deregistration_delay.timeout_seconds" }?.value("Value").flatMap { Int($0) } ?? 300
    }
}

/// Route 53 (REST, API version 2013-04-01).
public struct Route53Client: Sendable {
    public var aws: AWSCaller

    static func escaped(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    /// UPSERT of one A record (creates or replaces it); answers the change id.
    public func upsertA(zoneId: String, name: String, ttl: Int, address: String, comment: String) async throws -> String? {
        let zone = zoneId.hasPrefix("/hostedzone/") ? String(zoneId.dropFirst("/hostedzone/".count)) : zoneId
        let body = """
            <?xml version="1.0" encoding="UTF-8"?>
            <ChangeResourceRecordSetsRequest xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><ChangeBatch>\
            <Comment>\(Self.escaped(comment))</Comment><Changes><Change><Action>UPSERT</Action><ResourceRecordSet>\
            <Name>\(Self.escaped(name))</Name><Type>A</Type><TTL>\(ttl)</TTL>\
            <ResourceRecords><ResourceRecord><Value>\(Self.escaped(address))</Value></ResourceRecord></ResourceRecords>\
            </ResourceRecordSet></Change></Changes></ChangeBatch></ChangeResourceRecordSetsRequest>
            """
        let answer = try await aws.send(
            "ChangeResourceRecordSets", method: "POST", path: "2013-04-01/hostedzone/\(zone)/rrset/", contentType: "text/xml", body: Data(body.utf8))
        return answer.value("ChangeInfo", "Id")
    }
}
