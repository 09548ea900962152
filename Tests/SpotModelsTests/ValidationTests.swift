import Foundation
import Testing

@testable import SpotModels

private let now = Date(timeIntervalSince1970: 1_763_892_000)  // 2025-11-23T10:00:00Z
private let check = FieldChecker(limits: IngestLimits(), now: now)
private let client = UUID()
private let agent = UUID()

private func decode<T: Decodable>(_ type: T.Type, _ json: String) throws -> T {
    try WireJSON.decoder().decode(T.self, from: Data(json.utf8))
}

/// The validation error `body` throws (a decoding error as the API reports it), nil when none.
func validationError(_ body: () throws -> Void) -> ValidationError? {
    do {
        try body()
        return nil
    } catch let e as ValidationError {
        return e
    } catch let e as DecodingError {
        return ValidationError(decoding: e)
    } catch {
        Issue.record("unexpected error \(error)")
        return nil
    }
}

@Suite struct PoolIDTests {
    @Test(arguments: [
        ("t3.medium.ap-south-1a", "t3.medium", "ap-south-1a", "ap-south-1"),
        ("m5.2xlarge.us-east-1f", "m5.2xlarge", "us-east-1f", "us-east-1"),
        ("u-6tb1.metal.us-gov-west-1b", "u-6tb1.metal", "us-gov-west-1b", "us-gov-west-1"),
    ])
    func parsesTypeZoneAndRegion(raw: String, type: String, az: String, region: String) throws {
        let pool = try #require(PoolID(rawValue: raw))
        #expect(pool.instanceType.rawValue == type)
        #expect(pool.az.rawValue == az)
        #expect(pool.region.rawValue == region)
    }

    @Test(arguments: [
        "", "t3.medium", "t3.medium.us-east-1", "T3.medium.us-east-1a", "t3.medium.us-east-1A", "t3..us-east-1a", "t3.medium.useast1a",
        "t3.medium.us-east-1a; DROP TABLE agents",
    ])
    func rejectsMalformed(raw: String) {
        #expect(PoolID(rawValue: raw) == nil)
    }
}

@Suite struct IdentifierSyntaxTests {
    /// The hand-written id text is Foundation's, lowercased, for every byte value.
    @Test func uuidTextIsFoundationsLowercased() {
        for _ in 0..<1_000 {
            let id = UUID()
            #expect(id.lowercased == id.uuidString.lowercased())
        }
        let edge = UUID(uuid: (0, 0x0F, 0xF0, 0xFF, 0x10, 0x9A, 0xAB, 0xCD, 0xEF, 1, 2, 3, 4, 5, 6, 0xFF))
        #expect(edge.lowercased == "000ff0ff-109a-abcd-ef01-0203040506ff")
    }

    @Test func instanceIds() {
        #expect(InstanceID(rawValue: "i-0123abcd") != nil)
        #expect(InstanceID(rawValue: "i-0123456789abcdef0") != nil)
        #expect(InstanceID(rawValue: "i-0123abc") == nil)  // 7 digits
        #expect(InstanceID(rawValue: "i-0123456789abcdef01") == nil)  // 18 digits
        #expect(InstanceID(rawValue: "i-0123ABCD") == nil)
        #expect(InstanceID(rawValue: "0123456789") == nil)
    }

    @Test func regions() {
        #expect(Region(rawValue: "us-east-1") != nil)
        #expect(Region(rawValue: "us-gov-west-1") != nil)
        #expect(Region(rawValue: "ap-southeast-12") != nil)
        #expect(Region(rawValue: "us-gov-west") == nil)
        #expect(Region(rawValue: "usa-east-1") == nil)
        #expect(Region(rawValue: "us-xx-west-1") == nil)
        #expect(Region(rawValue: "us-east-123") == nil)
    }

    @Test func addresses() {
        let check = FieldChecker(limits: IngestLimits(), now: now)
        #expect(throws: Never.self) { try check.ipAddress("255.0.10.1", "ip") }
        #expect(throws: Never.self) { try check.ipAddress("2001:db8::1", "ip") }
        #expect(throws: ValidationError.self) { try check.ipAddress("256.0.0.1", "ip") }
        #expect(throws: ValidationError.self) { try check.ipAddress("1.2.3", "ip") }
        #expect(throws: ValidationError.self) { try check.ipAddress("localhost", "ip") }
    }
}

