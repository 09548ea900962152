import Foundation
import SpotBus
import SpotModels
import SpotRuntime
import SpotStore
import Synchronization
import Testing

extension IntegrationTests {
    @Suite struct OutageTests {
        /// How long the database is away: a minute, as an operator's failover or a restart with
        /// crash recovery can take.
        static let outage: Duration = .seconds(60)

        /// A minute without PostgreSQL while agents keep reporting switches: the decision engine
        /// and the notifier hold what they consume instead of dead-lettering it, so after the
        /// database is back every switch report is in the ledger once and has its notification
        /// once; nothing reaches the dead letters. The coordinator answers a call it cannot
        /// serve with 503 `database_unavailable` at once rather than leaving the caller to time out.
        /// Ingest's caches last 10 s here, so the outage outlasts them: it goes on accepting
        /// reports with what it last knew (a revocation would still reach it over the bus).
        @Test func aDatabaseOutageLosesNoSwitchReportOrNotification() async throws {
            let store = try await TestStack.store()
            let ingest = try await ServiceProcess.start(
                "spotguard-ingest", portVariable: "SPOTGUARD_INGEST_PORT", environment: ["SPOTGUARD_TOKEN_CACHE_SECONDS": "10"])
            try await ServiceProcess.with(ingest) { ingest in
                let fleet = try await PriceFleet.make(ingest)
                let decisions = try await ServiceProcess.start("spotguard-decisions", portVariable: "SPOTGUARD_DECISIONS_PORT")
                let notifier = try await ServiceProcess.start("spotguard-notifier", portVariable: "SPOTGUARD_NOTIFIER_PORT")
                let replicas = try await ServiceProcess.start("spotguard-replicas", portVariable: "SPOTGUARD_REPLICAS_PORT")
                try await ServiceProcess.with(decisions) { _ in
                    try await ServiceProcess.with(notifier) { _ in
                        try await ServiceProcess.with(replicas) { _ in
                            var instance = "i-0a1b2c3d4e5f60718"
                            var reportIds: [UUID] = []
                            func switchReport() async throws -> Int {
                                let next = ReplicaAgent.randomInstance()
                                let id = UUID()
                                let now = Date()
                                let status = try await ingest.send(
                                    "POST", "/api/agents/\(fleet.agent)/switch-report", token: fleet.token,
                                    json: """
                                        {"report_id": "\(id)", "old_instance": {"instance_id": "\(instance)", "mode": "spot", "pool_id": "\(fleet.pool("a"))"},
                                         "new_instance": {"instance_id": "\(next)", "mode": "spot", "pool_id": "\(fleet.pool("b"))"},
                                         "timing": {"initiated_at": "\(Timestamp.format(now - 60))", "instance_ready_at": "\(Timestamp.format(now))"},
                                         "pricing": {"on_demand": 0.096, "old_spot": 0.040, "new_spot": 0.030}}
                                        """
                                ).status
                                if status == 202 {
                                    reportIds.append(id)
                                    instance = next
                                }
                                return status
                            }
                            func recorded() async throws -> Int {
                                try await SEFQuery.count(store, "SELECT count(*) FROM switches WHERE agent_id = $1::uuid", [fleet.agent])
                            }
                            func notified() async throws -> Int {
                                try await SEFQuery.count(
                                    store, "SELECT count(*) FROM notifications WHERE agent_id = $1::uuid AND kind = 'switch_completed'", [fleet.agent])
                            }
                            // the caches of ingest are warm and both consumers work
                            #expect(try await switchReport() == 202)
                            #expect(try await TestStack.eventually { try await (recorded(), notified()) == (1, 1) })

                            try await TestStack.stack("db-stop")
                            let outageEnds = ContinuousClock.now + Self.outage
                            do {
                                let started = ContinuousClock.now
                                let call = try await ingest.send("GET", "/api/agents/\(fleet.agent)/replicas", token: fleet.token)
                                #expect(call.status == 503 && call.errorCode == "database_unavailable", "\(call.status) \(call.errorCode ?? "-")")
                                #expect(ContinuousClock.now - started < .seconds(5))
                                // reports keep coming through the outage: ingest accepts them from its caches
                                while ContinuousClock.now < outageEnds {
                                    #expect(try await switchReport() == 202)
                                    try await Task.sleep(for: .seconds(2))
                                }
                            } catch {
                                try await TestStack.stack("db-start")
                                throw error
                            }
                            try await TestStack.stack("db-start")

                            let sent = reportIds.count
                            #expect(sent > 20)
                            // the test's own pooled connections died with the server: the first reads may fail
                            #expect(
                                await TestStack.eventually(timeout: .seconds(60)) {
                                    ((try? await recorded()) ?? -1, (try? await notified()) ?? -1) == (sent, sent)
                                })
                            #expect(try await recorded() == sent, "each switch report in the ledger once")
                            #expect(try await notified() == sent, "each switch report notified once")
                            let ids = Set(reportIds.map { $0.uuidString.lowercased() })
                            let dead = try await DeadLetters.list(endpoint: try TestStack.amqp, logger: TestStack.logger)
                                .filter { $0.messageId.map(ids.contains) ?? false }
                            #expect(dead.isEmpty, "dead-lettered: \(dead.map { "\($0.queue ?? "-"): \($0.reason ?? "-")" })")
                            // what an operator would run to see it
                            for executable in ["spotguard-decisions", "spotguard-notifier"] {
                                let listed = try await runCommand(executable, ["dead-letters", "list"])
                                #expect(listed.status == 0)
                                #expect(!listed.lines.contains { line in ids.contains { line.contains($0) } })
                            }
                            // an action that does not exist is a bad invocation: refused, exit 64 (EX_USAGE)
                            #expect(try await runCommand("spotguard-decisions", ["dead-letters", "resend"]).status == 64)
                        }
                    }
                }
            }
            await store.shutdown()
        }

