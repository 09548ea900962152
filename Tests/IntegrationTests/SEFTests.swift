import Foundation
import SpotBus
import SpotModels
import SpotRuntime
import SpotStore
import Testing
import ToolSupport

/// A fleet for one test: a client, one agent, and pools of an instance family no other test
/// uses, so every assertion can be scoped to this test's rows.
struct PriceFleet {
    let ingest: ServiceProcess
    let token: String
    let agent: String
    let family: String

    static func make(_ ingest: ServiceProcess) async throws -> PriceFleet {
        let letters = "abcdefghijklmnopqrstuvwxyz"
        let family = "sg" + String((0..<6).map { _ in letters.randomElement()! })
        let admin = try TestStack.env.require("SPOTGUARD_ADMIN_TOKEN")
        let client = try await ingest.send("POST", "/api/admin/clients", token: admin, json: #"{"name": "SEF \#(family)"}"#)
        let token = try #require(client.json["token"] as? String)
        let reg = try await ingest.send(
            "POST", "/api/agents/register", token: token,
            json: """
                {"logical_agent_id": "agent-\(family)", "instance_id": "i-0a1b2c3d4e5f60718", "pool_id": "\(family).large.us-east-1a",
                 "mode": "spot", "agent_version": "1.0.0"}
                """)
        let agent = try #require(reg.json["agent_id"] as? String)
        return PriceFleet(ingest: ingest, token: token, agent: agent, family: family)
    }

    func pool(_ az: String) -> String { "\(family).large.us-east-1\(az)" }

    /// `POST /api/pricing/submit`; returns the HTTP status.
    @discardableResult
    func submit(_ az: String, _ price: Double, at: Date, source: String = "primary", id: UUID = UUID(), onDemand: Double? = nil) async throws -> Int {
        let od = onDemand.map { #", "ondemand_price": \#($0)"# } ?? ""
        return try await ingest.send(
            "POST", "/api/pricing/submit", token: token,
            json: """
                {"submission_id": "\(id)", "source_agent_id": "\(agent)", "source_instance_id": "i-0a1b2c3d4e5f60718",
                 "source_type": "\(source)", "pool_id": "\(pool(az))", "spot_price": \(price), "observed_at": "\(Timestamp.format(at))"\(od)}
                """
        ).status
    }

    /// `POST /api/agents/{id}/pricing-report` with one price per AZ.
    @discardableResult
    func report(_ prices: [(String, Double)], at: Date, id: UUID = UUID()) async throws -> Int {
        let pools = prices.map { #"{"id": "\#(pool($0.0))", "price": \#($0.1)}"# }.joined(separator: ", ")
        return try await ingest.send(
            "POST", "/api/agents/\(agent)/pricing-report", token: token,
            json: """
                {"report_id": "\(id)", "pools": [\(pools)], "on_demand_price": 0.096, "observed_at": "\(Timestamp.format(at))"}
                """
        ).status
    }
}

/// Clean rows of a test's pools, compared as values.
struct CleanRow: Hashable, CustomStringConvertible {
    var az: String
    var bucket: Date
    var price: String
    var confidence: String
    var dataSource: String
    var sourceType: String
    var method: String?
    var flag: String?
    var description: String { "\(az)@\(Timestamp.format(bucket)) \(price) \(confidence) \(dataSource)/\(sourceType) \(method ?? "-") \(flag ?? "-")" }
}

enum SEFQuery {
    static func clean(_ store: PostgresStore, family: String) async throws -> [CleanRow] {
        try await store.withConnection { conn in
            try conn.query(
                """
                SELECT right(pool_id, 1), time_bucket, spot_price::text, confidence_score::text, data_source, source_type,
                       interpolation_method, quality_flag
                  FROM pricing_snapshots_clean WHERE pool_id LIKE $1 || '.%' ORDER BY pool_id, time_bucket
                """, [family]
            ).map {
                CleanRow(
                    az: try $0.decode(String.self, at: 0), bucket: try $0.decode(Date.self, at: 1), price: try $0.decode(String.self, at: 2),
                    confidence: try $0.decode(String.self, at: 3), dataSource: try $0.decode(String.self, at: 4),
                    sourceType: try $0.decode(String.self, at: 5), method: try $0.decodeIfPresent(String.self, at: 6),
                    flag: try $0.decodeIfPresent(String.self, at: 7))
            }
        }
    }

    static func count(_ store: PostgresStore, _ sql: String, _ params: [(any PGEncodable)?]) async throws -> Int {
        try await store.withConnection { conn in try conn.query(sql, params).first?.decode(Int.self, at: 0) ?? 0 }
    }

    static func rawCount(_ store: PostgresStore, family: String) async throws -> Int {
        try await count(store, "SELECT count(*) FROM pricing_submissions_raw WHERE pool_id LIKE $1 || '.%'", [family])
    }
}

/// Runs a `spotguard-sef` operator command against the test stack; returns its JSON output.
func sefCommand(_ name: String) async throws -> [String: Any] {
    let output = FileManager.default.temporaryDirectory.appendingPathComponent("sef-\(UUID()).json").path
    defer { try? FileManager.default.removeItem(atPath: output) }
    let status = try await ChildProcess(try TestStack.binDir + "/spotguard-sef", [name], output: output).exitStatus()
    #expect(status == 0, "spotguard-sef \(name) exited \(status)")
    let data = try Data(contentsOf: URL(fileURLWithPath: output))
    return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
}

/// N copies of `spotguard-sef serve`, stopped (SIGTERM, clean exit expected) after `body`.
func withSEF(copies: Int = 1, _ body: () async throws -> Void) async throws {
    var started: [ServiceProcess] = []
    do {
        for _ in 0..<copies { started.append(try await ServiceProcess.start("spotguard-sef", portVariable: "SPOTGUARD_SEF_PORT")) }
        try await body()
    } catch {
        for s in started { _ = await s.stop() }
        throw error
    }
    for s in started { #expect(await s.stop() == 0, "spotguard-sef did not shut down cleanly") }
}

extension IntegrationTests {
    @Suite struct SEFTests {
        /// A bucket-aligned time a few hours back, so the whole test lies in the past.
        static func base(hoursAgo: Double) -> Date {
            let t = Date().addingTimeInterval(-hoursAgo * 3600).timeIntervalSince1970
            return Date(timeIntervalSince1970: (t / 300).rounded(.down) * 300)
        }

        /// Seed 000's "Data Quality Testing" checklist, through HTTP → broker → SEF → PostgreSQL.
        @Test func dataQualityChecklist() async throws {
            let store = try await TestStack.store()
            try await ServiceProcess.withIngest { ingest in
                try await withSEF {
                    let fleet = try await PriceFleet.make(ingest)
                    let t0 = Self.base(hoursAgo: 3)
                    func clean() async throws -> [CleanRow] { try await SEFQuery.clean(store, family: fleet.family) }
                    func row(_ az: String, _ at: Date) async throws -> CleanRow? { try await clean().first { $0.az == az && $0.bucket == at } }

                    // 1. primary data → one clean row, measured, confidence 1.00
                    let first = UUID()
                    #expect(try await fleet.submit("a", 0.050, at: t0 + 10, id: first, onDemand: 0.096) == 202)
                    #expect(try await TestStack.eventually { try await row("a", t0) != nil })
                    let measured = try #require(try await row("a", t0))
                    #expect(measured.price == "0.050000" && measured.confidence == "1.00" && measured.dataSource == "measured")

                    // 2. duplicate data: the same submission again adds nothing; the same
                    //    observation under a new id is kept in the audit trail, marked duplicate
                    #expect(try await fleet.submit("a", 0.050, at: t0 + 10, id: first) == 202)
                    #expect(try await fleet.submit("a", 0.050, at: t0 + 10) == 202)
                    #expect(try await TestStack.eventually { try await SEFQuery.rawCount(store, family: fleet.family) == 2 })
                    let duplicates = try await SEFQuery.count(
                        store, "SELECT count(*) FROM pricing_submissions_raw WHERE pool_id = $1 AND is_duplicate", [fleet.pool("a")])
                    #expect(duplicates == 1)
                    #expect(
                        try await SEFQuery.count(
                            store, "SELECT count(*) FROM pricing_submissions_raw WHERE submission_id = $1", [first]) == 1)

                    // 3. replica data: accepted with confidence 0.95 in a bucket of its own...
                    #expect(try await fleet.submit("b", 0.041, at: t0 + 20, source: "replica-manual") == 202)
                    #expect(try await TestStack.eventually { try await row("b", t0)?.confidence == "0.95" })
                    #expect(try await row("b", t0)?.sourceType == "replica-manual")
                    // ...and beside a primary that disagrees by more than 0.5 %: averaged, flagged, reviewable
                    #expect(try await fleet.submit("c", 0.0456, at: t0 + 30) == 202)
                    #expect(try await fleet.submit("c", 0.0462, at: t0 + 31, source: "replica-automatic") == 202)
                    #expect(try await TestStack.eventually { try await row("c", t0)?.flag == "averaged_dual_source" })
                    #expect(try await row("c", t0)?.price == "0.045900")
                    #expect(try await row("c", t0)?.confidence == "0.90")
                    let review = try await SEFQuery.count(
                        store, "SELECT count(*) FROM pricing_quality_review WHERE kind = 'averaged_dual_source' AND pool_id = $1",
                        [fleet.pool("c")])
                    #expect(review == 1)

                    // 4. a 20-minute gap (seed: 0.050 at T, 0.060 at T+1200 s), filled on arrival
                    #expect(try await fleet.submit("a", 0.060, at: t0 + 1200) == 202)
                    #expect(try await TestStack.eventually { try await clean().filter { $0.az == "a" }.count == 5 })
                    // running the scan by hand finds nothing more to do
                    let scan = try await sefCommand("gap-scan")
                    #expect((scan["pools"] as? Int ?? 0) >= 1)
                    let filled = try await clean().filter { $0.az == "a" && $0.dataSource == "interpolated" }
                    #expect(filled.map(\.price) == ["0.052500", "0.055000", "0.057500"])
                    #expect(filled.map(\.bucket) == [t0 + 300, t0 + 600, t0 + 900])
                    #expect(filled.allSatisfy { $0.method == "weighted-average" && $0.confidence == "0.75" && $0.sourceType == "interpolated" })
                    // the transparency record and the flagged gap
                    let records = try await store.withConnection { conn in
                        try conn.query(
                            """
                            SELECT interpolation_method, price_before::text, price_after::text, interpolated_price::text, confidence_score < 1
                              FROM pricing_snapshots_interpolated WHERE pool_id = $1 ORDER BY time_bucket
                            """, [fleet.pool("a")]
                        ).map {
                            [
                                try $0.decode(String.self, at: 0), try $0.decode(String.self, at: 1), try $0.decode(String.self, at: 2),
                                try $0.decode(String.self, at: 3), try $0.decode(String.self, at: 4),
                            ]
                        }
                    }
                    #expect(
                        records == [
                            ["weighted-average", "0.050000", "0.060000", "0.052500", "t"],
                            ["weighted-average", "0.050000", "0.060000", "0.055000", "t"],
                            ["weighted-average", "0.050000", "0.060000", "0.057500", "t"],
                        ])
                    #expect(
                        try await SEFQuery.count(
                            store, "SELECT count(*) FROM pricing_gaps WHERE pool_id = $1 AND status = 'filled' AND duration_seconds = 1200",
                            [fleet.pool("a")]) == 1)

                    // a late measured value replaces its fill; the fills beside it are recomputed
                    #expect(try await fleet.submit("a", 0.058, at: t0 + 600) == 202)
                    #expect(try await TestStack.eventually { try await row("a", t0 + 600)?.dataSource == "measured" })
                    #expect(try await row("a", t0 + 300)?.price == "0.054000")
                    #expect(try await row("a", t0 + 300)?.method == "linear")
                    #expect(try await row("a", t0 + 900)?.price == "0.059000")
                    #expect(
                        try await SEFQuery.count(
                            store, "SELECT count(*) FROM pricing_snapshots_interpolated WHERE pool_id = $1", [fleet.pool("a")]) == 2)
                    // both halves are 10 minutes, below the 10-minute flag; what remains is the
                    // trailing gap the scan saw open since the last price
                    let gaps = try await store.withConnection { conn in
                        try conn.query("SELECT status, gap_start FROM pricing_gaps WHERE pool_id = $1", [fleet.pool("a")])
                            .map { "\(try $0.decode(String.self, at: 0))@\(try $0.decode(Date.self, at: 1).timeIntervalSince(t0))" }
                    }
                    #expect(gaps == ["open@1200.0"])

                    // 5. the ML dataset holds high-confidence rows only
                    let ml = try await sefCommand("refresh-ml")
                    #expect((ml["rows"] as? Int ?? 0) >= 3)
                    let confidences = try await store.withConnection { conn in
                        try conn.query(
                            "SELECT right(pool_id, 1), confidence_score::text FROM pricing_snapshots_ml WHERE pool_id LIKE $1 || '.%' ORDER BY 1, time_bucket",
                            [fleet.family]
                        )
                        .map { "\(try $0.decode(String.self, at: 0)):\(try $0.decode(String.self, at: 1))" }
                    }
                    #expect(confidences == ["a:1.00", "a:1.00", "a:1.00", "b:0.95"])
                }
            }
            await store.shutdown()
        }

        /// A gap too long for its method's data is left empty, recorded and alerted once.
        @Test func unfillableGapIsRecordedAndAlerted() async throws {
            let store = try await TestStack.store()
            let queue = TestStack.uniqueName("spotguard.sef-test")
            let topology = Topology.standard.adding(.init(name: queue, bindings: [RoutingKey.qualityAlert, RoutingKey.pricingCleaned]))
            try await withPublisher(topology: topology) { publisher in
                let inbox = Inbox()
                let consumer = BusConsumer(
                    endpoint: try TestStack.amqp, topology: topology, configuration: .init(queue: queue), deadLetters: publisher,
                    logger: TestStack.logger
                ) { inbox.append($0) }
                try await withConsumer(consumer) {
                    try await ServiceProcess.withIngest { ingest in
                        try await withSEF {
                            let fleet = try await PriceFleet.make(ingest)
                            let t0 = Self.base(hoursAgo: 6)
                            // 50 minutes without data and no peer pool: cross-pool has nothing to go on
                            #expect(try await fleet.submit("a", 0.03, at: t0) == 202)
                            #expect(try await fleet.submit("a", 0.04, at: t0 + 3000) == 202)
                            // more than 4 hours: blackout
                            #expect(try await fleet.submit("a", 0.05, at: t0 + 3000 + 15_000) == 202)
                            #expect(
                                try await TestStack.eventually {
                                    try await SEFQuery.count(store, "SELECT count(*) FROM pricing_gaps WHERE pool_id = $1", [fleet.pool("a")]) == 2
                                })
                            let reasons = try await store.withConnection { conn in
                                try conn.query("SELECT status, unfilled_reason FROM pricing_gaps WHERE pool_id = $1 ORDER BY gap_start", [fleet.pool("a")])
                                    .map { "\(try $0.decode(String.self, at: 0))/\(try $0.decode(String.self, at: 1))" }
                            }
                            #expect(reasons == ["unfilled/no_peer_data", "unfilled/blackout"])
                            #expect(
                                try await SEFQuery.count(
                                    store, "SELECT count(*) FROM pricing_snapshots_clean WHERE pool_id = $1 AND data_source = 'interpolated'",
                                    [fleet.pool("a")]) == 0)
                            // each alerted once on the bus, even after a rescan
                            _ = try await sefCommand("gap-scan")
                            func alerts() -> [QualityAlert] {
                                inbox.all.filter { $0.routingKey == RoutingKey.qualityAlert }
                                    .compactMap { try? $0.decode(QualityAlert.self).payload }.filter { $0.poolId?.rawValue == fleet.pool("a") }
                            }
                            #expect(await TestStack.eventually { alerts().count == 2 })
                            try await Task.sleep(for: .seconds(2))  // the relay polls every second: a repeat would be here by now
                            #expect(alerts().count == 2)
                            #expect(Set(alerts().map { $0.details["reason"] ?? "" }) == ["no_peer_data", "blackout"])
                            // and downstream saw the clean prices
                            let cleaned = inbox.all.filter { $0.routingKey == RoutingKey.pricingCleaned }
                                .compactMap { try? $0.decode(PricingCleaned.self).payload.prices }.flatMap { $0 }
                                .filter { $0.poolId.rawValue == fleet.pool("a") }
                            #expect(Set(cleaned.map(\.spotPrice)) == [0.03, 0.04, 0.05])
                        }
                    }
                }
                try await publisher.deleteQueue(queue)
            }
            await store.shutdown()
        }

        /// The operator controls over HTTP: refused without the admin token, run with it.
        @Test func adminEndpointsNeedTheAdminToken() async throws {
            let admin = try TestStack.env.require("SPOTGUARD_ADMIN_TOKEN")
            let sef = try await ServiceProcess.start("spotguard-sef", portVariable: "SPOTGUARD_SEF_PORT")
            try await ServiceProcess.with(sef) { sef in
                let refused = try await sef.send("POST", "/admin/gap-scan", token: "sgt_not_the_admin")
                #expect(refused.status == 401)
                #expect(refused.errorCode == "unauthorized")
                #expect(try await sef.send("GET", "/admin/review").status == 401)
                let scan = try await sef.send("POST", "/admin/gap-scan", token: admin)
                #expect(scan.status == 200)
                #expect(scan.json["pools"] is Int)
                let ml = try await sef.send("POST", "/admin/refresh-ml", token: admin)
                #expect(ml.status == 200)
                #expect(ml.json["rows"] is Int)
                let review = try await sef.send("GET", "/admin/review", token: admin)
                #expect(review.status == 200)
                #expect(review.json["items"] is [Any])
            }
        }

        /// Heartbeats update the agent and its instance; only newer ones count; a status
        /// change is recorded once; an instance switched away from no longer counts.
        @Test func heartbeatsUpdateAgentsAndRecordTransitions() async throws {
            let store = try await TestStack.store()
            try await ServiceProcess.withIngest { ingest in
                try await withSEF {
                    let fleet = try await PriceFleet.make(ingest)
                    let now = Date()
                    let instance = "i-" + String(UUID().uuidString.lowercased().filter(\.isHexDigit).prefix(17))
                    func beat(_ status: String, at: Date) async throws -> Int {
                        try await ingest.send(
                            "POST", "/api/agents/\(fleet.agent)/heartbeat", token: fleet.token,
                            json: """
                                {"status": "\(status)", "instance_id": "\(instance)", "mode": "spot", "pool_id": "\(fleet.pool("b"))",
                                 "observed_at": "\(Timestamp.format(at))"}
                                """
                        ).status
                    }
                    func agent() async throws -> [String] {
                        try await store.withConnection { conn in
                            try conn.query(
                                "SELECT status, coalesce(instance_id, '-'), coalesce(current_pool_id, '-'), coalesce(last_heartbeat_at::text, '-') FROM agents WHERE id = $1::uuid",
                                [fleet.agent]
                            )
                            .first.map { row in try (0..<4).map { try row.decode(String.self, at: $0) } } ?? []
                        }
                    }
                    #expect(try await beat("switching", at: now - 60) == 202)
                    #expect(try await TestStack.eventually { try await agent().first == "switching" })
                    #expect(try await agent()[1...2] == [instance, fleet.pool("b")])
                    #expect(
                        try await SEFQuery.count(
                            store, "SELECT count(*) FROM instances WHERE id = $3 AND agent_id = $1::uuid AND current_pool_id = $2",
                            [fleet.agent, fleet.pool("b"), instance]) == 1)
                    // an older heartbeat arriving late changes nothing
                    #expect(try await beat("offline", at: now - 120) == 202)
                    #expect(try await beat("online", at: now - 30) == 202)
                    #expect(try await TestStack.eventually { try await agent().first == "online" })
                    let events = try await store.withConnection { conn in
                        try conn.query(
                            "SELECT details->>'from', details->>'to' FROM system_events WHERE agent_id = $1::uuid AND event_type = 'agent.status_changed' ORDER BY id",
                            [fleet.agent]
                        ).map { "\(try $0.decode(String.self, at: 0))->\(try $0.decode(String.self, at: 1))" }
                    }
                    #expect(events == ["online->switching", "switching->online"])

                    // after a failover away from this instance, its last heartbeats no longer
                    // speak for the agent (a later one from the new primary still does)
                    let replacement = "i-" + String(UUID().uuidString.lowercased().filter(\.isHexDigit).prefix(17))
                    _ = try await store.withConnection { conn in
                        try conn.execute(
                            """
                            INSERT INTO switches (client_id, agent_id, old_instance_id, new_instance_id, event_trigger, initiated_at)
                            SELECT client_id, id, $2, $3, 'failover', now() FROM agents WHERE id = $1::uuid
                            """, [fleet.agent, instance, replacement])
                    }
                    func beatAs(_ instance: String?, at: Date) async throws -> Int {
                        let field = instance.map { #""instance_id": "\#($0)", "# } ?? ""
                        return try await ingest.send(
                            "POST", "/api/agents/\(fleet.agent)/heartbeat", token: fleet.token,
                            json: """
                                {\(field)"status": "online", "observed_at": "\(Timestamp.format(at))"}
                                """
                        ).status
                    }
                    #expect(try await beatAs(replacement, at: now - 10) == 202)
                    #expect(try await TestStack.eventually { try await agent()[1] == replacement })
                    #expect(try await beatAs(instance, at: now - 5) == 202)  // the dying primary, newer
                    #expect(try await beatAs(nil, at: now - 2) == 202)  // the new primary, without its id
                    #expect(
                        try await TestStack.eventually {
                            try await SEFQuery.count(
                                store, "SELECT count(*) FROM agents WHERE id = $1::uuid AND last_heartbeat_at >= $2", [fleet.agent, now - 3]) == 1
                        })
                    #expect(try await agent()[1] == replacement, "the replaced instance's heartbeat did not map the agent back")
                }
            }
            await store.shutdown()
        }
    }
}
