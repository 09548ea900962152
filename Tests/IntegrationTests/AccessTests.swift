import Foundation
import SpotModels
import SpotRuntime
import SpotStore
import Testing
import ToolSupport

/// A browser's view of the dashboard: curl with a cookie jar, redirects not followed.
struct Browser {
    let base: String
    /// A CA to trust for an https base (the gateway's).
    var caBundle: String? = nil
    let jar = FileManager.default.temporaryDirectory.appendingPathComponent("jar-\(UUID()).txt").path

    /// Returns the status and the body.
    func request(_ method: String, _ path: String, form: String? = nil) async throws -> (status: Int, body: String) {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("curl-\(UUID()).txt").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        var args = ["-s", "-o", out, "-w", "%{http_code}", "-b", jar, "-c", jar, "-X", method, base + path] + (caBundle.map { ["--cacert", $0] } ?? [])
        if let form { args += ["-H", "Content-Type: application/x-www-form-urlencoded", "--data-raw", form] }
        let codeFile = out + ".code"
        defer { try? FileManager.default.removeItem(atPath: codeFile) }
        _ = try await ChildProcess("/usr/bin/curl", args, output: codeFile).exitStatus()
        let status = Int((try? String(contentsOfFile: codeFile, encoding: .utf8)) ?? "") ?? 0
        return (status, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "")
    }

    /// Logs in with the form as a person would (its CSRF token from the page); returns the status.
    func logIn(token: String) async throws -> Int {
        let page = try await request("GET", "/login").body
        let csrf = try #require(page.firstMatch(of: /name="csrf" value="([0-9a-f]+)"/)?.1)
        return try await request("POST", "/login", form: "csrf=\(csrf)&token=\(token)").status
    }
}

extension IntegrationTests {
    @Suite struct AccessTests {
        static let insecureCookies = ["SPOTGUARD_CONSOLE_SECURE_COOKIES": "false"]

        /// The login form posted without its cookie and with an empty CSRF field is refused,
        /// even with a valid token (an empty token matched the missing cookie).
        @Test func aLoginWithoutItsFormCookieIsRefused() async throws {
            try await ServiceProcess.withIngest { ingest in
                let fleet = try await PriceFleet.make(ingest)
                let console = try await ServiceProcess.start("spotguard-console", portVariable: "SPOTGUARD_CONSOLE_PORT", environment: Self.insecureCookies)
                try await ServiceProcess.with(console) { console throws in
                    let browser = Browser(base: console.base)
                    #expect(try await browser.request("POST", "/login", form: "csrf=&token=\(fleet.token)").status == 403)
                    #expect(try await browser.request("GET", "/overview").status == 303, "no session was opened")
                    #expect(try await browser.logIn(token: fleet.token) == 303)
                    #expect(try await browser.request("GET", "/overview").status == 200)
                }
            }
        }

