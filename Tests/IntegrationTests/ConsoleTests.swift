import Foundation
import SpotRuntime
import SpotStore
import Testing
import ToolSupport

/// One client with a small fleet written straight into the database: an auto-switching agent
/// and a manual-replica agent (with a ready replica), their pools with measured and
/// interpolated prices, a switch, a notification, and a webhook made through the API.
struct Tenant {
    var id: String
    var token: String
    var autoAgent: String
    var manualAgent: String
    var replica: String
    var notification: String
    var webhook: String
    var pools: [String]

    static func seed(_ name: String, console: ServiceProcess, store: PostgresStore) async throws -> Tenant {
        let admin = try TestStack.env.require("SPOTGUARD_ADMIN_TOKEN")
        let created = try await console.send("POST", "/api/admin/clients", token: admin, json: #"{"name": "\#(name)"}"#)
        try #require(created.status == 201)
        let id = try #require(created.id("client_id"))
        let token = try #require(created.json["token"] as? String)
        let family = "cn" + String((0..<10).map { _ in "abcdefghijklmnopqrstuvwxyz".randomElement()! })
        let type = "\(family).large"
        let pools = ["a", "b", "c"].map { "\(type).us-east-1\($0)" }
        let (primary, standby, manualPrimary, old) = (
            ReplicaAgent.randomInstance(), ReplicaAgent.randomInstance(), ReplicaAgent.randomInstance(), ReplicaAgent.randomInstance()
        )
        let ids = try await store.transaction { conn -> [String] in
            for pool in pools {
                try conn.execute(
                    "INSERT INTO spot_pools (id, pool_name, instance_type, region, az) VALUES ($1, $1, $2, 'us-east-1', $3)",
                    [pool, type, String(pool.suffix(10))])
            }
            // two days of 5-minute prices per pool; pool a has a 2-hour interpolated stretch
            try conn.execute(
                """
                INSERT INTO pricing_snapshots_clean (pool_id, time_bucket, spot_price, on_demand_price, confidence_score, data_source,
                                                     source_type, interpolation_method)
                SELECT p.pool, to_timestamp(floor(extract(epoch FROM now()) / 300) * 300) - b * interval '5 minutes',
                       p.base + 0.004 * sin(b / 20.0), 0.10,
                       CASE WHEN p.pool = $1 AND b BETWEEN 100 AND 124 THEN 0.6 ELSE 1.0 END,
                       CASE WHEN p.pool = $1 AND b BETWEEN 100 AND 124 THEN 'interpolated' ELSE 'measured' END,
                       CASE WHEN p.pool = $1 AND b BETWEEN 100 AND 124 THEN 'interpolated' ELSE 'primary' END,
                       CASE WHEN p.pool = $1 AND b BETWEEN 100 AND 124 THEN 'linear' END
                  FROM (VALUES ($1, 0.031), ($2, 0.027), ($3, 0.035)) p(pool, base), generate_series(0, 575) b
                """, [pools[0], pools[1], pools[2]])
            try conn.execute(
                "INSERT INTO pool_risk_analysis (pool_id, analyzed_at, risk_score) VALUES ($1, now(), 0.12), ($2, now(), 0.55)", [pools[0], pools[1]])
            let auto = try conn.query(
                """
                INSERT INTO agents (client_id, logical_agent_id, instance_id, instance_type, region, az, current_pool_id, current_mode,
                                    last_heartbeat_at)
                VALUES ($1::uuid, 'web-auto', $2, $3, 'us-east-1', 'us-east-1a', $4, 'spot', now()) RETURNING id::text
                """, [id, primary, type, pools[0]])[0].decode(String.self, at: 0)
            let manual = try conn.query(
                """
                INSERT INTO agents (client_id, logical_agent_id, instance_id, instance_type, region, az, current_pool_id, current_mode,
                                    auto_switch_enabled, auto_terminate_enabled, manual_replica_enabled, last_heartbeat_at)
                VALUES ($1::uuid, 'db-manual', $2, $3, 'us-east-1', 'us-east-1b', $4, 'spot', false, false, true, now()) RETURNING id::text
                """, [id, manualPrimary, type, pools[1]])[0].decode(String.self, at: 0)
            try conn.execute(
                """
                INSERT INTO instances (id, client_id, agent_id, instance_type, region, az, current_mode, current_pool_id, installed_at)
                VALUES ($1, $3::uuid, $4::uuid, $6, 'us-east-1', 'us-east-1a', 'spot', $7, now() - interval '1 day'),
                       ($2, $3::uuid, $5::uuid, $6, 'us-east-1', 'us-east-1b', 'spot', $8, now() - interval '1 day')
                """, [primary, manualPrimary, id, auto, manual, type, pools[0], pools[1]])
            let replica = try conn.query(
                """
                INSERT INTO replica_instances (agent_id, instance_id, replica_type, pool_id, instance_type, region, az, status, sync_status,
                                               state_transfer_progress, hourly_cost, launched_at, ready_at)
                VALUES ($1::uuid, $2, 'manual', $3, $4, 'us-east-1', 'us-east-1c', 'ready', 'synced', 100, 0.035, now(), now())
                RETURNING id::text
                """, [manual, standby, pools[2], type])[0].decode(String.self, at: 0)
            try conn.execute(
                """
                INSERT INTO switches (client_id, agent_id, old_instance_id, old_mode, old_pool_id, new_instance_id, new_mode, new_pool_id,
                                      on_demand_price, old_spot_price, new_spot_price, old_price_confidence, new_price_confidence,
                                      old_price_data_source, new_price_data_source, savings_impact, savings_confidence, event_trigger,
                                      initiated_at, instance_ready_at, traffic, fenced_at)
                VALUES ($1::uuid, $2::uuid, $3, 'spot', $4, $5, 'spot', $6, 0.10, 0.035, 0.031, 1, 0.6, 'measured', 'interpolated',
                        0.004, 'medium', 'auto_switch', now() - interval '3 hours', now() - interval '3 hours' + interval '95 seconds',
                        '{"moved_ms": 84, "steps": [{"kind": "elastic_ip", "target": "eipalloc-0a1b2c3d", "status": "done", "attempts": 2, "ms": 84}]}',
                        now() - interval '3 hours' + interval '100 seconds')
                """, [id, auto, old, pools[2], primary, pools[0]])
            // two days accounted: 2.40 on demand, 0.80 + 0.10 spent, 1.50 saved each
            try conn.execute(
                """
                INSERT INTO savings_snapshots (client_id, agent_id, day, on_demand_cost, actual_cost, replica_cost, savings, savings_percent,
                                               instance_hours)
                SELECT $1::uuid, a, current_date - d, 2.40, 0.80, 0.10, 1.50, 62.5, 24
                  FROM unnest(ARRAY[NULL, $2::uuid]) a, generate_series(1, 2) d
                """, [id, auto])
            try conn.execute(
                """
                INSERT INTO agent_traffic (agent_id, client_id, config)
                VALUES ($1::uuid, $2::uuid, '{"elastic_ips": [{"allocation_id": "eipalloc-0a1b2c3d"}], "target_groups": [], "dns_records": []}')
                """, [auto, id])
            let notification = try conn.query(
                """
                INSERT INTO notifications (client_id, agent_id, severity, kind, title, message, event_type, occurrences)
                VALUES ($1::uuid, $2::uuid, 'warning', 'agent_offline', 'Agent offline', 'web-auto was silent for 10 minutes', 'agent.offline', 3)
                RETURNING id::text
                """, [id, auto])[0].decode(String.self, at: 0)
            return [auto, manual, replica, notification]
        }
        let hook = try await console.send(
            "POST", "/api/client/\(id)/webhooks", token: token, json: #"{"url": "http://127.0.0.1:9/hook", "events": ["failover.*"]}"#)
        try #require(hook.status == 201)
        #expect((hook.json["secret"] as? String)?.count == 64, "a generated secret is returned once")
        return Tenant(
            id: id, token: token, autoAgent: ids[0], manualAgent: ids[1], replica: ids[2], notification: ids[3],
            webhook: try #require(hook.id("id")), pools: pools)
    }

    /// Every client route, with this tenant's ids.
    var routes: [(method: String, path: String, json: String?)] {
        [
            ("GET", "/api/client/\(id)/agents", nil), ("GET", "/api/client/\(id)/instances", nil), ("GET", "/api/client/\(id)/replicas", nil),
            ("GET", "/api/client/\(id)/switches", nil), ("GET", "/api/client/\(id)/savings", nil),
            ("GET", "/api/client/\(id)/notifications", nil), ("POST", "/api/client/\(id)/notifications/\(notification)/read", nil),
            ("GET", "/api/client/\(id)/prices", nil), ("GET", "/api/client/\(id)/prices?pool_id=\(pools[0])", nil),
            ("GET", "/api/client/\(id)/webhooks", nil), ("POST", "/api/client/\(id)/webhooks", #"{"url": "http://127.0.0.1:9/x"}"#),
            ("DELETE", "/api/client/\(id)/webhooks/\(webhook)", nil),
            ("GET", "/api/client/agents/\(autoAgent)", nil), ("POST", "/api/client/agents/\(autoAgent)/config", #"{"auto_switch_enabled": true}"#),
            ("POST", "/api/client/agents/\(autoAgent)/force-switch", #"{"target_mode": "ondemand"}"#),
            ("POST", "/api/client/agents/\(manualAgent)/replicas/\(replica)/promote", nil),
            ("DELETE", "/api/client/agents/\(manualAgent)/replicas/\(replica)", nil),
        ]
    }
}

extension ServiceProcess.Reply {
    var items: [[String: Any]] { json["items"] as? [[String: Any]] ?? [] }
}

extension IntegrationTests {
    @Suite struct ConsoleTests {
        /// Runs `body` with a console and a replica coordinator (the console relays replica
        /// calls to it), both stopped afterwards.
        static func withConsole(_ body: (ServiceProcess) async throws -> Void) async throws {
            let replicas = try await ServiceProcess.start("spotguard-replicas", portVariable: "SPOTGUARD_REPLICAS_PORT")
            do {
                try await ServiceProcess.with(try await ServiceProcess.console(), body)
            } catch {
                _ = await replicas.stop()
                throw error
            }
            #expect(await replicas.stop() == 0)
        }

        /// Another client's token on every route: 404 (never 403, which would confirm the id
        /// exists); no token: 401; the owner: success, and lists hold only its own rows.
        @Test func everyRouteChecksTheTenant() async throws {
            let store = try await TestStack.store()
            try await Self.withConsole { console in
                let a = try await Tenant.seed("Console A", console: console, store: store)
                let b = try await Tenant.seed("Console B", console: console, store: store)
                for route in a.routes {
                    let foreign = try await console.send(route.method, route.path, token: b.token, json: route.json)
                    #expect(foreign.status == 404, "\(route.method) \(route.path) with another client's token: \(foreign.status)")
                    #expect(foreign.errorCode?.hasSuffix("not_found") == true, "\(route.path): \(foreign.errorCode ?? "no code")")
                    let anonymous = try await console.send(route.method, route.path, json: route.json)
                    #expect(anonymous.status == 401 && anonymous.errorCode == "unauthorized", "\(route.path) without a token: \(anonymous.status)")
                    let forged = try await console.send(route.method, route.path, token: "sgt_aaaaaaaaaaaaaaaa_" + String(repeating: "0", count: 64))
                    #expect(forged.status == 401, "\(route.path) with a made-up token: \(forged.status)")
                }
                // the owner sees its own fleet and nothing of the other's
                let agents = try await console.send("GET", "/api/client/\(a.id)/agents", token: a.token)
                #expect(agents.status == 200)
                #expect(Set(agents.items.compactMap { ($0["id"] as? String)?.lowercased() }) == [a.autoAgent, a.manualAgent])
                let replicas = try await console.send("GET", "/api/client/\(a.id)/replicas?active=true", token: a.token)
                #expect(replicas.items.map { ($0["id"] as? String)?.lowercased() } == [a.replica])
                #expect(replicas.items.first?["state_transfer_progress"] as? Double == 100)
                let switches = try await console.send("GET", "/api/client/\(a.id)/switches", token: a.token)
                let entry = (switches.json["switches"] as? [[String: Any]])?.first
                #expect((entry?["new"] as? [String: Any])?["price_data_source"] as? String == "interpolated")
                let prices = try await console.send("GET", "/api/client/\(a.id)/prices?pool_id=\(a.pools[0])&days=7", token: a.token)
                #expect((prices.json["points"] as? [Any])?.count == 576)
                #expect(abs((prices.json["interpolated_share"] as? Double ?? 0) - 25.0 / 576) < 0.001)
                let pools = try await console.send("GET", "/api/client/\(a.id)/prices", token: a.token)
                #expect(pools.json["pools"] as? [String] == a.pools)
                let otherPool = try await console.send("GET", "/api/client/\(a.id)/prices?pool_id=\(b.pools[0])", token: a.token)
                #expect(otherPool.status == 404 && otherPool.errorCode == "pool_not_found")
                let unread = try await console.send("GET", "/api/client/\(a.id)/notifications?unread=true", token: a.token)
                #expect(unread.items.count == 1 && unread.items.first?["occurrences"] as? Int == 3)
                #expect(try await console.send("POST", "/api/client/\(a.id)/notifications/\(a.notification)/read", token: a.token).status == 200)
                #expect(try await console.send("GET", "/api/client/\(a.id)/notifications?unread=true", token: a.token).items.isEmpty)
                #expect(try await console.send("DELETE", "/api/client/\(a.id)/webhooks/\(a.webhook)", token: a.token).status == 204)
                #expect(try await console.send("GET", "/api/client/\(a.id)/webhooks", token: a.token).items.isEmpty)

                // admin routes refuse client tokens
                let admin = try TestStack.env.require("SPOTGUARD_ADMIN_TOKEN")
                for (method, path) in [("GET", "/api/admin/system-health"), ("GET", "/api/admin/clients"), ("POST", "/api/admin/clients/\(a.id)/rotate-token")]
                {
                    #expect(try await console.send(method, path, token: a.token).status == 401, "\(path) with a client token")
                }
                let health = try await console.send("GET", "/api/admin/system-health", token: admin)
                #expect(health.status == 200 && health.json["database"] as? String == "up" && health.json["broker"] as? String == "up")
                let clients = try await console.send("GET", "/api/admin/clients", token: admin)
                let listed = Set(clients.items.compactMap { ($0["client_id"] as? String)?.lowercased() })
                #expect(listed.isSuperset(of: [a.id, b.id]))

                // rotation: the old token stops, the new one works
                let rotated = try await console.send("POST", "/api/admin/clients/\(a.id)/rotate-token", token: admin)
                let fresh = try #require(rotated.json["token"] as? String)
                #expect(fresh != a.token)
                #expect(try await console.send("GET", "/api/client/\(a.id)/agents", token: a.token).status == 401)
                #expect(try await console.send("GET", "/api/client/\(a.id)/agents", token: fresh).status == 200)
                #expect(try await console.send("POST", "/api/admin/clients/\(UUID())/rotate-token", token: admin).status == 404)
            }
        }

        @Test func modesExcludeEachOtherAndSwitchesCanBeForced() async throws {
            let store = try await TestStack.store()
            try await Self.withConsole { console in
                let t = try await Tenant.seed("Console modes", console: console, store: store)
                let auto = "/api/client/agents/\(t.autoAgent)"
                let both = try await console.send(
                    "POST", "\(auto)/config", token: t.token, json: #"{"manual_replica_enabled": true, "auto_switch_enabled": true}"#)
                #expect(both.status == 409 && both.errorCode == "modes_exclusive")
                let manualOnAuto = try await console.send("POST", "\(auto)/config", token: t.token, json: #"{"manual_replica_enabled": true}"#)
                #expect(manualOnAuto.status == 409 && manualOnAuto.errorCode == "auto_mode_active", "\(manualOnAuto.status) \(manualOnAuto.errorCode ?? "")")
                let off = try await console.send(
                    "POST", "\(auto)/config", token: t.token, json: #"{"auto_switch_enabled": false, "auto_terminate_enabled": true}"#)
                #expect(off.status == 200 && off.json["auto_switch_enabled"] as? Bool == false && off.json["auto_terminate_enabled"] as? Bool == true)
                let badWait = try await console.send("POST", "\(auto)/config", token: t.token, json: #"{"terminate_wait_seconds": -1}"#)
                #expect(badWait.status == 400 && badWait.errorField == "terminate_wait_seconds")
                // the decision engine and what an interruption costs the workload are the agent's settings
                #expect(off.json["decision_engine"] as? String == "cost" && off.json["interruption_cost"] as? Double == 5, "the defaults")
                let engine = try await console.send(
                    "POST", "\(auto)/config", token: t.token, json: #"{"decision_engine": "conservative", "interruption_cost": 40.5}"#)
                #expect(
                    engine.status == 200 && engine.json["decision_engine"] as? String == "conservative" && engine.json["interruption_cost"] as? Double == 40.5)
                for (body, field) in [(#"{"decision_engine": "rules"}"#, "decision_engine"), (#"{"interruption_cost": -1}"#, "interruption_cost")] {
                    let bad = try await console.send("POST", "\(auto)/config", token: t.token, json: body)
                    #expect(bad.status == 400 && bad.errorField == field, "\(body): \(bad.status) \(bad.errorField ?? "")")
                }

                // force-switch: to a zone of the same type, to on-demand; bad targets are 400
                let toB = try await console.send("POST", "\(auto)/force-switch", token: t.token, json: #"{"target_pool_id": "\#(t.pools[1])"}"#)
                #expect(toB.status == 202, "\(toB.status) \(toB.errorCode ?? "")")
                let command = try #require(toB.id("command_id"))
                let row = try await store.withConnection {
                    try $0.query("SELECT command_type, target_pool_id, target_mode, issued_by FROM commands WHERE id = $1::uuid", [command])
                }
                #expect(try row.first?.decode(String.self, at: 0) == "switch" && row.first?.decode(String.self, at: 1) == t.pools[1])
                #expect(try row.first?.decode(String.self, at: 3) == "user")
                #expect(try await console.send("POST", "\(auto)/force-switch", token: t.token, json: #"{"target_mode": "ondemand"}"#).status == 202)
                for (body, code) in [
                    (#"{"target_pool_id": "nonsense"}"#, "invalid_pool_id"), (#"{"target_pool_id": "m5.large.eu-west-1a"}"#, "pool_not_eligible"),
                    (#"{"target_mode": "reserved"}"#, "invalid_mode"), (#"{"target_mode": "spot"}"#, "missing_field"),
                    (#"{"target": "moon"}"#, "invalid_value"),
                ] {
                    let r = try await console.send("POST", "\(auto)/force-switch", token: t.token, json: body)
                    #expect(r.status == 400 && r.errorCode == code, "\(body): \(r.status) \(r.errorCode ?? "")")
                }
                let manualPool = try await console.send(
                    "POST", "/api/client/agents/\(t.manualAgent)/force-switch", token: t.token, json: #"{"target_pool_id": "\#(t.pools[0])"}"#)
                #expect(manualPool.status == 409 && manualPool.errorCode == "manual_mode_active")
                // bad bodies
                let notJSON = try await console.send("POST", "\(auto)/config", token: t.token, json: "x=1", contentType: "application/x-www-form-urlencoded")
                #expect(notJSON.status == 415)
                #expect(try await console.send("POST", "\(auto)/config", token: t.token).errorCode == "empty_body")
                let malformed = try await console.send("POST", "\(auto)/config", token: t.token, json: #"{"auto_switch_enabled": "yes"}"#)
                #expect(malformed.status == 400 && malformed.errorField == "auto_switch_enabled")
                let huge = try await console.send("POST", "\(auto)/config", token: t.token, json: "{\"x\": \"" + String(repeating: "a", count: 70_000) + "\"}")
                #expect(huge.status == 413)
                for (body, code) in [
                    (#"{"url": "ftp://x"}"#, "invalid_url"), (#"{"url": "http://ok.example/x", "events": ["Failover!"]}"#, "invalid_event_filter"),
                    (#"{"url": "http://ok.example/x", "secret": "short"}"#, "invalid_secret"),
                    (#"{"url": "http://ok.example/x", "format": "xml"}"#, "invalid_value"),
                ] {
                    let r = try await console.send("POST", "/api/client/\(t.id)/webhooks", token: t.token, json: body)
                    #expect(r.status == 400 && r.errorCode == code, "\(body): \(r.status) \(r.errorCode ?? "")")
                }
            }
        }

        /// Ingest, the console and the SEF serve their OpenAPI document, and
        /// openapi-spec-validator accepts each.
        @Test func openAPIDocumentsAreValid() async throws {
            try await ServiceProcess.withIngest { ingest in
                try await ServiceProcess.with(try await ServiceProcess.console()) { console in
                    try await ServiceProcess.with(try await ServiceProcess.start("spotguard-sef", portVariable: "SPOTGUARD_SEF_PORT")) { sef in
                        for (service, least) in [(ingest, 15), (console, 15), (sef, 7)] {
                            let reply = try await service.send("GET", "/openapi.yaml")
                            #expect(reply.status == 200 && reply.headers["content-type"] == "application/yaml")
                            let file = FileManager.default.temporaryDirectory.appendingPathComponent("openapi-\(UUID()).yaml")
                            try reply.body.write(to: file)
                            defer { try? FileManager.default.removeItem(at: file) }
                            let check = """
                                import sys
                                from openapi_spec_validator import validate
                                from openapi_spec_validator.readers import read_from_filename
                                spec, _ = read_from_filename(sys.argv[1])
                                validate(spec)
                                print(len(spec["paths"]))
                                """
                            let out = file.path + ".out"
                            let status = try await ChildProcess("python3", ["-c", check, file.path], output: out).exitStatus()
                            #expect(status == 0, "openapi-spec-validator refused \(service.base)/openapi.yaml")
                            let paths = Int((try? String(contentsOfFile: out, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
                            #expect(paths >= least, "\(paths) paths documented")
                            try? FileManager.default.removeItem(atPath: out)
                        }
                    }
                    // the bus contract for integrators, as docs/asyncapi.yaml has it
                    let asyncAPI = try await console.send("GET", "/asyncapi.yaml")
                    let document = try Data(contentsOf: TestStack.repoRoot.appendingPathComponent("docs/asyncapi.yaml"))
                    #expect(asyncAPI.status == 200 && asyncAPI.headers["content-type"] == "application/yaml" && asyncAPI.body == document)
                }
            }
        }

        /// The dashboard as Chromium renders it: logged in through the form, every page, a
        /// refused mode change, and a phone-sized screen. Asserts on the DOM Chromium built.
        @Test func dashboardInChromium() async throws {
            let store = try await TestStack.store()
            let chromium = try TestStack.env.require("SPOTGUARD_TEST_CHROMIUM")
            try await Self.withConsole { console in
                let t = try await Tenant.seed("Console browser", console: console, store: store)
                // kept for people to look at: the test stack's folder, wiped by the next `make test`
                let out = try TestStack.env.require("SPOTGUARD_STACK_DIR") + "/screenshots"
                try? FileManager.default.removeItem(atPath: out)
                let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                    .appendingPathComponent("Peers/dashboard_check.py").path
                let pages = [
                    "overview=/overview", "agents=/agents", "agent=/agents/\(t.autoAgent)", "switches=/switches", "prices=/prices",
                    "prices-6h=/prices?range=6h",
                    "notifications=/notifications", "webhooks=/webhooks",
                ]
                var arguments: [String] = [script, "--chromium", chromium, "--base", console.base, "--token", t.token, "--out", out]
                arguments += ["--axe", try TestStack.env.require("SPOTGUARD_TEST_AXE")]
                arguments += pages.flatMap { ["--page", $0] }
                arguments += ["--click", "refused=/agents=#agent-\(t.autoAgent) .modes form:nth-of-type(3) button", "--mobile", "mobile=/agents"]
                // a page that keeps itself up to date every 5 s, watched in place
                arguments += ["--live", "prices-live=/prices?range=6h&refresh=5"]
                // webhooks: one added (its secret shown once), one refused, a deletion asked about first
                arguments += [
                    "--submit",
                    #"webhook-added=/webhooks=form.traffic-form={"url": "https://hooks.example.com/spotguard", "events": "failover.*, agent.offline", "format": "slack"}"#,
                    "--submit", #"webhook-refused=/webhooks=form.traffic-form={"url": "ftp://files.example.com/x", "events": "", "format": "json"}"#,
                    "--click", "webhook-delete=/webhooks=#webhooks tbody tr:first-child form button",
                ]
                // the traffic form, filled in and sent: a valid configuration, then one with a record outside its zone
                for (name, record) in [("traffic-saved", "app.example.com"), ("traffic-refused", "app.example.org")] {
                    arguments += ["--submit", "\(name)=/agents/\(t.autoAgent)=form.traffic-form=\(Self.trafficForm(record: record))"]
                }
                let summaryFile = out + ".json"
                defer { try? FileManager.default.removeItem(atPath: summaryFile) }
                let status = try await ChildProcess("python3", arguments, output: summaryFile).exitStatus()
                try #require(status == 0, "the Chromium check exited \(status)")
                let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: summaryFile))) as? [String: Any] ?? [:]
                #expect(summary["after_login"] as? String == "/overview", "the login form did not lead to the overview")
                let visited = (summary["pages"] as? [[String: Any]]) ?? []
                func dom(_ name: String) throws -> String { try String(contentsOfFile: "\(out)/\(name).html", encoding: .utf8) }
                for page in visited {
                    let name = page["name"] as? String ?? "?"
                    let png = try Data(contentsOf: URL(fileURLWithPath: "\(out)/\(name).png"))
                    #expect(png.count > 5_000 && png.starts(with: [0x89, 0x50, 0x4E, 0x47]), "\(name): no real screenshot")
                    if name != "login" {
                        #expect((page["url"] as? String)?.hasSuffix("/login") == false, "\(name) sent the browser to the login page")
                        let cookie = (page["cookies"] as? [[String: Any]])?.first { $0["name"] as? String == "sg_session" }
                        #expect(cookie?["httpOnly"] as? Bool == true && cookie?["sameSite"] as? String == "Strict" && cookie?["secure"] as? Bool == true)
                    }
                }
                #expect(visited.count == pages.count + 9)
                let overview = try dom("overview")
                #expect(overview.contains("id=\"agents-online\">2 online"))
                // the days accounted as a chart that states its figures, and as a table
                #expect(overview.contains("aria-labelledby=\"savings-chart-t savings-chart-d\""))
                #expect(overview.contains("3.00 USD saved (62.5 % of 4.80 USD on demand)"))
                #expect(overview.matches(of: /class="saved"/).count == 2 && overview.matches(of: /class="spent"/).count == 2)
                #expect(overview.matches(of: /<tr><th scope="row">\d{4}-\d{2}-\d{2}<\/th><td>\$1\.5000<\/td>/).count == 2)
                #expect(overview.contains("aria-current=\"page\""))
                let agents = try dom("agents")
                #expect(agents.contains("web-auto") && agents.contains("db-manual"))
                #expect(agents.contains("<progress max=\"100\" value=\"100\">"), "sync progress of the ready replica")
                #expect(agents.contains("/replicas/\(t.replica)/promote") && agents.contains("/replicas/\(t.replica)/delete"))
                #expect(agents.components(separatedBy: "name=\"csrf\"").count - 1 >= 8, "every form carries the CSRF token")
                let refused = try dom("refused")
                #expect(refused.contains("role=\"alert\""), "the refused change shows an alert")
                #expect(refused.contains("disable auto-switch and auto-terminate before enabling manual replica mode"))
                let agent = try dom("agent")
                #expect(agent.contains(t.pools[1]) && agent.contains("Switch here") && agent.contains("55 %"))
                // where its traffic enters, where it points, and what the last move did
                #expect(agent.contains("Elastic IP <code>eipalloc-0a1b2c3d</code>") && agent.contains("id=\"traffic-instance\">"))
                #expect(agent.contains("id=\"traffic-move\"") && agent.contains("84 ms") && agent.contains("<td>Done</td><td>2</td>"))
                #expect(!agent.contains("not all steps done"))
                // the traffic form: saved and shown, or refused with the reason and nothing changed
                let saved = try dom("traffic-saved")
                #expect(saved.contains("Elastic IP <code>eipalloc-0fedcba9876543210</code>") && saved.contains("port 8080"))
                #expect(saved.contains("app.example.com A (TTL 30 s)") && !saved.contains("Elastic IP <code>eipalloc-0a1b2c3d</code>"))
                let refusedTraffic = try dom("traffic-refused")
                #expect(refusedTraffic.contains("role=\"alert\"") && refusedTraffic.contains("app.example.org is not inside the zone example.com"))
                #expect(
                    refusedTraffic.contains("<details id=\"traffic-edit\" open") && refusedTraffic.contains("example.com app.example.org 30</textarea>"),
                    "the refused text is shown again to be corrected")
                #expect(
                    try await SEFQuery.count(
                        store, "SELECT count(*) FROM agent_traffic WHERE agent_id = $1::uuid AND config->'dns_records'->0->>'name' = 'app.example.com'",
                        [t.autoAgent]) == 1, "the refused form changed nothing")
                let switches = try dom("switches")
                #expect(switches.contains("source-interpolated") && switches.contains("source-measured"))
                // the week's moves, a row per reason with its count
                #expect(switches.contains("1 move: 0 failover, 0 emergency, 0 rebalance recommendation, 1 automatic switch, 0 manual."))
                #expect(switches.contains(">Automatic switch (1)</text>") && switches.matches(of: /class="move move-auto-switch"/).count == 1)
                // people read words, not the API's codes (the codes stay in class names)
                #expect(switches.contains("Automatic switch") && switches.contains("Interpolated ·"), "readable labels")
                #expect(!switches.contains("auto_switch") && !switches.contains(">interpolated ·"), "no raw code shown")
                #expect(agents.contains(">Online</span>") && !agents.contains(">online</span>"))
                let prices = try dom("prices")
                #expect(prices.components(separatedBy: "<svg").count - 1 == 3, "one chart per pool")
                #expect(prices.contains("data-kind=\"interpolated\"") && prices.contains("data-kind=\"measured\""))
                #expect(prices.contains("25 interpolated"), "the chart describes its interpolated buckets")
                // the axis fits the two days there are (not a sliver of a week): 12-hour ticks, so
                // each chart names at least one day and one noon whatever the time of day (a tick
                // too near an edge is left out), with its units
                let dayLabels = prices.matches(of: /class="axis">[A-Z][a-z]{2} [0-9]{1,2}</).count
                let noonLabels = prices.matches(of: /class="axis">12:00</).count
                #expect(dayLabels >= 3 && noonLabels >= 3, "\(dayLabels) day and \(noonLabels) noon labels over 3 charts")
                #expect(prices.contains(">USD/h<") && prices.contains(">UTC<"))
                // a page to read keeps itself up to date when its reader asks, says so and offers
                // to stop (WCAG 2.2.2): its script replaces what is below the heading in place, under
                // the page's own content security policy; without script a refresh meta tag would
                // reload it. A page of forms never does
                #expect(!prices.contains(#"live.js"#) && prices.contains(#"<a href="/prices?refresh=30">Update this page every 30 s</a>"#))
                let live = try #require((summary["live"] as? [[String: Any]])?.first)
                #expect(live["seconds"] as? Int == 5 && live["reloaded"] as? Bool == false, "\(live)")
                #expect(live["after"] as? String != live["before"] as? String, "the figures' time did not change in place: \(live)")
                #expect((live["status"] as? String)?.contains("Last updated") == true, "\(live)")
                let updating = try dom("prices-live")
                #expect(updating.contains(#"This page updates every 5 s."#) && updating.contains(#"<a href="/prices?range=6h">Stop updating</a>"#))
                #expect(updating.contains(#"<noscript><meta http-equiv="refresh" content="5"></noscript>"#))
                #expect(!(try dom("agents")).contains("refresh"), "a page of forms does not")
                // axe-core: no serious or critical WCAG 2 A/AA violation on any page, the phone-sized
                // one and the updating one included
                for page in visited {
                    let found = try #require(page["violations"] as? [[String: Any]], "\(page["name"] ?? "?") was not checked")
                    let grave = found.filter { ["serious", "critical"].contains($0["impact"] as? String ?? "") }
                    #expect(grave.isEmpty, "\(page["name"] ?? "?"): \(grave)")
                }
                let recent = try dom("prices-6h")
                #expect(recent.contains(#"href="/prices?range=6h" aria-current="page""#), "the chosen period is marked")
                #expect(recent.matches(of: /class="axis">[0-9]{2}:00</).count >= 3 * 3, "hours on a 6-hour axis")
                let hooks = try dom("webhooks")
                #expect(hooks.contains("<code>http://127.0.0.1:9/hook</code>") && hooks.contains("<td>failover.*</td>"))
                let added = try dom("webhook-added")
                #expect(added.firstMatch(of: /id="made-secret">[0-9a-f]{64}</) != nil, "the new webhook's secret, shown once")
                #expect(
                    added.contains("<code>https://hooks.example.com/spotguard</code>") && added.contains("<td>failover.*, agent.offline</td><td>Slack</td>"))
                let refusedHook = try dom("webhook-refused")
                #expect(refusedHook.contains("role=\"alert\">url must be an http(s) URL") && refusedHook.contains("value=\"ftp://files.example.com/x\""))
                let deleting = try dom("webhook-delete")
                #expect(deleting.contains("Delete the webhook to http://127.0.0.1:9/hook?") && deleting.contains("name=\"confirmed\" value=\"yes\""))
                #expect(
                    try await SEFQuery.count(store, "SELECT count(*) FROM webhook_subscriptions WHERE client_id = $1::uuid AND is_active", [t.id]) == 2,
                    "the one added is there, the one asked about not yet deleted")
                let notifications = try dom("notifications")
                #expect(notifications.contains("Agent offline") && notifications.contains("×3"))
                let mobile = visited.first { $0["name"] as? String == "mobile" }
                #expect(mobile?["overflowing"] as? Bool == false, "the agents page scrolls sideways on a phone")
            }
        }

        /// The traffic form's fields (JSON for `dashboard_check.py --submit`), with a DNS record named `record` in example.com.
        static func trafficForm(record: String) -> String {
            let group = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef"
            let fields = [
                "elastic_ips": "eipalloc-0123456789abcdef0\neipalloc-0fedcba9876543210", "target_groups": "\(group) 8080",
                "dns_records": "Z0123456789ABCDEFGHIJ example.com \(record) 30",
            ]
            return String(decoding: try! JSONSerialization.data(withJSONObject: fields), as: UTF8.self)
        }
    }
}
