import Foundation
import NotifierCore
import SpotModels
import Testing

@Suite struct NotifierCoreTests {
    let client = UUID()
    let agent = UUID()

    func body<P: Codable & Sendable>(_ type: String, _ payload: P) throws -> Data {
        try WireJSON.encoder().encode(Envelope(type: type, producer: "test", payload: payload))
    }

    @Test func failoverEventsBecomeOneNotificationEach() throws {
        let report = FailoverReport(
            clientId: client, agentId: agent, eventId: UUID(), replicaId: UUID(), oldInstanceId: "i-0aaaaaaaaaaaaaaa1",
            newInstanceId: "i-0bbbbbbbbbbbbbbb2", trigger: .failover, failoverTimeMs: 412, reason: nil)
        let completed = try #require(try NotificationDraft.of(routingKey: "failover.completed", body: body("failover.completed", report)))
        #expect(completed.severity == .warning)
        #expect(completed.clientId == client && completed.agentId == agent)
        #expect(completed.message.contains("i-0aaaaaaaaaaaaaaa1") && completed.message.contains("412 ms"))
        #expect(completed.collapseKey == nil, "each failover is its own notification")
        #expect(completed.details["failover_time_ms"] == "412")
        // the same failover's promotion is told by failover.completed already
        #expect(try NotificationDraft.of(routingKey: "replica.promoted", body: body("replica.promoted", report)) == nil)
        var manual = report
        manual.eventId = nil
        manual.trigger = .manual
        #expect(try NotificationDraft.of(routingKey: "replica.promoted", body: body("replica.promoted", manual))?.kind == "replica_promoted")
        let failed = try #require(try NotificationDraft.of(routingKey: "failover.failed", body: body("failover.failed", report)))
        #expect(failed.severity == .critical)
    }

    @Test func repeatedAlertsShareACollapseKey() throws {
        let alert = AgentAlert(kind: "agent_offline", clientId: client, agentId: agent, replicaId: nil, message: "silent 10 min", since: Date())
        let a = try #require(try NotificationDraft.of(routingKey: "agent.offline", body: body("agent.offline", alert)))
        let b = try #require(try NotificationDraft.of(routingKey: "agent.offline", body: body("agent.offline", alert)))
        #expect(a.collapseKey != nil && a.collapseKey == b.collapseKey)
        let other = AgentAlert(kind: "agent_offline", clientId: client, agentId: UUID(), replicaId: nil, message: "silent", since: nil)
        #expect(try NotificationDraft.of(routingKey: "agent.offline", body: body("agent.offline", other))?.collapseKey != a.collapseKey)
        let quality = QualityAlert(
            kind: .gapUnfilled, severity: "warning", clientId: nil, poolId: PoolID(rawValue: "m5.large.us-east-1a"),
            message: "gap", detectedAt: Date())
        let q = try #require(try NotificationDraft.of(routingKey: "quality.alert", body: body("quality.alert", quality)))
        #expect(q.clientId == nil && q.details["pool_id"] == "m5.large.us-east-1a" && q.collapseKey?.hasPrefix("quality:gap_unfilled") == true)
        #expect(try NotificationDraft.of(routingKey: "pricing.cleaned", body: Data("{}".utf8)) == nil)
    }

    @Test func malformedEventsAreErrorsNotNotifications() {
        #expect(throws: (any Error).self) { try NotificationDraft.of(routingKey: "failover.completed", body: Data("{\"id\": 1}".utf8)) }
    }

    @Test(arguments: [
        ([String](), "failover.completed", true), (["failover.*"], "failover.failed", true), (["failover.*"], "agent.offline", false),
        (["agent.offline"], "agent.offline", true), (["*"], "switch.reported", true), (["failover.completed"], "failover.failed", false),
    ])
    func eventFilters(patterns: [String], event: String, matches: Bool) {
        #expect(EventFilter.matches(patterns, event) == matches)
    }

    @Test func filterSyntax() {
        #expect(EventFilter.isValid("failover.*") && EventFilter.isValid("agent.offline") && EventFilter.isValid("*"))
        #expect(!EventFilter.isValid("failover.*.x") && !EventFilter.isValid("") && !EventFilter.isValid("Failover") && !EventFilter.isValid("a b"))
    }

    @Test func signaturesVerifyAndRejectTampering() {
        let body = Data(#"{"event_type":"failover.completed"}"#.utf8)
        let now = Date(timeIntervalSince1970: 1_790_000_000)
        let header = WebhookSignature.sign(secret: "0123456789abcdef-secret", timestamp: 1_790_000_000, body: body)
        #expect(header.hasPrefix("t=1790000000,v1="))
        #expect(header.count == "t=1790000000,v1=".count + 64)
        #expect(WebhookSignature.verify(header: header, secret: "0123456789abcdef-secret", body: body, now: now))
        #expect(!WebhookSignature.verify(header: header, secret: "another-secret-of-16", body: body, now: now))
        #expect(!WebhookSignature.verify(header: header, secret: "0123456789abcdef-secret", body: Data("{}".utf8), now: now))
        // an old signature replayed later is refused
        #expect(!WebhookSignature.verify(header: header, secret: "0123456789abcdef-secret", body: body, now: now.addingTimeInterval(301)))
    }

    /// The same value `printf '1.x' | openssl dgst -sha256 -hmac key` gives: plain HMAC-SHA256
    /// over "<t>.<body>", so receivers verify with any library.
    @Test func signatureIsStandardHMACSHA256() {
        #expect(
            WebhookSignature.sign(secret: "key", timestamp: 1, body: Data("x".utf8))
                == "t=1,v1=fc4913c41a7bf793267e2a384f3261c9436ec2cd097bd745e7b0d99113f510ec")
    }

    @Test func backoffDoublesUpToTheCapThenGivesUp() {
        let b = Backoff(base: .seconds(2), cap: .seconds(10), maxAttempts: 5)
        #expect(b.delay(afterAttempt: 1, jitter: 0) == .seconds(2))
        #expect(b.delay(afterAttempt: 2, jitter: 0) == .seconds(4))
        #expect(b.delay(afterAttempt: 3, jitter: 0) == .seconds(8))
        #expect(b.delay(afterAttempt: 4, jitter: 0) == .seconds(10))
        #expect(b.delay(afterAttempt: 4, jitter: 0.1) == .seconds(11))
        #expect(b.delay(afterAttempt: 5, jitter: 0) == nil)
    }

    @Test func slackPayloadEscapesAndCarriesText() throws {
        let n = WebhookPayload.Notification(
            id: UUID(), clientId: client, agentId: agent, eventType: "failover.failed", kind: "failover_failed", severity: "critical",
            title: "Failover failed", message: "no replica <for> i-1 & more", occurrences: 1, details: ["old_instance_id": "i-1"], createdAt: Date())
        let slack = try JSONSerialization.jsonObject(with: try WebhookPayload.body(n, deliveryId: UUID(), format: .slack)) as! [String: Any]
        let text = try #require(slack["text"] as? String)
        #expect(text.contains(":rotating_light:") && text.contains("&lt;for&gt;") && text.contains("&amp;") && !text.contains("<for>"))
        #expect((slack["blocks"] as? [Any])?.count == 2)
        let json = try JSONSerialization.jsonObject(with: try WebhookPayload.body(n, deliveryId: UUID(), format: .json)) as! [String: Any]
        #expect(json["event_type"] as? String == "failover.failed" && json["message"] as? String == "no replica <for> i-1 & more")
        #expect(json["occurrences"] as? Int == 1 && json["delivery_id"] != nil)
    }
}