        /// What one agent request saw while the broker misbehaved.
        struct Outcome: Sendable {
            var phase: String
            var status: Int
            var seconds: Double
            var id: UUID
        }

        /// Agents keep reporting while the broker is paused (SIGSTOP) for 30 s and then raises its
        /// memory alarm for 15 s: ingest answers every request within 6 s (its publish deadline is
        /// 5 s) — 503 with Retry-After while the broker cannot take the report, and at once while
        /// the broker says it blocks publishing — takes reports again after each fault, and every
        /// report it answered 202 reaches the SEF's tables.
        @Test func aPausedOrAlarmedBrokerGetsEveryRequestAnsweredInTime() async throws {
            let store = try await TestStack.store()
            let log = OutcomeLog()
            try await ServiceProcess.withIngest { ingest in
                try await withSEF {
                    let fleet = try await PriceFleet.make(ingest)
                    let lane: @Sendable (Int) async -> Void = { n in
                        var price = 0.03 + Double(n) / 1000
                        while !log.stopped {
                            let id = UUID()
                            let now = log.phase
                            let started = ContinuousClock.now
                            let status = (try? await fleet.report([("a", price), ("b", price + 0.001)], at: Date(), id: id)) ?? -1
                            let took = ContinuousClock.now - started
                            log.append(
                                Outcome(
                                    phase: now, status: status, seconds: Double(took.components.seconds) + Double(took.components.attoseconds) / 1e18, id: id))
                            price += 0.000001
                            if status != 202 { try? await Task.sleep(for: .milliseconds(200)) }
                        }
                    }
                    func acceptedSince(_ count: Int) -> Bool { log.all.dropFirst(count).contains { $0.status == 202 } }
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        // six: the test client keeps at most six connections to one host, more would queue on its side
                        for n in 0..<6 { group.addTask { await lane(n) } }
                        try await Task.sleep(for: .seconds(3))

                        /// Runs `fault` for `seconds` under load, then expects a report accepted again.
                        func underLoad(_ name: String, _ start: String, _ end: String, seconds: Int) async throws {
                            log.phase = name
                            try await TestStack.stack(start)
                            try? await Task.sleep(for: .seconds(seconds))
                            try await TestStack.stack(end)
                            log.phase = "after-\(name)"
                            let mark = log.all.count
                            #expect(await TestStack.eventually(timeout: .seconds(30)) { acceptedSince(mark) }, "no report accepted after \(name)")
                        }
                        try await underLoad("paused", "broker-pause", "broker-resume", seconds: 30)
                        try await underLoad("alarm", "broker-alarm-on", "broker-alarm-off", seconds: 15)
                        log.stopped = true
                        try await group.waitForAll()
                    }
                    let all = log.all
                    let slowest = all.map(\.seconds).max() ?? 0
                    #expect(slowest < 6, "slowest answer \(slowest) s")
                    #expect(all.allSatisfy { $0.status == 202 || $0.status == 503 }, "statuses \(Set(all.map(\.status)))")
                    #expect(all.contains { $0.phase == "paused" && $0.status == 503 })
                    // while the broker blocks publishing, ingest says so at once
                    let alarmed = all.filter { $0.phase == "alarm" && $0.status == 503 }.map(\.seconds).sorted()
                    #expect(
                        alarmed.count > 20 && alarmed[alarmed.count / 2] < 1,
                        "alarm answers: \(alarmed.count), median \(alarmed.isEmpty ? -1 : alarmed[alarmed.count / 2]) s")
                    // nothing answered 202 is lost
                    let accepted = Set(all.filter { $0.status == 202 }.map(\.id))
                    func stored() async throws -> Int {
                        try await SEFQuery.count(
                            store, "SELECT count(DISTINCT report_id) FROM spot_price_snapshots WHERE report_id = ANY($1::uuid[])", [PGArray(Array(accepted))])
                    }
                    #expect(await TestStack.eventually(timeout: .seconds(60)) { ((try? await stored()) ?? 0) == accepted.count })
                    let slow = all.sorted { a, b in a.seconds > b.seconds }.prefix(8).map { o in "\(o.phase) \(o.status) \(o.seconds)" }
                    print(
                        "[outage] broker pause and alarm: \(all.count) requests, \(accepted.count) accepted, slowest \(slowest) s, alarm median \(alarmed.isEmpty ? -1 : alarmed[alarmed.count / 2]) s; over 5 s: \(slow)"
                    )
                }
            }
            await store.shutdown()
        }
    }
}

/// Outcomes of concurrent requests and the phase they ran in.
final class OutcomeLog: Sendable {
    private let state = Mutex<(outcomes: [IntegrationTests.OutageTests.Outcome], phase: String, stopped: Bool)>(([], "steady", false))

    func append(_ o: IntegrationTests.OutageTests.Outcome) { state.withLock { $0.outcomes.append(o) } }
    var all: [IntegrationTests.OutageTests.Outcome] { state.withLock { $0.outcomes } }
    var phase: String {
        get { state.withLock { $0.phase } }
        set { state.withLock { $0.phase = newValue } }
    }
    var stopped: Bool {
        get { state.withLock { $0.stopped } }
        set { state.withLock { $0.stopped = newValue } }
    }
}
