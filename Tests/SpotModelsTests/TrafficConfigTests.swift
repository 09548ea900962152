import Foundation
import Testing

@testable import SpotModels

@Suite struct TrafficConfigTests {
    static let group = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef"

    func refusal(_ body: String) -> ValidationError? {
        validationError { try WireJSON.decoder().decode(TrafficConfig.self, from: Data(body.utf8)).validate() }
    }

    /// What AWS would refuse during a failover is refused when it is configured, naming the field.
    @Test(arguments: [
        (#"{"elastic_ips": [{"allocation_id": "eip-123"}]}"#, "invalid_allocation_id", "elastic_ips[0].allocation_id"),
        (#"{"elastic_ips": [{"allocation_id": "eipalloc-0123456789ABCDEF0"}]}"#, "invalid_allocation_id", "elastic_ips[0].allocation_id"),
        (
            #"{"target_groups": [{"arn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/x/0123456789abcdef"}]}"#,
            "invalid_target_group_arn", "target_groups[0].arn"
        ),
        (#"{"target_groups": [{"arn": "\#(group)", "port": 70000}]}"#, "out_of_range", "target_groups[0].port"),
        (#"{"target_groups": [{"arn": "\#(group)"}, {"arn": "\#(group)"}]}"#, "duplicate", "target_groups"),
        (#"{"dns_records": [{"zone_id": "Z123", "zone_name": "example.com", "name": "app.example.org"}]}"#, "record_outside_zone", "dns_records[0].name"),
        (#"{"dns_records": [{"zone_id": "Z123", "zone_name": "example.com", "name": "appexample.com"}]}"#, "record_outside_zone", "dns_records[0].name"),
        (
            #"{"dns_records": [{"zone_id": "Z123", "zone_name": "example.com", "name": "app.example.com", "type": "CNAME"}]}"#,
            "unsupported_record_type", "dns_records[0].type"
        ),
        (#"{"dns_records": [{"zone_id": "Z123", "zone_name": "example.com", "name": "a..example.com"}]}"#, "invalid_name", "dns_records[0].name"),
        (#"{"dns_records": [{"zone_id": "zone 1", "zone_name": "example.com", "name": "app.example.com"}]}"#, "invalid_zone_id", "dns_records[0].zone_id"),
        (#"{"dns_records": [{"zone_id": "Z123", "zone_name": "example.com", "name": "app.example.com", "ttl": -1}]}"#, "out_of_range", "dns_records[0].ttl"),
        (#"{"dns_records": [{"zone_id": "Z123", "name": "app.example.com"}]}"#, "missing_field", "dns_records[0].zone_name"),
    ])
    func refusesWhatAWSWouldRefuse(body: String, code: String, field: String) {
        let e = refusal(body)
        #expect(e?.code == code && e?.field == field, "\(e.map(String.init(describing:)) ?? "accepted")")
    }

    @Test func acceptsAWholeConfigurationAndDefaults() throws {
        let body = #"""
            {"elastic_ips": [{"allocation_id": "eipalloc-0123456789abcdef0"}],
             "target_groups": [{"arn": "\#(Self.group)", "port": 8080}],
             "dns_records": [{"zone_id": "/hostedzone/Z0123456789ABCDEFGHIJ", "zone_name": "Example.com.", "name": "app.example.com"}]}
            """#
        #expect(refusal(body) == nil)
        let config = try WireJSON.decoder().decode(TrafficConfig.self, from: Data(body.utf8))
        #expect(config.dnsRecords[0].type == "A" && config.dnsRecords[0].ttl == 60 && config.dnsRecords[0].address == "private")
        #expect(try WireJSON.decoder().decode(TrafficConfig.self, from: Data("{}".utf8)).isEmpty)
    }

    @Test func refusesAReportedOutcomeThatIsNotOne() {
        let step = TrafficOutcome.Step(kind: "elastic_ip", target: "eipalloc-0123456789abcdef0", status: "done", attempts: 1, ms: 12, detail: nil)
        #expect(throws: Never.self) { try TrafficOutcome(steps: [step], movedMs: 12).validated("traffic") }
        var odd = step
        odd.kind = "reboot"
        #expect(throws: ValidationError.self) { try TrafficOutcome(steps: [odd], movedMs: 12).validated("traffic") }
        odd = step
        odd.attempts = 0
        #expect(throws: ValidationError.self) { try TrafficOutcome(steps: [odd], movedMs: 12).validated("traffic") }
    }

    /// The dashboard form's lines: parsed into the same configuration, round-tripped through
    /// the filled-in form, refused with the line named or by the same checks as the API.
    @Test func theFormsLinesAreTheSameConfiguration() throws {
        let config = try TrafficConfig(
            formElasticIps: "eipalloc-0123456789abcdef0\r\n\r\n  eipalloc-0fedcba9876543210  \r\n", targetGroups: "\(Self.group) 8080\n\(Self.group)",
            dnsRecords: "Z0123456789ABCDEFGHIJ example.com app.example.com\nZ0123456789ABCDEFGHIJ example.com www.example.com 30 public")
        #expect(config.elasticIps.map(\.allocationId) == ["eipalloc-0123456789abcdef0", "eipalloc-0fedcba9876543210"])
        #expect(config.targetGroups == [.init(arn: Self.group, port: 8080), .init(arn: Self.group, port: nil)])
        #expect(config.dnsRecords.map(\.ttl) == [60, 30] && config.dnsRecords.map(\.address) == ["private", "public"])
        let text = config.formText
        #expect(try TrafficConfig(formElasticIps: text.elasticIps, targetGroups: text.targetGroups, dnsRecords: text.dnsRecords) == config)
        #expect(try TrafficConfig(formElasticIps: "", targetGroups: " \n", dnsRecords: "").isEmpty)

        let wrongLine = validationError { try TrafficConfig(formElasticIps: "", targetGroups: "", dnsRecords: "\nZ1 example.com") }
        #expect(wrongLine?.code == "invalid_line" && wrongLine?.message.hasPrefix("line 2:") == true, "\(String(describing: wrongLine))")
        #expect(validationError { try TrafficConfig(formElasticIps: "", targetGroups: "\(Self.group) http", dnsRecords: "") }?.code == "invalid_value")
        let outside = validationError {
            try TrafficConfig(formElasticIps: "", targetGroups: "", dnsRecords: "Z0123456789ABCDEFGHIJ example.com app.example.org")
        }
        #expect(outside?.code == "record_outside_zone")
        #expect(validationError { try TrafficConfig(formElasticIps: "eip-1", targetGroups: "", dnsRecords: "") }?.code == "invalid_allocation_id")
    }
}
