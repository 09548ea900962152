import Foundation
import SpotBus
import SpotCloud
import SpotModels
import SpotRuntime
import Synchronization
import Testing
import ToolSupport

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

struct ServiceNotReady: Error { var executable: String; var port: Int }

/// The ports of the services the tests start: handed out in turn from a random start in
/// 21000-29999 (below Linux's ephemeral range, so no client socket of this machine holds one),
/// skipping any a listener holds. Two services of one run never draw the same port: the second
/// would fail to bind and exit while the first answered its readiness checks in its place.
enum ServicePorts {
    static let range = 21_000...29_999
    static let next = Mutex(Int.random(in: range))

    static func take() throws -> Int {
        for _ in range {
            let port = next.withLock { n in
                defer { n = n == range.upperBound ? range.lowerBound : n + 1 }
                return n
            }
            if AgentHarness.bind(port) != nil { return port }
        }
        throw ServiceNotReady(executable: "-", port: 0)
    }
}

/// A SpotGuard executable (`serve`) as a real process on a loopback port, driven over HTTP.
final class ServiceProcess: Sendable {
    let process: ChildProcess
    let executable: String
    let base: String

    /// Starts `executable serve` with its port variable set to a free port and `environment`
    /// added, and waits until it reports ready.
    /// `output`: a file for the process's standard output (logs go to standard error, which
    /// `output` then receives too).
    static func start(
        _ executable: String, portVariable: String, environment: [String: String] = [:], output: String? = nil
    ) async throws -> ServiceProcess {
        var env = ProcessInfo.processInfo.environment
        let port = try ServicePorts.take()
        env[portVariable] = String(port)
        env["SPOTGUARD_LOG_LEVEL"] = "warning"
        // the tests provoke hundreds of 401s from one address on purpose; SecurityTests sets a limit
        env["SPOTGUARD_AUTH_FAILURE_LIMIT"] = "0"
        env.merge(environment) { _, new in new }
        let p = try ChildProcess(try TestStack.binDir + "/" + executable, ["serve"], environment: env, output: output, errors: true)
        let service = ServiceProcess(process: p, executable: executable, base: "http://127.0.0.1:\(port)")
        let ready = await TestStack.eventually { (try? await service.send("GET", "/health/ready").status) == 200 }
        guard ready else {
            _ = await service.stop()
            throw ServiceNotReady(executable: executable, port: port)
        }
        return service
    }

    static func ingest() async throws -> ServiceProcess {
        try await start("spotguard-ingest", portVariable: "SPOTGUARD_INGEST_PORT")
    }

    static func console() async throws -> ServiceProcess {
        try await start("spotguard-console", portVariable: "SPOTGUARD_CONSOLE_PORT")
    }

    private init(process: ChildProcess, executable: String, base: String) {
        self.process = process
        self.executable = executable
        self.base = base
    }

    struct Reply {
        var status: Int
        var headers: [String: String]
        var body: Data
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
        var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }
        var errorField: String? { (json["error"] as? [String: Any])?["field"] as? String }
    }

    func send(
        _ method: String, _ path: String, token: String? = nil, json: String? = nil, contentType: String = "application/json",
        body: Data? = nil, headers extra: [String: String] = [:]
    ) async throws -> Reply {
        try await Self.send(to: base, method, path, token: token, json: json, contentType: contentType, body: body, headers: extra)
    }

    /// A request to `base` (a service, or the gateway in front of it): through `transport` when
    /// given (TLS with a CA bundle), else URLSession.
    static func send(
        to base: String, via transport: HTTPClientTransport? = nil, _ method: String, _ path: String, token: String? = nil, json: String? = nil,
        contentType: String = "application/json", body: Data? = nil, headers extra: [String: String] = [:]
    ) async throws -> Reply {
        var request = URLRequest(url: URL(string: base + path)!)
        request.httpMethod = method
        request.timeoutInterval = 15
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let json { request.httpBody = Data(json.utf8) }
        if let body { request.httpBody = body }
        if request.httpBody != nil { request.setValue(contentType, forHTTPHeaderField: "Content-Type") }
        for (name, value) in extra { request.setValue(value, forHTTPHeaderField: name) }
        if let transport {
            let (status, headers, data) = try await transport.send(request)
            return Reply(status: status, headers: Dictionary(headers.map { ($0.key.lowercased(), $0.value) }) { _, last in last }, body: data)
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        let http = response as! HTTPURLResponse
        var headers: [String: String] = [:]
        for (k, v) in http.allHeaderFields { headers["\(k)".lowercased()] = "\(v)" }
        return Reply(status: http.statusCode, headers: headers, body: data)
    }

    /// Runs `body` against a fresh ingest process and stops it (SIGTERM) whatever happens;
    /// a clean shutdown must exit 0.
    static func withIngest(_ body: (ServiceProcess) async throws -> Void) async throws {
        try await with(try await ingest(), body)
    }

    static func with(_ service: ServiceProcess, _ body: (ServiceProcess) async throws -> Void) async throws {
        do {
            try await body(service)
        } catch {
            _ = await service.stop()
            throw error
        }
        let status = await service.stop()
        #expect(status == 0, "\(service.executable) did not shut down cleanly on SIGTERM (exit status \(status))")
    }

    /// SIGTERM, as an orchestrator would; returns the exit status.
    func stop() async -> Int32 {
        process.signal(SIGTERM)
        return await process.exitStatus()
    }
}

