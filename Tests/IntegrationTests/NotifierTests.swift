import Foundation
import NotifierCore
import SpotBus
import SpotFleet
import SpotModels
import SpotRuntime
import SpotStore
import Testing
import ToolSupport

@testable import NotifierApp

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
            let (receiver, port, log) = try await Self.receiver(in: dir)
            // SIGKILL: a child of the test process inherits SIGTERM ignored (the service lifecycle's signal handling)
            defer { receiver.signal(SIGKILL) }
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
                environment: [
                    "SPOTGUARD_WEBHOOK_BACKOFF_MS": "200", "SPOTGUARD_WEBHOOK_MAX_ATTEMPTS": "3", "SPOTGUARD_NOTIFIER_POLL_MS": "100",
                    // the receiver is on loopback, which webhooks may not reach unless allowed
                    "SPOTGUARD_WEBHOOK_ALLOW_NETWORKS": "127.0.0.1/32",
                ])
            try await ServiceProcess.with(notifier) { _ in
                let failover = Envelope(
                    type: RoutingKey.failoverCompleted, producer: "test",
                    payload: FailoverReport(
                        clientId: client, agentId: agent, eventId: UUID(), replicaId: UUID(), oldInstanceId: "i-0aaaaaaaaaaaaaaa1",
                        newInstanceId: "i-0bbbbbbbbbbbbbbb2", trigger: .failover, failoverTimeMs: 640, reason: nil))
                // a failover of an agent this database does not hold (another stack's bus)
                var stranger = failover
                stranger.id = UUID()
                stranger.payload.agentId = UUID()
                try await withPublisher(topology: .standard) { publisher in
                    try await publisher.publish(failover)
                    try await publisher.publish(failover)  // a redelivery: same message id
                    try await publisher.publish(stranger)
                    for i in 0..<3 {
                        try await publisher.publish(
                            Envelope(
                                type: RoutingKey.agentOffline, producer: "test",
                                payload: AgentAlert(kind: "agent_offline", clientId: client, agentId: agent, replicaId: nil, message: "silent \(i)", since: nil)
                            ))
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
                #expect(
                    try await notifications() == [
                        Row(kind: "agent_offline", occurrences: 3, status: "delivered"), Row(kind: "failover_completed", occurrences: 1, status: "failed"),
                    ])
                #expect(d[flaky]?.1 == 3, "two failures, then delivered on the third attempt")
                #expect(d[down]?.1 == 3, "dead after the last of three attempts")
                #expect(d[switchesOnly] == nil, "a subscription filtered to switches got a failover")
                let dead = try await store.withConnection {
                    try $0.query("SELECT count(*)::int FROM system_events WHERE client_id = $1 AND event_type = 'webhook.dead_lettered'", [client])[0].decode(
                        Int.self, at: 0)
                }
                #expect(dead == 1)
                // the stranger is dead-lettered at its first delivery, saying why
                var letter: DeadLetters.Letter?
                #expect(
                    await TestStack.eventually(timeout: .seconds(20)) {
                        letter = ((try? await DeadLetters.list(endpoint: try TestStack.amqp, queue: "spotguard.notifier", logger: TestStack.logger)) ?? [])
                            .first { $0.messageId?.lowercased() == stranger.id.uuidString.lowercased() }
                        return letter != nil
                    }, "the failover of an unknown agent was not dead-lettered")
                #expect(
                    letter?.attempts == 1 && letter?.reason?.hasPrefix("invalid_message: payload: unknown_reference") == true, "\(String(describing: letter))")

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
                #expect(
                    Set(flakyRequests.compactMap { ($0["headers"] as? [String: String])?.first { $0.key.lowercased() == "x-spotguard-delivery" }?.value }).count
                        == 1)
                let slackBodies = requests.filter { $0["path"] as? String == "/slack" }
                #expect(slackBodies.count == 1, "collapsed repeats send nothing new")
                let slackJSON = try JSONSerialization.jsonObject(with: Data((slackBodies.first?["body"] as? String ?? "{}").utf8)) as? [String: Any]
                #expect((slackJSON?["text"] as? String)?.contains("Agent offline") == true && slackJSON?["blocks"] != nil)
            }
        }

        /// A receiver started in another process on `address`; returns it, its port and its log.
        static func receiver(in dir: URL, address: String = "127.0.0.1") async throws -> (ChildProcess, String, String) {
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("Peers/webhook_receiver.py").path
            let name = UUID().uuidString
            let log = dir.appendingPathComponent("\(name).jsonl").path
            let portFile = dir.appendingPathComponent("\(name).port")
            let process = try ChildProcess("python3", [script, log, address], output: portFile.path)
            func readPort() -> String { ((try? String(contentsOf: portFile, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines) }
            _ = await TestStack.eventually { !readPort().isEmpty }
            try #require(!readPort().isEmpty, "the webhook receiver did not start")
            return (process, readPort(), log)
        }

        /// One client's receivers misbehave — one trickles its answer a byte a second, one sends a
        /// 1 GiB answer, one redirects to an internal address, others are internal addresses
        /// themselves (by address, IPv4-mapped, numeric name) — while three other clients' receivers
        /// answer at once. The others' deliveries all arrive within 5 s of being due, the notifier
        /// stays under 200 MiB, the internal receiver gets no request at all, the refused URLs are
        /// dead at once, and no URL (this one carries a secret) reaches the notifier's log.
        @Test func oneHostileReceiverHoldsNoOneElseAndReachesNothingInternal() async throws {
            let store = try await TestStack.store()
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("webhooks-\(UUID())")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            let (good, goodPort, goodLog) = try await Self.receiver(in: dir)
            defer { good.signal(SIGKILL) }
            // an internal service nobody outside may reach: loopback, but not the allowed 127.0.0.1
            let (inside, insidePort, insideLog) = try await Self.receiver(in: dir, address: "127.0.0.2")
            defer { inside.signal(SIGKILL) }
            let directory = ClientDirectory(store: store, ttl: .seconds(1))
            let (hostile, _) = try await directory.createClient(name: "Hostile receivers", email: nil)
            var neighbours: [UUID] = []
            for i in 0..<3 { neighbours.append(try await directory.createClient(name: "Neighbour \(i)", email: nil).0) }
            let others = neighbours
            let secretPath = "/trickle/services/T0000/B0000/XOXB-SECRET-\(UUID().uuidString.prefix(8))"
            let hostileURLs = [
                "http://127.0.0.1:\(goodPort)\(secretPath)", "http://127.0.0.1:\(goodPort)/huge",
                "http://127.0.0.1:\(goodPort)/redirect?to=http://127.0.0.2:\(insidePort)/redirected",
                "http://127.0.0.1:\(goodPort)/redirect?to=http://169.254.169.254/latest/meta-data/",
                "http://127.0.0.2:\(insidePort)/direct", "http://[::ffff:127.0.0.2]:\(insidePort)/mapped", "http://2130706434:\(insidePort)/numeric",
                "http://169.254.169.254/latest/meta-data/iam/",
            ]
            // deliveries due now: 10 per hostile subscription, 20 per neighbour
            let started = Date()
            try await store.transaction { conn in
                func subscribe(_ client: UUID, _ url: String, notifications: Int) throws {
                    let sub = try conn.query(
                        "INSERT INTO webhook_subscriptions (client_id, url, secret, event_filter) VALUES ($1, $2, 'receiver-secret-0123456789abcdef', '[]') RETURNING id",
                        [client, url])[0].decode(UUID.self, at: 0)
                    for i in 0..<notifications {
                        let n = try conn.query(
                            "INSERT INTO notifications (client_id, severity, kind, title, message, event_type) VALUES ($1, 'info', 'test', 't', $2, 'switch.reported') RETURNING id",
                            [client, "n\(i)"])[0].decode(UUID.self, at: 0)
                        _ = try conn.execute("INSERT INTO webhook_deliveries (subscription_id, notification_id) VALUES ($1, $2)", [sub, n])
                    }
                }
                for url in hostileURLs { try subscribe(hostile, url, notifications: 10) }
                for client in others { try subscribe(client, "http://127.0.0.1:\(goodPort)/ok", notifications: 20) }
            }
            let logFile = dir.appendingPathComponent("notifier.log").path
            let notifier = try await ServiceProcess.start(
                "spotguard-notifier", portVariable: "SPOTGUARD_NOTIFIER_PORT",
                environment: [
                    "SPOTGUARD_WEBHOOK_ALLOW_NETWORKS": "127.0.0.1/32", "SPOTGUARD_WEBHOOK_TIMEOUT_MS": "2000", "SPOTGUARD_WEBHOOK_BACKOFF_MS": "500",
                    "SPOTGUARD_WEBHOOK_MAX_ATTEMPTS": "2", "SPOTGUARD_NOTIFIER_POLL_MS": "100", "SPOTGUARD_LOG_LEVEL": "debug",
                ], output: logFile)
            try await ServiceProcess.with(notifier) { notifier in
                func delivered(_ client: UUID) async throws -> Int {
                    try await SEFQuery.count(
                        store,
                        "SELECT count(*) FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id WHERE s.client_id = $1 AND d.status = 'delivered'",
                        [client])
                }
                #expect(
                    await TestStack.eventually(timeout: .seconds(30)) {
                        var total = 0
                        for c in others { total += (try? await delivered(c)) ?? 0 }
                        return total == 60
                    })
                // every neighbour delivery within 5 s of being due (all were due at the start)
                let latest = try await store.withConnection { conn in
                    try conn.query(
                        """
                        SELECT coalesce(max(extract(epoch FROM d.delivered_at - $2::timestamptz)), 999)::float8 FROM webhook_deliveries d
                          JOIN webhook_subscriptions s ON s.id = d.subscription_id WHERE s.client_id = ANY($1::uuid[])
                        """, [PGArray(others), started])[0].decode(Double.self, at: 0)
                }
                #expect(latest < 5, "the last neighbour delivery took \(latest) s")
                // refused URLs are dead after one attempt (the hostile client's other deliveries,
                // held by their 2 s deadline, let them through a few at a time)
                func refused() async throws -> [(String, Int, String)] {
                    try await store.withConnection { conn in
                        try conn.query(
                            """
                            SELECT d.status, d.attempts, coalesce(d.last_error, '') FROM webhook_deliveries d
                              JOIN webhook_subscriptions s ON s.id = d.subscription_id WHERE s.client_id = $1 AND s.url = ANY($2::text[])
                            """, [hostile, PGArray(Array(hostileURLs.suffix(4)))]
                        ).map { (try $0.decode(String.self, at: 0), try $0.decode(Int.self, at: 1), try $0.decode(String.self, at: 2)) }
                    }
                }
                #expect(await TestStack.eventually(timeout: .seconds(60)) { ((try? await refused()) ?? []).allSatisfy { $0.0 == "dead" } })
                let settled = try await refused()
                #expect(settled.count == 40 && settled.allSatisfy { $0.0 == "dead" && $0.1 == 1 && $0.2.contains("internal address") }, "\(settled.prefix(3))")
                let rss =
                    try String(contentsOfFile: "/proc/\(notifier.process.pid)/status", encoding: .utf8).split(separator: "\n")
                    .first { $0.hasPrefix("VmHWM:") }.flatMap { Int($0.split(whereSeparator: \.isWhitespace)[1]) } ?? 0
                #expect(rss > 0 && rss < 200 * 1024, "notifier peak RSS \(rss) KiB")
                print("[webhooks] neighbours' last delivery \(latest) s after due; notifier peak RSS \(rss / 1024) MiB")
            }
            let internalRequests = (try? String(contentsOfFile: insideLog, encoding: .utf8))?.split(separator: "\n").count ?? 0
            #expect(internalRequests == 0, "the internal receiver got \(internalRequests) requests")
            let log = (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? ""
            #expect(!log.contains("XOXB-SECRET") && !log.contains("127.0.0.2:\(insidePort)"), "a webhook URL reached the log")
            #expect(!log.isEmpty)
            _ = goodLog
            await store.shutdown()
        }

        /// A name is resolved once and the connection goes to the address that was checked: a
        /// name that answers an allowed address first and an internal one after (DNS rebinding)
        /// reaches only the allowed one; an internal first answer is refused without a request.
        @Test func aRebindingNameReachesOnlyTheAddressThatWasChecked() async throws {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("rebind-\(UUID())")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            let (outside, outsidePort, outsideLog) = try await Self.receiver(in: dir)
            defer { outside.signal(SIGKILL) }
            let (inside, _, insideLog) = try await Self.receiver(in: dir, address: "127.0.0.2")
            defer { inside.signal(SIGKILL) }
            let lookups = Counter()
            let sender = WebhookSender(allowed: [CIDR("127.0.0.1/32")!], deadline: .seconds(5)) { _ in
                lookups.increment() == 1 ? [[127, 0, 0, 1]] : [[127, 0, 0, 2]]
            }
            let outcome = await sender.post(url: "http://rebinding.example:\(outsidePort)/rebind", headers: [], body: Array("{}".utf8))
            #expect(outcome == .answered(200))
            #expect(lookups.current == 1)
            #expect(((try? String(contentsOfFile: outsideLog, encoding: .utf8)) ?? "").contains("/rebind"))
            // asked again, the name now answers the internal address first: refused, nothing sent
            #expect(
                await sender.post(url: "http://rebinding.example:\(outsidePort)/rebind", headers: [], body: [])
                    == .refused("the URL leads to an internal address"))
            #expect(((try? String(contentsOfFile: insideLog, encoding: .utf8)) ?? "").isEmpty)
        }
    }
}
