import Foundation
import NotifierCore
import SpotBus
import SpotModels
import SpotRuntime
import SpotStore
import Testing

extension IntegrationTests {
    @Suite struct NotifierTests {
        /// Events on the bus become notifications; a repeated alert counts up one notification;
        /// a redelivered message changes nothing; webhooks are signed, retried after failures,
        /// dead-lettered after the last attempt, filtered by event type, and Slack-shaped on request.
        @Test func eventsBecomeNotificationsAndSignedRetriedWebhooks() async throws {
            let store = try await TestStack.store()
            let (client, _) = try await ClientDirectory(store: store, ttl: .seconds(1)).createClient(name: "Notifier test", email: nil)
            let agent = try await store.withConnection {
                try $0.query("INSERT INTO agents (client_id, logical_agent_id) VALUES ($1, 'notified') RETURNING id", [client])[0].decode(UUID.self, at: 0)
            }
            // the receiver: a real HTTP server in another process
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("webhooks-\(UUID())")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("Peers/webhook_receiver.py").path
            let log = dir.appendingPathComponent("requests.jsonl").path
            let receiver = try ChildProcess("python3", [script, log], output: dir.appendingPathComponent("port").path)
            // SIGKILL: a child of the test process inherits SIGTERM ignored (the service lifecycle's signal handling)
            defer { receiver.signal(SIGKILL) }
            let portFile = dir.appendingPathComponent("port")
            func readPort() -> String {
                ((try? String(contentsOf: portFile, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
            }
            _ = await TestStack.eventually { !readPort().isEmpty }
            let port = readPort()
            try #require(!port.isEmpty, "the webhook receiver did not start")
            let secret = "flaky-receiver-secret-0123456789"
            func subscribe(_ path: String, _ events: [String], format: String = "json") async throws -> UUID {
                try await store.withConnection {
                    try $0.query(
                        """
                        INSERT INTO webhook_subscriptions (client_id, url, secret, event_filter, payload_format)
                        VALUES ($1, $2, $3, $4::jsonb, $5) RETURNING id
                        """, [client, "http://127.0.0.1:\(port)\(path)", secret, JSONValue.array(events.map { .string($0) }).text, format]
                    )[0].decode(UUID.self, at: 0)
                }
            }
            let flaky = try await subscribe("/flaky/2", ["failover.*"])
            let down = try await subscribe("/down", ["failover.completed"])
            let slack = try await subscribe("/slack", ["agent.*"], format: "slack")
            let switchesOnly = try await subscribe("/switches", ["switch.reported"])

            let notifier = try await ServiceProcess.start(
                "spotguard-notifier", portVariable: "SPOTGUARD_NOTIFIER_PORT",
                environment: ["SPOTGUARD_WEBHOOK_BACKOFF_MS": "200", "SPOTGUARD_WEBHOOK_MAX_ATTEMPTS": "3", "SPOTGUARD_NOTIFIER_POLL_MS": "100"])
            try await ServiceProcess.with(notifier) { _ in
                let failover = Envelope(
                    type: RoutingKey.failoverCompleted, producer: "test",
                    payload: FailoverReport(
                        clientId: client, agentId: agent, eventId: UUID(), replicaId: UUID(), oldInstanceId: "i-0aaaaaaaaaaaaaaa1",
                        newInstanceId: "i-0bbbbbbbbbbbbbbb2", trigger: "termination-notice", failoverTimeMs: 640, reason: nil))
                try await withPublisher(topology: .standard) { publisher in
                    try await publisher.publish(failover)
                    try await publisher.publish(failover)  // a redelivery: same message id
                    for i in 0..<3 {
                        try await publisher.publish(Envelope(
                            type: RoutingKey.agentOffline, producer: "test",
                            payload: AgentAlert(kind: "agent_offline", clientId: client, agentId: agent, replicaId: nil, message: "silent \(i)", since: nil)))
                    }
                }
                struct Row: Sendable, Equatable {
                    var kind: String
                    var occurrences: Int
                    var status: String
                }
                func notifications() async throws -> [Row] {
                    try await store.withConnection {
                        try $0.query("SELECT kind, occurrences, delivery_status FROM notifications WHERE client_id = $1 ORDER BY kind", [client]).map {
                            Row(kind: try $0.decode(String.self, at: 0), occurrences: try $0.decode(Int.self, at: 1), status: try $0.decode(String.self, at: 2))
                        }
                    }
                }
                func deliveries() async throws -> [UUID: (String, Int)] {
                    var out: [UUID: (String, Int)] = [:]
                    for r in try await store.withConnection({
                        try $0.query(
                            "SELECT d.subscription_id, d.status, d.attempts FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id WHERE s.client_id = $1",
                            [client])
                    }) {
                        out[try r.decode(UUID.self, at: 0)] = (try r.decode(String.self, at: 1), try r.decode(Int.self, at: 2))
                    }
                    return out
                }
                let settled = try await TestStack.eventually(timeout: .seconds(60)) {
                    let d = try await deliveries()
                    let occurrences = try await notifications().map(\.occurrences).reduce(0, +)
                    return d[flaky]?.0 == "delivered" && d[down]?.0 == "dead" && d[slack]?.0 == "delivered" && occurrences == 4
                }
                let d = try await deliveries()
                #expect(settled, "deliveries did not settle: \(d)")
                #expect(try await notifications() == [Row(kind: "agent_offline", occurrences: 3, status: "delivered"), Row(kind: "failover_completed", occurrences: 1, status: "failed")])
                #expect(d[flaky]?.1 == 3, "two failures, then delivered on the third attempt")
                #expect(d[down]?.1 == 3, "dead after the last of three attempts")
                #expect(d[switchesOnly] == nil, "a subscription filtered to switches got a failover")
                let dead = try await store.withConnection {
                    try $0.query("SELECT count(*)::int FROM system_events WHERE client_id = $1 AND event_type = 'webhook.dead_lettered'", [client])[0].decode(Int.self, at: 0)
                }
                #expect(dead == 1)

                // what the receiver saw
                let requests = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").compactMap {
                    try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
                }
                let flakyRequests = requests.filter { $0["path"] as? String == "/flaky/2" }
                #expect(flakyRequests.count == 3)
                #expect(requests.filter { $0["path"] as? String == "/down" }.count == 3)
                #expect(requests.filter { $0["path"] as? String == "/switches" }.isEmpty)
                for request in flakyRequests {
                    let headers = Dictionary(uniqueKeysWithValues: ((request["headers"] as? [String: String]) ?? [:]).map { ($0.key.lowercased(), $0.value) })
                    let body = Data((request["body"] as? String ?? "").utf8)
                    let signature = try #require(headers["x-spotguard-signature"])
                    #expect(WebhookSignature.verify(header: signature, secret: secret, body: body, now: Date()), "a signature did not verify")
                    #expect(!WebhookSignature.verify(header: signature, secret: "not-the-secret-at-all", body: body, now: Date()))
                    #expect(headers["x-spotguard-event"] == "failover.completed")
                    let json = try JSONSerialization.jsonObject(with: body) as? [String: Any]
                    #expect(json?["event_type"] as? String == "failover.completed" && (json?["message"] as? String)?.contains("640 ms") == true)
                }
                // every attempt of one delivery carries the same delivery id, for receivers to de-duplicate
                #expect(Set(flakyRequests.compactMap { ($0["headers"] as? [String: String])?.first { $0.key.lowercased() == "x-spotguard-delivery" }?.value }).count == 1)
                let slackBodies = requests.filter { $0["path"] as? String == "/slack" }
                #expect(slackBodies.count == 1, "collapsed repeats send nothing new")
                let slackJSON = try JSONSerialization.jsonObject(with: Data((slackBodies.first?["body"] as? String ?? "{}").utf8)) as? [String: Any]
                #expect((slackJSON?["text"] as? String)?.contains("Agent offline") == true && slackJSON?["blocks"] != nil)
            }
        }
    }
}