extension IntegrationTests {
    @Suite struct IngestTests {
        /// A queue of the test's own, bound like the SEF's, to see what ingest published.
        let queue = TestStack.uniqueName("spotguard.ingest-test")
        var topology: Topology {
            .standard.adding(.init(name: queue, bindings: [RoutingKey.heartbeatReceived, RoutingKey.pricingReported, RoutingKey.pricingSubmitted]))
        }

        func createClient(_ ingest: ServiceProcess, _ name: String) async throws -> (id: String, token: String) {
            let admin = try TestStack.env.require("SPOTGUARD_ADMIN_TOKEN")
            let reply = try await ingest.send("POST", "/api/admin/clients", token: admin, json: #"{"name": "\#(name)", "email": "ops@example.com"}"#)
            #expect(reply.status == 201)
            return (try #require(reply.json["client_id"] as? String), try #require(reply.json["token"] as? String))
        }

        func register(_ ingest: ServiceProcess, token: String, logical: String) async throws -> ServiceProcess.Reply {
            try await ingest.send(
                "POST", "/api/agents/register", token: token,
                json: """
                    {"logical_agent_id": "\(logical)", "instance_id": "i-0123456789abcdef0", "pool_id": "t3.medium.us-east-1a",
                     "mode": "spot", "agent_version": "1.0.0", "private_ip": "10.0.0.12"}
                    """)
        }

        /// Messages on the test queue: read until `count` arrived and nothing more came for 300 ms.
        /// Ingest answered 202 only after the broker confirmed, so all are already queued.
        func received(_ count: Int, publisher: BusPublisher) async throws -> [Delivery] {
            let inbox = Inbox()
            let consumer = BusConsumer(
                endpoint: try TestStack.amqp, topology: topology, configuration: .init(queue: queue),
                deadLetters: publisher, logger: TestStack.logger
            ) { inbox.append($0) }
            try await withConsumer(consumer) {
                _ = await TestStack.eventually { inbox.count >= count }
                var seen = -1
                while seen != inbox.count {
                    seen = inbox.count
                    try await Task.sleep(for: .milliseconds(300))
                }
            }
            return inbox.all
        }

        @Test func agentReportsAreAcceptedOnlyOnceTheBusHasThem() async throws {
            try await withPublisher(topology: topology) { publisher in
                try await ServiceProcess.withIngest { ingest in
                    let client = try await createClient(ingest, "Acme")

                    let first = try await register(ingest, token: client.token, logical: "web-1")
                    #expect(first.status == 201)
                    let agent = try #require(first.json["agent_id"] as? String)
                    let config = try #require(first.json["config"] as? [String: Any])
                    #expect(config["auto_switch_enabled"] as? Bool == true)
                    #expect(config["manual_replica_enabled"] as? Bool == false)
                    let again = try await register(ingest, token: client.token, logical: "web-1")
                    #expect(again.status == 200)
                    #expect(again.json["agent_id"] as? String == agent)

                    let hb = try await ingest.send(
                        "POST", "/api/agents/\(agent)/heartbeat", token: client.token,
                        json: #"{"status": "online", "instance_id": "i-0123456789abcdef0", "mode": "spot", "pool_id": "t3.medium.us-east-1a"}"#)
                    #expect(hb.status == 202)
                    let report = try await ingest.send(
                        "POST", "/api/agents/\(agent)/pricing-report", token: client.token,
                        json: """
                            {"pools": [{"id": "t3.medium.us-east-1a", "price": 0.0312}, {"id": "t3.medium.us-east-1b", "price": 0.0298}],
                             "on_demand_price": 0.0416}
                            """)
                    #expect(report.status == 202)
                    let submissionId = UUID().uuidString.lowercased()
                    let submit = try await ingest.send(
                        "POST", "/api/pricing/submit", token: client.token,
                        json: """
                            {"submission_id": "\(submissionId)", "source_agent_id": "\(agent)", "source_instance_id": "i-0123456789abcdef0",
                             "source_type": "primary", "pool_id": "t3.medium.us-east-1a", "spot_price": 0.0456,
                             "observed_at": "\(Timestamp.format(Date()))"}
                            """)
                    #expect(submit.status == 202)

                    let messages = try await received(3, publisher: publisher)
                    #expect(messages.count == 3)
                    let byKey = Dictionary(grouping: messages, by: \.routingKey)
                    let heartbeat = try #require(byKey[RoutingKey.heartbeatReceived]?.first).decode(HeartbeatReceived.self)
                    #expect(heartbeat.payload.agentId.uuidString.lowercased() == agent.lowercased())
                    #expect(heartbeat.payload.status == .online)
                    #expect(heartbeat.id.uuidString == hb.json["id"] as? String)
                    let pricing = try (byKey[RoutingKey.pricingReported, default: []] + byKey[RoutingKey.pricingSubmitted, default: []]).map {
                        try $0.decode(PricingReported.self).payload
                    }
                    #expect(pricing.count == 2)
                    guard case .report(let r)? = pricing.first(where: { if case .report = $0 { true } else { false } }) else {
                        Issue.record("no pricing report on the bus")
                        return
                    }
                    #expect(r.pools.map(\.price) == [0.0312, 0.0298])
                    #expect(r.onDemandPrice == 0.0416)
                    #expect(byKey[RoutingKey.pricingSubmitted]?.count == 1, "a single submission travels under its own key")
                    #expect(pricing.contains(where: { $0.messageId.uuidString.lowercased() == submissionId }))
                }
                try await publisher.deleteQueue(queue)
            }
        }

        @Test func badInputIsRefusedWithAReasonAndPublishesNothing() async throws {
            try await withPublisher(topology: topology) { publisher in
                try await ServiceProcess.withIngest { ingest in
                    let a = try await createClient(ingest, "Tenant A")
                    let b = try await createClient(ingest, "Tenant B")
                    let agent = try #require(try await register(ingest, token: a.token, logical: "api-1").json["agent_id"] as? String)
                    let report = "/api/agents/\(agent)/pricing-report"
                    let goodReport = #"{"pools": [{"id": "t3.medium.us-east-1a", "price": 0.0312}]}"#
                    let huge = #"{"pools": [{"id": "t3.medium.us-east-1a", "price": 0.03}], "pad": ""# + String(repeating: "x", count: 70_000) + #""}"#
                    let otherTenantsSubmit = """
                        {"submission_id": "\(UUID())", "source_agent_id": "\(agent)", "source_type": "primary",
                         "pool_id": "t3.medium.us-east-1a", "spot_price": 0.05, "observed_at": "\(Timestamp.format(Date()))"}
                        """
                    let cases: [(String, String?, String?, String, Int, String)] = [
                        ("negative price", report, a.token, #"{"pools": [{"id": "t3.medium.us-east-1a", "price": -0.0312}]}"#, 400, "invalid_price"),
                        ("bad pool", report, a.token, #"{"pools": [{"id": "mars-1a", "price": 0.03}]}"#, 400, "invalid_pool_id"),
                        ("missing pools", report, a.token, #"{"on_demand_price": 0.04}"#, 400, "missing_field"),
                        ("malformed json", report, a.token, #"{"pools": ["#, 400, "invalid_json"),
                        ("wrong type", report, a.token, #"{"pools": "all"}"#, 400, "invalid_type"),
                        (
                            "future time", report, a.token,
                            #"{"pools": [{"id": "t3.medium.us-east-1a", "price": 0.03}], "observed_at": "2099-01-01T00:00:00Z"}"#, 400, "timestamp_in_future"
                        ),
                        ("heartbeat status", "/api/agents/\(agent)/heartbeat", a.token, #"{"status": "sleepy"}"#, 400, "invalid_enum"),
                        ("too large", report, a.token, huge, 413, "body_too_large"),
                        ("no token", report, nil, goodReport, 401, "unauthorized"),
                        ("malformed token", report, "letmein", goodReport, 401, "unauthorized"),
                        ("forged token", report, String(a.token.dropLast(4)) + "0000", goodReport, 401, "unauthorized"),
                        ("other tenant's agent", report, b.token, goodReport, 404, "agent_not_found"),
                        ("unknown agent", "/api/agents/\(UUID())/pricing-report", a.token, goodReport, 404, "agent_not_found"),
                        ("agent id not a uuid", "/api/agents/1%20OR%201=1/pricing-report", a.token, goodReport, 404, "agent_not_found"),
                        ("other tenant's submission", "/api/pricing/submit", b.token, otherTenantsSubmit, 404, "agent_not_found"),
                        ("agent token on admin", "/api/admin/clients", a.token, #"{"name": "x"}"#, 401, "unauthorized"),
                    ]
                    for (name, path, token, json, status, code) in cases {
                        let reply = try await ingest.send("POST", path!, token: token, json: json)
                        #expect(reply.status == status, "\(name)")
                        #expect(reply.errorCode == code, "\(name)")
                    }
                    let negative = try await ingest.send("POST", report, token: a.token, json: #"{"pools": [{"id": "t3.medium.us-east-1a", "price": -1}]}"#)
                    #expect(negative.errorField == "pools[0].price")
                    let form = try await ingest.send("POST", report, token: a.token, json: goodReport, contentType: "text/plain")
                    #expect(form.status == 415)
                    #expect(form.errorCode == "unsupported_media_type")
                    let unauthorized = try await ingest.send("POST", report, token: nil, json: goodReport)
                    #expect(unauthorized.headers["www-authenticate"] == "Bearer")

                    // one good report after all the bad ones: it is the only message on the bus
                    #expect(try await ingest.send("POST", report, token: a.token, json: goodReport).status == 202)
                    let messages = try await received(1, publisher: publisher)
                    #expect(messages.count == 1)
                }
                try await publisher.deleteQueue(queue)
            }
        }

        /// A client whose data keeps being rejected raises one `quality.alert` per minute.
        @Test func burstOfRejectedDataRaisesOneAlert() async throws {
            let alerts = TestStack.uniqueName("spotguard.alert-test")
            let topology = Topology.standard.adding(.init(name: alerts, bindings: [RoutingKey.qualityAlert]))
            try await withPublisher(topology: topology) { publisher in
                let inbox = Inbox()
                let consumer = BusConsumer(
                    endpoint: try TestStack.amqp, topology: topology, configuration: .init(queue: alerts),
                    deadLetters: publisher, logger: TestStack.logger
                ) { inbox.append($0) }
                try await withConsumer(consumer) {
                    let ingest = try await ServiceProcess.start(
                        "spotguard-ingest", portVariable: "SPOTGUARD_INGEST_PORT", environment: ["SPOTGUARD_REJECTED_ALERT_PER_MINUTE": "5"])
                    try await ServiceProcess.with(ingest) { ingest in
                        let client = try await createClient(ingest, "Noisy Fleet")
                        let agent = try #require(try await register(ingest, token: client.token, logical: "noisy-1").json["agent_id"] as? String)
                        // nine rejections: however a minute boundary splits them, exactly one
                        // window reaches five
                        for _ in 0..<9 {
                            let r = try await ingest.send(
                                "POST", "/api/agents/\(agent)/pricing-report", token: client.token,
                                json: #"{"pools": [{"id": "t3.medium.us-east-1a", "price": -1}]}"#)
                            #expect(r.status == 400)
                        }
                        #expect(await TestStack.eventually { inbox.count >= 1 })
                        try await Task.sleep(for: .milliseconds(500))
                        let received = try inbox.all.map { try $0.decode(QualityAlert.self).payload }
                        #expect(received.count == 1)
                        #expect(received.first?.kind == .rejectedBurst)
                        #expect(received.first?.clientId?.uuidString.lowercased() == client.id.lowercased())
                        #expect(received.first?.details["top_reasons"]?.hasPrefix("invalid_price=") == true)
                    }
                }
                try await publisher.deleteQueue(alerts)
            }
        }

        /// State transfers are held in memory: past `SPOTGUARD_STATE_TRANSFER_CONCURRENCY` at
        /// once, another is refused with 503 `busy` at once, before its body is read.
        @Test func stateTransfersAtOnceAreBounded() async throws {
            let ingest = try await ServiceProcess.start(
                "spotguard-ingest", portVariable: "SPOTGUARD_INGEST_PORT", environment: ["SPOTGUARD_STATE_TRANSFER_CONCURRENCY": "1"])
            try await ServiceProcess.with(ingest) { ingest in
                let (_, token) = try await createClient(ingest, "Transfers")
                let agent = try #require(try await register(ingest, token: token, logical: TestStack.uniqueName("transfer")).json["agent_id"] as? String)
                let path = "/api/agents/\(agent)/replicas/\(UUID())/state-transfer"
                let file = FileManager.default.temporaryDirectory.appendingPathComponent("state-\(UUID()).gz").path
                defer { try? FileManager.default.removeItem(atPath: file) }
                try Data([0x1f, 0x8b] + Array(repeating: 0, count: 300_000)).write(to: URL(fileURLWithPath: file))
                // one upload trickles in at 100 KB/s and holds the only place for about three
                // seconds; while it does, another is refused. A probe that reaches the server
                // first refuses the slow one instead (its status is then 503): start it again.
                var refused: ServiceProcess.Reply?
                var slowStatus = ""
                for _ in 0..<10 where refused == nil {
                    let out = FileManager.default.temporaryDirectory.appendingPathComponent("curl-\(UUID()).txt").path
                    defer { try? FileManager.default.removeItem(atPath: out) }
                    let slow = try ChildProcess(
                        "/usr/bin/curl",
                        [
                            "-s", "-o", "/dev/null", "-w", "%{http_code}", "--limit-rate", "100k", "-H", "Authorization: Bearer \(token)",
                            "-H", "Content-Type: application/gzip", "--data-binary", "@\(file)", ingest.base + path,
                        ], output: out)
                    _ = await TestStack.eventually(timeout: .seconds(4)) {
                        let r = try? await ingest.send(
                            "POST", path, token: token, contentType: "application/gzip", body: Data([0x1f, 0x8b] + Array(repeating: 0, count: 16)))
                        if r?.status == 503 { refused = r }
                        return refused != nil || !((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").isEmpty
                    }
                    #expect(await slow.exitStatus() == 0)
                    slowStatus = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
                }
                #expect(refused?.errorCode == "busy" && refused?.headers["retry-after"] == "1")
                // the slow one itself went through to the handler (no such replica)
                #expect(slowStatus == "404")
                // the place is free again: this one reaches the handler (no such replica)
                let after = try await ingest.send(
                    "POST", path, token: token, contentType: "application/gzip", body: Data([0x1f, 0x8b] + Array(repeating: 0, count: 16)))
                #expect(after.status == 404)
            }
        }

        /// A client that sends nothing, or trickles its request, is disconnected by the server
        /// (here after 2 s idle, 2 s to receive a request) instead of holding the connection.
        @Test func slowClientsAreDisconnected() async throws {
            let ingest = try await ServiceProcess.start(
                "spotguard-ingest", portVariable: "SPOTGUARD_INGEST_PORT",
                environment: ["SPOTGUARD_HTTP_IDLE_SECONDS": "2", "SPOTGUARD_HTTP_READ_SECONDS": "2"])
            try await ServiceProcess.with(ingest) { ingest in
                let script = TestStack.repoRoot.appendingPathComponent("Tests/Peers/slow_client.py").path
                for mode in ["silent", "trickle-head", "trickle-body"] {
                    let out = FileManager.default.temporaryDirectory.appendingPathComponent("slow-\(UUID()).txt").path
                    defer { try? FileManager.default.removeItem(atPath: out) }
                    let status = try await ChildProcess("/usr/bin/python3", [script, ingest.base, mode, "20"], output: out).exitStatus()
                    let seconds = Double((try? String(contentsOfFile: out, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? -1
                    #expect(status == 0 && seconds > 0 && seconds < 6, "\(mode): closed after \(seconds) s (status \(status))")
                }
            }
        }

        @Test func brokerDownGives503WithRetryAfterThenRecovers() async throws {
            try await withPublisher(topology: topology) { publisher in
                try await ServiceProcess.withIngest { ingest in
                    let client = try await createClient(ingest, "Outage Inc")
                    let agent = try #require(try await register(ingest, token: client.token, logical: "db-1").json["agent_id"] as? String)
                    let path = "/api/agents/\(agent)/heartbeat"

                    try await TestStack.withBrokerStopped {
                        let notReady = await TestStack.eventually { (try? await ingest.send("GET", "/health/ready").status) == 503 }
                        #expect(notReady)
                        let refused = try await ingest.send("POST", path, token: client.token, json: #"{"status": "online"}"#)
                        #expect(refused.status == 503)
                        #expect(refused.errorCode == "broker_unavailable")
                        #expect(refused.headers["retry-after"] == "5")
                    }
                    let accepted = await TestStack.eventually(timeout: .seconds(60)) {
                        (try? await ingest.send("POST", path, token: client.token, json: #"{"status": "online"}"#).status) == 202
                    }
                    #expect(accepted)
                }
                #expect(await TestStack.eventually(timeout: .seconds(60)) { publisher.isConnected })
                try await publisher.deleteQueue(queue)
            }
        }
    }
}
