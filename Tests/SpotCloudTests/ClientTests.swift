import Foundation
import SpotCloud
import Synchronization
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Answers requests from a script, recording what was asked.
final class ScriptedTransport: HTTPTransport {
    struct Seen: Sendable {
        var method: String
        var path: String
        var headers: [String: String]
        var body: String
    }

    let answers: Mutex<[(Int, [String: String], String)]>
    let seen = Mutex<[Seen]>([])

    init(_ answers: [(Int, String)]) { self.answers = Mutex(answers.map { ($0.0, [:], $0.1) }) }
    /// Answers with headers (names in lower case, as the transports give them).
    init(headed answers: [(Int, [String: String], String)]) { self.answers = Mutex(answers) }

    func send(_ request: URLRequest) async throws -> (status: Int, headers: [String: String], body: Data) {
        let headers = Dictionary((request.allHTTPHeaderFields ?? [:]).map { ($0.key.lowercased(), $0.value) }) { a, _ in a }
        seen.withLock {
            $0.append(
                Seen(
                    method: request.httpMethod ?? "GET", path: request.url?.path ?? "", headers: headers,
                    body: String(decoding: request.httpBody ?? Data(), as: UTF8.self)))
        }
        guard let next = answers.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) else { throw TransportFailure("connection refused") }
        return (next.0, next.1, Data(next.2.utf8))
    }

    var requests: [Seen] { seen.withLock { $0 } }
}

@Suite struct EC2ClientTests {
    func client(_ transport: ScriptedTransport) -> EC2Client {
        var c = EC2Client(
            region: "us-east-1", endpoint: URL(string: "http://127.0.0.1:1/")!,
            credentials: StaticCredentials(AWSCredentials(accessKeyId: "testing", secretAccessKey: "testing")), transport: transport)
        c.backoffBase = .milliseconds(1)
        c.backoffCap = .milliseconds(2)
        return c
    }

    static let throttled =
        #"<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>r1</RequestID></Response>"#
    static let zones =
        #"<DescribeAvailabilityZonesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><availabilityZoneInfo><item><zoneName>us-east-1a</zoneName><zoneId>use1-az6</zoneId><zoneState>available</zoneState><regionName>us-east-1</regionName></item></availabilityZoneInfo></DescribeAvailabilityZonesResponse>"#

    @Test func signsFormEncodedPostsAndRetriesThrottling() async throws {
        let transport = ScriptedTransport([(503, Self.throttled), (400, Self.throttled), (200, Self.zones)])
        let zones = try await client(transport).describeAvailabilityZones()
        #expect(zones.map { [$0.name, $0.id, $0.state, $0.region] } == [["us-east-1a", "use1-az6", "available", "us-east-1"]])
        let requests = transport.requests
        #expect(requests.count == 3)
        #expect(requests[0].method == "POST" && requests[0].body == "Action=DescribeAvailabilityZones&Version=2016-11-15")
        #expect(requests[0].headers["content-type"] == "application/x-www-form-urlencoded; charset=utf-8")
        #expect(requests[0].headers["authorization"]?.hasPrefix("AWS4-HMAC-SHA256 Credential=testing/") == true)
        #expect(requests[0].headers["authorization"]?.contains("/us-east-1/ec2/aws4_request, SignedHeaders=content-type;host;x-amz-date, ") == true)
    }

    @Test func givesUpWithTheLastErrorAndMapsRefusals() async throws {
        let busy = ScriptedTransport(Array(repeating: (400, Self.throttled), count: 4))
        await #expect(throws: AWSError.throttled(code: "RequestLimitExceeded", attempts: 4)) { try await client(busy).describeAvailabilityZones() }
        // moto answers features it lacks with an HTML 500: a server error, retried, never parsed as data
        let html = ScriptedTransport(Array(repeating: (500, "<!doctype html><title>500 Internal Server Error</title>"), count: 4))
        do {
            _ = try await client(html).describeInstances()
            Issue.record("an HTML 500 must fail")
        } catch let AWSError.server(status, _, attempts) {
            #expect(status == 500 && attempts == 4)
        }
        let missing = ScriptedTransport([
            (
                400,
                #"<Response><Errors><Error><Code>InvalidInstanceID.NotFound</Code><Message>The instance ID 'i-1' does not exist</Message></Error></Errors><RequestID>req-9</RequestID></Response>"#
            )
        ])
        await #expect(
            throws: AWSError.refused(status: 400, code: "InvalidInstanceID.NotFound", message: "The instance ID 'i-1' does not exist", requestId: "req-9")
        ) {
            try await client(missing).terminateInstances(ids: ["i-1"])
        }
        #expect(missing.requests.count == 1, "a refusal is not retried")
    }

    @Test func followsNextTokens() async throws {
        func page(_ price: String, _ token: String?) -> (Int, String) {
            (
                200,
                """
                <DescribeSpotPriceHistoryResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15"><spotPriceHistorySet><item>\
                <availabilityZone>us-east-1a</availabilityZone><instanceType>m5.large</instanceType><productDescription>Linux/UNIX</productDescription>\
                <spotPrice>\(price)</spotPrice><timestamp>2024-01-01T00:00:00.000Z</timestamp></item></spotPriceHistorySet>\
                \(token.map { "<nextToken>\($0)</nextToken>" } ?? "<nextToken/>")</DescribeSpotPriceHistoryResponse>
                """
            )
        }
        let transport = ScriptedTransport([page("0.0312", "t1"), page("0.0313", "t2"), page("0.0314", nil)])
        let prices = try await client(transport).describeSpotPriceHistory(instanceTypes: ["m5.large"])
        #expect(prices.map(\.price) == [0.0312, 0.0313, 0.0314])
        #expect(transport.requests.map { $0.body.contains("NextToken=t1") } == [false, true, false])
        #expect(transport.requests[0].body.contains("InstanceType.1=m5.large&ProductDescription.1=Linux%2FUNIX"))
    }
}

@Suite struct IMDSClientTests {
    @Test func tokensAreFetchedOnceAndRenewedAfterA401() async throws {
        let transport = ScriptedTransport([
            (200, "token-a"), (200, "i-0123456789abcdef0"), (200, "m5.large"),
            (401, ""), (200, "token-b"), (200, #"{"action": "terminate", "time": "2026-11-23T01:44:06Z"}"#),
            (404, "<title>404 - Not Found</title>"),
        ])
        let imds = IMDSClient(endpoint: URL(string: "http://127.0.0.1:1")!, tokenTTL: 60, transport: transport)
        #expect(try await imds.instanceId() == "i-0123456789abcdef0")
        #expect(try await imds.instanceType() == "m5.large")
        let action = try await imds.spotInstanceAction()
        #expect(action?.action == "terminate" && action?.time == Date(timeIntervalSince1970: 1_795_398_246))
        #expect(try await imds.rebalanceRecommendation() == nil, "404 until a notice is given")
        let r = transport.requests
        #expect(r.map(\.method) == ["PUT", "GET", "GET", "GET", "PUT", "GET", "GET"])
        #expect(r[0].path == "/latest/api/token" && r[0].headers["x-aws-ec2-metadata-token-ttl-seconds"] == "60")
        #expect(r[1].headers["x-aws-ec2-metadata-token"] == "token-a" && r[5].headers["x-aws-ec2-metadata-token"] == "token-b")
    }
}