        /// Who may send what changes in every copy at once, not when caches expire: a rotated
        /// token stops working in ingest and in another console copy, a deleted agent can send
        /// nothing more, and a suspended client's token and dashboard sessions stop until it is
        /// reactivated. (The token cache lives 60 s; every check here waits at most 3.)
        @Test func accessChangesHoldInEveryCopyAtOnce() async throws {
            try await ServiceProcess.withIngest { ingest in
                let fleet = try await PriceFleet.make(ingest)
                let admin = try TestStack.env.require("SPOTGUARD_ADMIN_TOKEN")
                let a = try await ServiceProcess.start("spotguard-console", portVariable: "SPOTGUARD_CONSOLE_PORT", environment: Self.insecureCookies)
                let b = try await ServiceProcess.start("spotguard-console", portVariable: "SPOTGUARD_CONSOLE_PORT", environment: Self.insecureCookies)
                try await ServiceProcess.with(a) { a in
                    try await ServiceProcess.with(b) { b in
                        let clientId =
                            try #require(try await b.send("GET", "/api/admin/clients", token: admin).json["items"] as? [[String: Any]])
                            .first { ($0["name"] as? String) == "SEF \(fleet.family)" }?["client_id"] as? String
                        let client = try #require(clientId)
                        func heartbeat(_ token: String) async throws -> Int {
                            try await ingest.send("POST", "/api/agents/\(fleet.agent)/heartbeat", token: token, json: #"{"status": "online"}"#).status
                        }
                        func agents(_ token: String) async throws -> Int {
                            try await b.send("GET", "/api/client/\(client)/agents", token: token).status
                        }
                        func soon(_ condition: @escaping () async throws -> Bool) async -> Bool {
                            await TestStack.eventually(timeout: .seconds(3)) { (try? await condition()) ?? false }
                        }
                        // every copy has the token cached
                        #expect(try await heartbeat(fleet.token) == 202)
                        #expect(try await agents(fleet.token) == 200)
                        let browser = Browser(base: b.base)
                        #expect(try await browser.logIn(token: fleet.token) == 303)

                        let rotated = try await a.send("POST", "/api/admin/clients/\(client)/rotate-token", token: admin)
                        let token = try #require(rotated.json["token"] as? String)
                        #expect(await soon { try await heartbeat(fleet.token) == 401 }, "ingest still took the old token")
                        #expect(await soon { try await agents(fleet.token) == 401 }, "the other console copy still took the old token")
                        #expect(try await browser.request("GET", "/overview").status == 303, "the old token's session went on")
                        #expect(try await heartbeat(token) == 202)

                        #expect(try await browser.logIn(token: token) == 303)
                        let suspended = try await a.send("POST", "/api/admin/clients/\(client)/suspend", token: admin)
                        #expect(suspended.status == 200 && suspended.json["status"] as? String == "suspended")
                        #expect(await soon { try await heartbeat(token) == 401 }, "ingest still took a suspended client's token")
                        #expect(await soon { try await agents(token) == 401 })
                        #expect(try await browser.request("GET", "/overview").status == 303, "a suspended client's session went on")
                        let reactivated = try await a.send("POST", "/api/admin/clients/\(client)/reactivate", token: admin)
                        #expect(reactivated.json["status"] as? String == "active")
                        #expect(await soon { try await heartbeat(token) == 202 })

                        let deleted = try await a.send("DELETE", "/api/client/agents/\(fleet.agent)", token: token)
                        #expect(deleted.status == 200 && deleted.json["status"] as? String == "deleted")
                        #expect(await soon { try await heartbeat(token) == 404 }, "ingest still took a deleted agent's reports")
                        #expect(try await a.send("DELETE", "/api/client/agents/\(fleet.agent)", token: token).status == 404)
                        let again = try await ingest.send(
                            "POST", "/api/agents/register", token: token, json: #"{"logical_agent_id": "agent-\#(fleet.family)"}"#)
                        #expect(again.status == 409 && again.errorCode == "agent_deleted")
                    }
                }
            }
        }

        /// A switch report sent twice without a report id (a retry of a third-party agent) is
        /// one switch: its id is derived from the agent and the two instances.
        @Test func aSwitchReportWithoutIdIsRecordedOnce() async throws {
            let store = try await TestStack.store()
            try await ServiceProcess.withIngest { ingest in
                let fleet = try await PriceFleet.make(ingest)
                let decisions = try await ServiceProcess.start("spotguard-decisions", portVariable: "SPOTGUARD_DECISIONS_PORT")
                try await ServiceProcess.with(decisions) { _ in
                    let now = Date()
                    let report = """
                        {"old_instance": {"instance_id": "i-0a1b2c3d4e5f60718", "mode": "spot", "pool_id": "\(fleet.pool("a"))"},
                         "new_instance": {"instance_id": "i-0a1b2c3d4e5f60719", "mode": "spot", "pool_id": "\(fleet.pool("b"))"},
                         "timing": {"initiated_at": "\(Timestamp.format(now - 60))", "instance_ready_at": "\(Timestamp.format(now))"}}
                        """
                    let first = try await ingest.send("POST", "/api/agents/\(fleet.agent)/switch-report", token: fleet.token, json: report)
                    let second = try await ingest.send("POST", "/api/agents/\(fleet.agent)/switch-report", token: fleet.token, json: report)
                    #expect(first.status == 202 && second.status == 202)
                    #expect(first.json["id"] as? String == second.json["id"] as? String)
                    func recorded() async throws -> Int {
                        try await SEFQuery.count(store, "SELECT count(*) FROM switches WHERE agent_id = $1::uuid", [fleet.agent])
                    }
                    // both were handled once the decision engine's queue is empty
                    #expect(try await TestStack.eventually { try await TestStack.queueDepth("spotguard.decisions") == 0 })
                    #expect(try await recorded() == 1)
                }
            }
            await store.shutdown()
        }

        /// A fleet of any size is read a page at a time: the agents pages show 50 agents each in
        /// name order with a link to the next, each agent with its own replicas (a replica of an
        /// agent on the last page shows there, where the whole fleet's first 500 replicas once
        /// decided), and the overview counts every agent rather than the rows it loaded.
        @Test func theAgentsPagesAndTheOverviewHoldAFleetOfAnySize() async throws {
            try await ServiceProcess.withIngest { ingest in
                let fleet = try await PriceFleet.make(ingest)
                let store = try await TestStack.store()
                let client = try #require(
                    try await ReplicaQuery.one(store, "SELECT client_id::text FROM agents WHERE id = $1::uuid", [fleet.agent]).first ?? nil)
                try await store.transaction { conn in
                    _ = try conn.execute(
                        """
                        INSERT INTO agents (client_id, logical_agent_id, status)
                        SELECT $1::uuid, 'page-' || lpad(i::text, 3, '0'), 'online' FROM generate_series(0, 118) i
                        """, [client])
                    _ = try conn.execute(
                        """
                        INSERT INTO replica_instances (agent_id, replica_type, status)
                        SELECT id, 'manual', 'ready' FROM agents WHERE client_id = $1::uuid AND logical_agent_id = 'page-110'
                        """, [client])
                }
                let console = try await ServiceProcess.start("spotguard-console", portVariable: "SPOTGUARD_CONSOLE_PORT", environment: Self.insecureCookies)
                try await ServiceProcess.with(console) { console throws in
                    let browser = Browser(base: console.base)
                    #expect(try await browser.logIn(token: fleet.token) == 303)
                    var pages: [(names: [String], replicas: Int)] = []
                    var path: String? = "/agents"
                    var lastPage = ""
                    while let next = path, pages.count < 5 {
                        let page = try await browser.request("GET", next)
                        lastPage = page.body
                        #expect(page.status == 200, "\(next)")
                        let names = page.body.matches(of: /<h2 id="agent-[0-9a-f-]+-h"><a href="\/agents\/[0-9a-f-]+">([^<]+)<\/a>/).map { String($0.1) }
                        pages.append((names, page.body.matches(of: /<li class="replica"/).count))
                        path = page.body.firstMatch(of: /href="(\/agents\?after=[^"]+)" rel="next"/).map { String($0.1) }
                    }
                    #expect(pages.map(\.names.count) == [50, 50, 20])
                    let names = pages.flatMap(\.names)
                    #expect(names == names.sorted() && Set(names).count == 120)
                    #expect(pages.map(\.replicas) == [0, 0, 1] && pages.last?.names.contains("page-110") == true)
                    let overview = try await browser.request("GET", "/overview")
                    #expect(overview.body.contains("120 online") && overview.body.contains("0 offline of 120"), "\(overview.body.prefix(3000))")
                    #expect(overview.body.contains("1 ready"))
                    let tooLong = try await browser.request("GET", "/agents?after=" + String(repeating: "x", count: 256))
                    #expect(tooLong.status == 400 && tooLong.body.contains("out_of_range"))
                    let badRange = try await browser.request("GET", "/prices?range=1y")
                    #expect(badRange.status == 400 && badRange.body.contains("invalid_value") && badRange.body.contains("range"))
                    // a destructive button asks first, and changes nothing until confirmed
                    let delete = try #require(lastPage.firstMatch(of: /action="(\/agents\/[0-9a-f-]+\/replicas\/[0-9a-f-]+\/delete)"/).map { String($0.1) })
                    let csrf = try #require(lastPage.firstMatch(of: /name="csrf" value="([0-9a-f]+)"/).map { String($0.1) })
                    let asked = try await browser.request("POST", delete, form: "csrf=\(csrf)")
                    #expect(asked.status == 200 && asked.body.contains("Delete this replica of page-110?"), "\(asked.status) \(asked.body.prefix(2000))")
                    #expect(asked.body.contains("action=\"\(delete)\"") && asked.body.contains(#"name="confirmed" value="yes""#))
                    #expect(
                        try await SEFQuery.count(
                            store,
                            "SELECT count(*) FROM replica_instances r JOIN agents a ON a.id = r.agent_id WHERE a.client_id = $1::uuid AND r.status = 'ready'",
                            [client]) == 1, "still there")
                }
                await store.shutdown()
            }
        }
    }
}
