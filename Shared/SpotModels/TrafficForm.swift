import Foundation

/// The dashboard's traffic form: one entry per line, as an operator copies them from the AWS
/// console. Elastic IPs are allocation ids; target groups `ARN [PORT]`; DNS records
/// `ZONE_ID ZONE_NAME NAME [TTL [private|public]]` (type A, naming the new primary's private
/// address unless `public`). Blank lines
/// are skipped. The result is checked by `validate` like the API's JSON.
extension TrafficConfig {
    public init(formElasticIps: String, targetGroups: String, dnsRecords: String) throws {
        func lines(_ text: String) -> [(number: Int, fields: [String])] {
            // a browser sends a textarea's lines as CRLF, one Character in Swift: split on any newline
            text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated().compactMap { i, line in
                let fields = line.split(whereSeparator: \.isWhitespace).map(String.init)
                return fields.isEmpty ? nil : (i + 1, fields)
            }
        }
        func number(_ text: String, _ field: String, line: Int) throws -> Int {
            guard let n = Int(text) else { throw ValidationError(code: "invalid_value", field: field, message: "line \(line): \(text) is not a whole number") }
            return n
        }
        var config = TrafficConfig()
        for (line, fields) in lines(formElasticIps) {
            guard fields.count == 1 else {
                throw ValidationError(code: "invalid_line", field: "elastic_ips", message: "line \(line): one allocation id per line (eipalloc-…)")
            }
            config.elasticIps.append(ElasticIP(allocationId: fields[0]))
        }
        for (line, fields) in lines(targetGroups) {
            guard (1...2).contains(fields.count) else {
                throw ValidationError(code: "invalid_line", field: "target_groups", message: "line \(line): a target group ARN, then optionally a port")
            }
            config.targetGroups.append(TargetGroup(arn: fields[0], port: try fields.dropFirst().first.map { try number($0, "target_groups", line: line) }))
        }
        for (line, fields) in lines(dnsRecords) {
            guard (3...5).contains(fields.count) else {
                throw ValidationError(
                    code: "invalid_line", field: "dns_records",
                    message: "line \(line): zone id, zone name, record name, then optionally a TTL and private or public")
            }
            let ttl = try fields.dropFirst(3).first.map { try number($0, "dns_records", line: line) } ?? 60
            config.dnsRecords.append(
                DNSRecord(zoneId: fields[0], zoneName: fields[1], name: fields[2], ttl: ttl, address: fields.dropFirst(4).first ?? "private"))
        }
        try config.validate()
        self = config
    }

    /// The form's three texts for this configuration (what the form shows filled in).
    public var formText: (elasticIps: String, targetGroups: String, dnsRecords: String) {
        (
            elasticIps.map(\.allocationId).joined(separator: "\n"),
            targetGroups.map { $0.arn + ($0.port.map { " \($0)" } ?? "") }.joined(separator: "\n"),
            dnsRecords.map { "\($0.zoneId) \($0.zoneName) \($0.name) \($0.ttl) \($0.address)" }.joined(separator: "\n")
        )
    }
}
