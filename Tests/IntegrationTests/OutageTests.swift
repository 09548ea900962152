import Foundation
import SpotBus
import SpotModels
import SpotRuntime
import SpotStore
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
        @Test func aDatabaseOutageLosesNoSwitchReportOrNotification() async throws {
            let store = try await TestStack.store()
            try await ServiceProcess.withIngest { ingest in
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
                                let status = try await ingest.send("POST", "/api/agents/\(fleet.agent)/switch-report", token: fleet.token, json: """
                                    {"report_id": "\(id)", "old_instance": {"instance_id": "\(instance)", "mode": "spot", "pool_id": "\(fleet.pool("a"))"},
                                     "new_instance": {"instance_id": "\(next)", "mode": "spot", "pool_id": "\(fleet.pool("b"))"},
                                     "timing": {"initiated_at": "\(Timestamp.format(now - 60))", "instance_ready_at": "\(Timestamp.format(now))"},
                                     "pricing": {"on_demand": 0.096, "old_spot": 0.040, "new_spot": 0.030}}
                                    """).status
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
                            #expect(await TestStack.eventually(timeout: .seconds(60)) {
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
                            #expect(try await runCommand("spotguard-decisions", ["dead-letters", "resend"]).status == 2)
                        }
                    }
                }
            }
            await store.shutdown()
        }
    }
}