@Suite struct TimestampTests {
    @Test func acceptsOffsetsAndFractions() throws {
        #expect(Timestamp.parse("2025-11-23T10:00:00Z") == now)
        #expect(Timestamp.parse("2025-11-23T11:00:00+01:00") == now)
        let frac = try #require(Timestamp.parse("2025-11-23T10:00:00.250Z"))
        #expect(abs(frac.timeIntervalSince(now) - 0.25) < 0.0001)
    }

    @Test func rejectsTimesWithoutOffset() {
        // seed 000's agent sends datetime.now().isoformat(): ambiguous, so refused
        #expect(Timestamp.parse("2025-11-23T10:00:00.123456") == nil)
        #expect(Timestamp.parse("yesterday") == nil)
    }
}

@Suite struct PricingReportValidationTests {
    @Test func seedExampleIsAccepted() throws {
        let body = try decode(
            PricingReportRequest.self,
            """
            {"pools": [{"id": "t3.medium.ap-south-1a", "price": 0.0312}, {"id": "t3.medium.ap-south-1b", "price": 0.0298},
                       {"id": "t3.medium.ap-south-1c", "price": 0.0324}], "on_demand_price": 0.0416}
            """)
        let report = try body.validated(check, clientId: client, agentId: agent)
        #expect(report.pools.map(\.price) == [0.0312, 0.0298, 0.0324])
        #expect(report.onDemandPrice == 0.0416)
        #expect(report.observedAt == now)
        #expect(report.clientId == client && report.agentId == agent)
    }

