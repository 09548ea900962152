import Foundation
import IMDSMock
import SpotCloud
import Synchronization
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

@Suite struct IMDSMockTests {
    static let identity = IMDSMock.Identity(
        instanceId: "i-0abc123def4567890", instanceType: "m5.large", availabilityZone: "us-east-1b", availabilityZoneId: "use1-az1")

    func raw(_ url: URL, _ method: String, _ path: String, headers: [String: String] = [:]) async throws -> (Int, String) {
        var request = URLRequest(url: url.appendingPathComponent(path))
        request.httpMethod = method
        for (k, v) in headers { request.setValue(v, forHTTPHeaderField: k) }
        let (status, _, body) = try await HTTPClientTransport(timeout: 5).send(request)
        return (status, String(decoding: body, as: UTF8.self))
    }

    /// The IMDSv2 rules of amazon-ec2-metadata-mock: TTL bounds, 401 without a live token, an
    /// expired token forgotten.
    @Test func tokenRules() async throws {
        let clock = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
        let mock = IMDSMock(identity: Self.identity, now: { clock.withLock { $0 } })
        try await mock.serving { url in
            for bad in [nil, "0", "21601", "six"] {
                let (status, _) = try await raw(url, "PUT", "/latest/api/token", headers: bad.map { ["X-aws-ec2-metadata-token-ttl-seconds": $0] } ?? [:])
                #expect(status == 400, "TTL \(bad ?? "missing")")
            }
            let (status, token) = try await raw(url, "PUT", "/latest/api/token", headers: ["X-aws-ec2-metadata-token-ttl-seconds": "2"])
            #expect(status == 200 && token.count == 44)
            #expect(try await raw(url, "GET", "/latest/meta-data/instance-id").0 == 401)
            #expect(try await raw(url, "GET", "/latest/meta-data/instance-id", headers: ["X-aws-ec2-metadata-token": "forged"]).0 == 401)
            #expect(try await raw(url, "GET", "/latest/meta-data/instance-id/", headers: ["X-aws-ec2-metadata-token": token]) == (200, "i-0abc123def4567890"))
            clock.withLock { $0 += 2 }
            #expect(try await raw(url, "GET", "/latest/meta-data/instance-id", headers: ["X-aws-ec2-metadata-token": token]).0 == 401, "expired at 2 s")
            #expect(try await raw(url, "GET", "/latest/api/token").0 == 200, "a non-PUT on the token path answers 200 empty")
        }
    }

    /// The agent's IMDS client against the mock: identity, 404 until armed, the notice time
    /// fixed once armed, a renewed token after the old one expired.
    @Test func clientReadsNoticesFixedOnceArmed() async throws {
        let clock = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
        var identity = Self.identity
        identity.role = ("spotguard-agent", "ASIATEST", "secret", "session", Date(timeIntervalSince1970: 1_800_003_600))
        let mock = IMDSMock(identity: identity, now: { clock.withLock { $0 } })
        try await mock.serving { url in
            let imds = IMDSClient(endpoint: url, tokenTTL: 10)
            #expect(try await imds.instanceId() == "i-0abc123def4567890")
            #expect(try await imds.region() == "us-east-1")
            #expect(try await imds.lifeCycle() == "spot")
            #expect(try await imds.spotInstanceAction() == nil)
            #expect(try await imds.rebalanceRecommendation() == nil)

            let rebalance = mock.armRebalance()
            let notice = mock.armInterruption()
            #expect(notice == Date(timeIntervalSince1970: 1_800_000_120))
            clock.withLock { $0 += 30 }  // the token (TTL 10 s) expired meanwhile: the client renews it
            #expect(try await imds.rebalanceRecommendation() == rebalance)
            let first = try await imds.spotInstanceAction()
            clock.withLock { $0 += 5 }
            #expect(mock.armInterruption() == notice, "arming again keeps the first notice")
            #expect(try await imds.spotInstanceAction() == first)
            #expect(first?.action == "terminate" && first?.time == notice)

            let credentials = try await imds.instanceProfileCredentials()
            #expect(
                credentials
                    == AWSCredentials(
                        accessKeyId: "ASIATEST", secretAccessKey: "secret", sessionToken: "session", expiration: Date(timeIntervalSince1970: 1_800_003_600)))
            let chain = DefaultCredentials(env: [:], imds: imds)
            #expect(try await chain.credentials().accessKeyId == "ASIATEST")
            let fromEnv = DefaultCredentials(env: ["AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "s"], imds: imds)
            #expect(try await fromEnv.credentials().accessKeyId == "AKIDENV", "environment variables come first")
        }
    }
}