    @Test func replayKeepsTheReportId() throws {
        let id = UUID()
        let body = try decode(PricingReportRequest.self, #"{"report_id": "\#(id)", "pools": [{"id": "c5.large.us-east-1a", "price": 0.04}]}"#)
        #expect(try body.validated(check, clientId: client, agentId: agent).reportId == id)
    }

    @Test(
        arguments: [
            (#"{"pools": [{"id": "t3.medium.us-east-1a", "price": -0.03}]}"#, "invalid_price", "pools[0].price"),
            (#"{"pools": [{"id": "t3.medium.us-east-1a", "price": 0}]}"#, "invalid_price", "pools[0].price"),
            // stored to six decimals, it would be 0, which the tables refuse: accepted, then lost
            (#"{"pools": [{"id": "t3.medium.us-east-1a", "price": 4e-7}]}"#, "invalid_price", "pools[0].price"),
            (#"{"pools": [{"id": "t3.medium.us-east-1a", "price": 1e308}]}"#, "invalid_price", "pools[0].price"),
            (#"{"pools": [{"id": "t3.medium.us-east-1a", "price": 0.03}], "on_demand_price": -1}"#, "invalid_price", "on_demand_price"),
            (#"{"pools": [{"id": "t3.medium.us-east-1a"}]}"#, "missing_field", "pools[0].price"),
            (#"{"pools": [{"id": "t3.medium.us-east-1a", "price": "cheap"}]}"#, "invalid_type", "pools[0].price"),
            (#"{"pools": [{"id": "nowhere", "price": 0.03}]}"#, "invalid_pool_id", "pools[0].id"),
            (#"{"pools": []}"#, "invalid_value", "pools"),
            (#"{}"#, "missing_field", "pools"),
            (#"{"pools": [{"id": "t3.medium.us-east-1a", "price": 0.03}, {"id": "t3.medium.us-east-1a", "price": 0.04}]}"#, "duplicate_pool", "pools[1].id"),
            (#"{"pools": [{"id": "t3.medium.us-east-1a", "price": 0.03}], "observed_at": "2035-01-01T00:00:00Z"}"#, "timestamp_in_future", "observed_at"),
            (#"{"pools": [{"id": "t3.medium.us-east-1a", "price": 0.03}], "observed_at": "2015-01-01T00:00:00Z"}"#, "timestamp_too_old", "observed_at"),
            (#"{"pools": [{"id": "t3.medium.us-east-1a", "price": 0.03}], "observed_at": "2025-11-23T10:00:00"}"#, "invalid_value", "observed_at"),
            (#"{"pools": [{"id": "t3.medium.us-east-1a", "price": 0.03}], "report_id": "not-a-uuid"}"#, "invalid_uuid", "report_id"),
            (#"{"pools": [{"id": "t3.medium.us-east-1a", "price": 0.03}], "instance_id": "vm-1"}"#, "invalid_instance_id", "instance_id"),
            (#"[1, 2]"#, "invalid_type", "body"),
            (#"{"pools": [{"id": "t3.medium.us-east-1a", "price": 0.03}"#, "invalid_json", nil),
        ] as [(String, String, String?)])
    func rejectsWithCodeAndField(json: String, code: String, field: String?) {
        let error = validationError {
            _ = try decode(PricingReportRequest.self, json).validated(check, clientId: client, agentId: agent)
        }
        #expect(error?.code == code)
        #expect(error?.field == field)
    }

    @Test func boundsThePoolCount() {
        let pools = (0..<501).map { #"{"id": "t3.medium.us-east-1a", "price": 0.0\#($0 % 9 + 1)}"# }.joined(separator: ",")
        let error = validationError {
            _ = try decode(PricingReportRequest.self, #"{"pools": [\#(pools)]}"#).validated(check, clientId: client, agentId: agent)
        }
        #expect(error?.code == "too_many_items")
    }

    @Test func acceptsTheMaximumPriceButNotAbove() throws {
        let ok = try decode(PricingReportRequest.self, #"{"pools": [{"id": "t3.medium.us-east-1a", "price": 1000}]}"#)
        #expect(throws: Never.self) { try ok.validated(check, clientId: client, agentId: agent) }
        let over = try decode(PricingReportRequest.self, #"{"pools": [{"id": "t3.medium.us-east-1a", "price": 1000.01}]}"#)
        #expect(throws: ValidationError.self) { try over.validated(check, clientId: client, agentId: agent) }
    }
}

@Suite struct PricingSubmissionValidationTests {
    static let valid = """
        {"submission_id": "6f1c1c0e-8f4e-4d0b-9f5e-3a2b1c0d9e8f", "source_instance_id": "i-0123456789abcdef0",
         "source_agent_id": "\(UUID())", "source_type": "replica-manual", "pool_id": "t3.medium.us-east-1a",
         "instance_type": "t3.medium", "region": "us-east-1", "az": "us-east-1a", "spot_price": 0.0456,
         "ondemand_price": 0.0416, "observed_at": "2025-11-23T09:59:00Z", "submitted_at": "2025-11-23T09:59:01Z"}
        """

    @Test func seedFormIsAccepted() throws {
        let s = try decode(PricingSubmitRequest.self, Self.valid).validated(check, clientId: client)
        #expect(s.sourceType == .replicaManual)
        #expect(s.spotPrice == 0.0456)
        #expect(s.onDemandPrice == 0.0416)
        #expect(s.poolId.rawValue == "t3.medium.us-east-1a")
        #expect(s.clientId == client)
    }

    @Test(arguments: [
        ("\"source_type\": \"replica-manual\"", "\"source_type\": \"interpolated\"", "invalid_enum", "source_type"),
        ("\"source_type\": \"replica-manual\"", "\"source_type\": \"secondary\"", "invalid_enum", "source_type"),
        ("\"az\": \"us-east-1a\"", "\"az\": \"us-east-1b\"", "inconsistent_location", "pool_id"),
        ("\"region\": \"us-east-1\"", "\"region\": \"us-west-2\"", "inconsistent_location", "az"),
        ("\"instance_type\": \"t3.medium\"", "\"instance_type\": \"t3.large\"", "inconsistent_instance_type", "pool_id"),
        ("\"submission_id\": \"6f1c1c0e-8f4e-4d0b-9f5e-3a2b1c0d9e8f\", ", "", "missing_field", "submission_id"),
        ("\"spot_price\": 0.0456", "\"spot_price\": -0.0456", "invalid_price", "spot_price"),
        ("\"ondemand_price\": 0.0416", "\"ondemand_price\": 0.0416, \"on_demand_price\": 0.05", "ambiguous_field", "on_demand_price"),
    ])
    func rejectsWithCodeAndField(from: String, to: String, code: String, field: String) {
        let json = Self.valid.replacingOccurrences(of: from, with: to)
        #expect(json != Self.valid)
        let error = validationError { _ = try decode(PricingSubmitRequest.self, json).validated(check, clientId: client) }
        #expect(error?.code == code)
        #expect(error?.field == field)
    }

    @Test func refusesAnotherClientsId() {
        let json = Self.valid.replacingOccurrences(of: "\"spot_price\"", with: "\"client_id\": \"\(UUID())\", \"spot_price\"")
        let error = validationError { _ = try decode(PricingSubmitRequest.self, json).validated(check, clientId: client) }
        #expect(error?.code == "client_mismatch")
    }
}

@Suite struct HeartbeatAndRegisterValidationTests {
    @Test func heartbeatSeedPattern() throws {
        let hb = try decode(
            HeartbeatRequest.self, #"{"status": "online", "instance_id": "i-123456789abcdef01", "mode": "spot", "pool_id": "t3.medium.ap-south-1a"}"#
        )
        .validated(check, clientId: client, agentId: agent)
        #expect(hb.status == .online)
        #expect(hb.mode == .spot)
        #expect(hb.poolId?.az.rawValue == "ap-south-1a")
    }

    @Test(
        arguments: [
            (#"{}"#, "missing_field", "status"),
            (#"{"status": "deleted"}"#, "invalid_enum", "status"),
            (#"{"status": "online", "mode": "reserved"}"#, "invalid_enum", "mode"),
            (#"{"status": 1}"#, "invalid_type", "status"),
        ] as [(String, String, String)])
    func heartbeatRejects(json: String, code: String, field: String) {
        let error = validationError { _ = try decode(HeartbeatRequest.self, json).validated(check, clientId: client, agentId: agent) }
        #expect(error?.code == code)
        #expect(error?.field == field)
    }

    @Test func registerDerivesLocationFromThePool() throws {
        let r = try decode(RegisterRequest.self, #"{"logical_agent_id": "web-1", "pool_id": "t3.medium.eu-west-3c", "private_ip": "10.0.0.12"}"#)
            .validated(check)
        #expect(r.instanceType?.rawValue == "t3.medium")
        #expect(r.az?.rawValue == "eu-west-3c")
        #expect(r.region?.rawValue == "eu-west-3")
        #expect(r.usableZones == nil, "not reported: unknown, every zone a candidate")
        let zoned = try decode(RegisterRequest.self, #"{"logical_agent_id": "web-1", "az": "eu-west-3c", "usable_zones": ["eu-west-3a", "eu-west-3c"]}"#)
            .validated(check)
        #expect(zoned.usableZones?.map(\.rawValue) == ["eu-west-3a", "eu-west-3c"])
    }

    @Test(
        arguments: [
            (#"{}"#, "missing_field", "logical_agent_id"),
            (#"{"logical_agent_id": ""}"#, "invalid_value", "logical_agent_id"),
            (#"{"logical_agent_id": "web 1"}"#, "invalid_value", "logical_agent_id"),
            (#"{"logical_agent_id": "web-1", "private_ip": "999.1.1.1"}"#, "invalid_ip", "private_ip"),
            (#"{"logical_agent_id": "web-1", "hostname": "a\u0000b"}"#, "invalid_value", "hostname"),
            (#"{"logical_agent_id": "web-1", "region": "us-east-1", "az": "eu-west-1a"}"#, "inconsistent_location", "az"),
            (
                #"{"logical_agent_id": "web-1", "az": "us-east-1a", "usable_zones": ["us-east-1a", "us-east-9"]}"#, "invalid_availability_zone",
                "usable_zones[1]"
            ),
            (#"{"logical_agent_id": "web-1", "az": "us-east-1a", "usable_zones": ["eu-west-1a"]}"#, "inconsistent_location", "usable_zones[0]"),
        ] as [(String, String, String)])
    func registerRejects(json: String, code: String, field: String) {
        let error = validationError { _ = try decode(RegisterRequest.self, json).validated(check) }
        #expect(error?.code == code)
        #expect(error?.field == field)
    }

    @Test func longStringsAreBounded() {
        let long = String(repeating: "a", count: 256)
        let error = validationError { _ = try decode(RegisterRequest.self, #"{"logical_agent_id": "\#(long)"}"#).validated(check) }
        #expect(error?.code == "string_too_long")
    }
}

@Suite struct EnvelopeTests {
    let report = PricingReport(
        reportId: UUID(), clientId: client, agentId: agent, instanceId: InstanceID(rawValue: "i-0123456789abcdef0"),
        pools: [PoolPrice(poolId: PoolID(rawValue: "t3.medium.us-east-1a")!, price: 0.0312)], onDemandPrice: 0.0416,
        observedAt: now, receivedAt: now.addingTimeInterval(0.123))

    func decode<P>(_ json: String, as type: P.Type = PricingReported.self) throws -> Envelope<P> {
        try WireJSON.decoder().decode(Envelope<P>.self, from: Data(json.utf8))
    }

    func refusal(_ body: () throws -> Void) -> ValidationError? {
        do {
            try body()
            return nil
        } catch {
            return error as? ValidationError
        }
    }

    /// Version 2: the report itself is the payload, under `pricing.reported`.
    @Test func pricingReportedIsPublishedPlainInVersion2() throws {
        let envelope = Envelope(id: report.reportId, type: PricingReported.report(report).routingKey, producer: "test", payload: PricingReported.report(report))
        let data = try WireJSON.encoder().encode(envelope)
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains(#""schema_version":2"#))
        #expect(!text.contains(#""form""#))
        #expect(text.contains(#""payload":{"agent_id""#))
        #expect(text.contains(#""on_demand_price":0.0416"#))
        let back = try WireJSON.decoder().decode(Envelope<PricingReported>.self, from: data)
        #expect(back.payload == .report(report))
        #expect(back.id == report.reportId)
        #expect(back.payload.messageId == report.reportId)
    }

    /// Version 1 (the `{form, report}` wrapper) is still read, so publishers can move at their pace.
    @Test func version1WrapperIsStillRead() throws {
        let plain = String(decoding: try WireJSON.encoder().encode(report), as: UTF8.self)
        let head = #""id": "\#(report.reportId)", "type": "pricing.reported", "occurred_at": "2025-11-23T10:00:00Z", "producer": "x""#
        let v1 = try decode(#"{\#(head), "schema_version": 1, "payload": {"form": "report", "report": \#(plain)}}"#)
        #expect(v1.payload == .report(report))
        let submission =
            #"{"submission_id": "\#(UUID())", "client_id": "\#(client)", "source_agent_id": "\#(agent)", "source_type": "primary", "pool_id": "t3.medium.us-east-1a", "spot_price": 0.03, "observed_at": "2025-11-23T10:00:00Z", "submitted_at": "2025-11-23T10:00:00Z", "received_at": "2025-11-23T10:00:01Z"}"#
        let v1s = try decode(#"{\#(head), "schema_version": 1, "payload": {"form": "submission", "submission": \#(submission)}}"#)
        #expect(v1s.payload.routingKey == RoutingKey.pricingSubmitted)
        let v2s = try decode(
            #"{\#(head.replacingOccurrences(of: "pricing.reported", with: "pricing.submitted")), "schema_version": 2, "payload": \#(submission)}"#)
        #expect(v2s.payload == v1s.payload)
        // v2 under pricing.reported is a report: the wrapper is not guessed at
        #expect(throws: DecodingError.self) { _ = try decode(#"{\#(head), "schema_version": 2, "payload": {"form": "report", "report": \#(plain)}}"#) }
    }

    @Test func unknownVersionsAreRefusedWithTheReason() throws {
        let plain = String(decoding: try WireJSON.encoder().encode(report), as: UTF8.self)
        let head = #""id": "\#(report.reportId)", "type": "pricing.reported", "occurred_at": "2025-11-23T10:00:00Z", "producer": "x""#
        let v3 = refusal { _ = try decode(#"{\#(head), "schema_version": 3, "payload": \#(plain)}"#) }
        #expect(v3?.code == "unsupported_schema_version" && v3?.field == "schema_version")
        #expect(v3?.message.contains("1, 2") == true)
        // a payload that never changed is at version 1 only
        let beat =
            #"{"heartbeat_id": "\#(UUID())", "client_id": "\#(client)", "agent_id": "\#(agent)", "status": "online", "observed_at": "2025-11-23T10:00:00Z", "received_at": "2025-11-23T10:00:00Z"}"#
        let v2beat = refusal { _ = try decode(#"{\#(head), "schema_version": 2, "payload": \#(beat)}"#, as: HeartbeatReceived.self) }
        #expect(v2beat?.code == "unsupported_schema_version")
        let v1submitted = refusal {
            _ = try decode(#"{\#(head.replacingOccurrences(of: "pricing.reported", with: "pricing.submitted")), "schema_version": 1, "payload": \#(plain)}"#)
        }
        #expect(v1submitted?.code == "unsupported_schema_version")
    }

    @Test func unknownFormIsRefused() throws {
        let head = #""id": "\#(UUID())", "type": "pricing.reported", "occurred_at": "2025-11-23T10:00:00Z", "producer": "x""#
        #expect(throws: DecodingError.self) { _ = try decode(#"{\#(head), "schema_version": 1, "payload": {"form": "telepathy"}}"#) }
    }
}
