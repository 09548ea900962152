import Foundation
import ReplicaApp
import SpotRuntime
import SpotStore
import Testing
import ToolSupport

extension IntegrationTests {
    /// Reliability plan F12: the reconciler runs in one coordinator copy at a time, and a copy
    /// that lost the lead cannot write.
    @Suite struct LeadershipTests {
        struct Lead {
            var holder: String
            var epoch: Int64
        }

        func leadership(_ store: PostgresStore) async throws -> Lead? {
            let rows = try await store.withConnection { conn in
                try conn.query("SELECT holder, epoch FROM coordinator_leadership WHERE expires_at > now()")
            }
            guard let row = rows.first else { return nil }
            return Lead(holder: try row.decode(String.self, at: 0), epoch: try row.decode(Int64.self, at: 1))
        }

        /// The fence itself, on two stores standing for two copies: while A leads, B cannot take
        /// over; A paused inside a transaction past its lease loses that transaction (the
        /// idle-in-transaction timeout), B takes over with the next epoch, and A's writes — the
        /// rest of that transaction and any later one — are refused; B's pass.
        @Test func aStaleEpochCannotWrite() async throws {
            var config = try TestStack.postgres
            config.poolSize = 1
            config.idleInTransactionTimeoutMs = 1500
            let storeA = PostgresStore(configuration: config, logger: TestStack.logger)
            let storeB = PostgresStore(configuration: config, logger: TestStack.logger)
            let check = try await TestStack.store(poolSize: 1)
            let table = "fenced_probe_\(UInt32.random(in: 0...UInt32.max))"
            try await check.withConnection { try $0.executeScript("CREATE TABLE \(table) (writer text NOT NULL)") }
            // a lease left by an earlier test's copy must lapse first
            let a = Leadership(store: storeA, lease: .seconds(1), holder: "fence-test-a-\(UUID())")
            let b = Leadership(store: storeB, lease: .seconds(1), holder: "fence-test-b-\(UUID())")
            let aLeads = await TestStack.eventually { await a.renew() }
            #expect(aLeads)
            let first = try #require(a.current)
            let bEarly = await b.renew()
            #expect(!bEarly, "B took the lead while A's lease ran")

            // A begins a fenced write and stalls inside the transaction
            try await storeA.withConnection { conn in
                _ = try conn.execute("BEGIN")
                try a.fence(on: conn)
                _ = try conn.execute("INSERT INTO \(table) VALUES ('a, before the pause')")
            }
            // B takes over once A's lease has run out and A's transaction is gone
            let bLeads = await TestStack.eventually(timeout: .seconds(20)) { await b.renew() }
            #expect(bLeads)
            #expect((b.current ?? 0) > first, "the takeover got a new epoch")
            // A wakes: the rest of its transaction fails (the server ended it) …
            await #expect(throws: PGError.self) {
                try await storeA.withConnection { conn in
                    _ = try conn.execute("INSERT INTO \(table) VALUES ('a, after the pause')")
                    _ = try conn.execute("COMMIT")
                }
            }
            // … and so does its next pass: the fence refuses its epoch
            await #expect(throws: Leadership.Stale.self) {
                try await storeA.transaction { conn in
                    try a.fence(on: conn)
                    _ = try conn.execute("INSERT INTO \(table) VALUES ('a, next pass')")
                }
            }
            #expect(a.current == nil, "A knows it no longer leads")
            try await storeB.transaction { conn in
                try b.fence(on: conn)
                _ = try conn.execute("INSERT INTO \(table) VALUES ('b')")
            }
            let writers = try await check.withConnection { conn in try conn.query("SELECT writer FROM \(table)").map { try $0.decode(String.self, at: 0) } }
            #expect(writers == ["b"])
            await b.resign()
            try await check.withConnection { try $0.executeScript("DROP TABLE \(table)") }
            await storeA.shutdown()
            await storeB.shutdown()
            await check.shutdown()
        }

        /// Two coordinator processes reconciling every second with a 3 s lease. The leader is
        /// paused (SIGSTOP) for longer than its lease: the other takes over with the next epoch and
        /// gives a manual-mode agent its replica; the old leader, resumed (SIGCONT), stays out —
        /// its lead is gone, the agent still has exactly one replica and one launch command.
        @Test func aPausedLeaderIsReplacedAndStaysOut() async throws {
            try await replaceTheLeader(copies: [[:], [:]]) { old, _ in
                old.process.signal(SIGSTOP)
                return { old.process.signal(SIGCONT) }
            }
        }

        /// The same with a network partition instead of a pause: each copy reaches the database
        /// through a TCP proxy of its own, and the leader's turns into a black hole (connections
        /// accepted, nothing forwarded) for longer than its lease, while the process runs on.
        @Test func aLeaderCutOffFromTheDatabaseIsReplacedAndStaysOut() async throws {
            let url = try #require(URLComponents(string: try TestStack.env.require("SPOTGUARD_DATABASE_URL")))
            let proxies = try (0..<2).map { _ in try FaultProxy(upstreamPort: try #require(url.port)) }
            defer { for proxy in proxies { proxy.stop() } }
            let copies = proxies.map { proxy in
                var through = url
                through.port = proxy.port
                // a black hole noticed within a few seconds, not the default 35
                return ["SPOTGUARD_DATABASE_URL": through.string!, "SPOTGUARD_DB_STATEMENT_TIMEOUT_MS": "2000"]
            }
            try await replaceTheLeader(copies: copies) { _, index in
                proxies[index].fault = .blackHole
                return { proxies[index].fault = .none }
            }
        }

        /// Two coordinator copies (each with its own extra environment); `cutOff` takes the
        /// leading one out of play and returns what brings it back.
        func replaceTheLeader(
            copies: [[String: String]], cutOff: (ServiceProcess, Int) async throws -> () async throws -> Void
        ) async throws {
            let store = try await TestStack.store()
            let env = ["SPOTGUARD_REPLICAS_RECONCILE_SECONDS": "1", "SPOTGUARD_REPLICAS_LEASE_SECONDS": "3"]
            try await withReplicaStack(copies: copies.count, environment: env, perCopy: copies) { ingest, coordinators in
                var lead: Lead?
                let led = try await TestStack.eventually(timeout: .seconds(20)) {
                    lead = try await leadership(store)
                    guard let holder = lead?.holder else { return false }
                    return coordinators.contains { holder.hasSuffix("-\($0.process.pid)") }
                }
                #expect(led)
                let before = try #require(lead)
                let leaderIndex = try #require(coordinators.firstIndex { before.holder.hasSuffix("-\($0.process.pid)") })
                let old = coordinators[leaderIndex]
                let other = coordinators[1 - leaderIndex]
                let bringBack = try await cutOff(old, leaderIndex)
                let cut = ContinuousClock.now
                var after: Lead?
                let tookOver = try await TestStack.eventually(timeout: .seconds(20)) {
                    after = try await leadership(store)
                    return after?.holder.hasSuffix("-\(other.process.pid)") == true
                }
                print("coordinator leader cut off; the other copy took over after \(ContinuousClock.now - cut)")
                #expect(tookOver)
                #expect((after?.epoch ?? 0) > before.epoch)

                // work only the reconciler does, while the old leader is out
                let agent = try await ReplicaAgent.make(ingest, store: store)
                _ = try await store.withConnection { conn in
                    try conn.execute(
                        "UPDATE agents SET auto_switch_enabled = false, auto_terminate_enabled = false, manual_replica_enabled = true WHERE id = $1::uuid",
                        [agent.id])
                }
                func launches() async throws -> Int {
                    try await SEFQuery.count(store, "SELECT count(*) FROM commands WHERE agent_id = $1::uuid AND command_type = 'launch_replica'", [agent.id])
                }
                let launched = try await TestStack.eventually { try await launches() == 1 }
                #expect(launched)
                try await bringBack()
                // the old copy's view: not leading (its renewals fail while the other holds the lease)
                var fenced = "?"
                let stepsDown = try await TestStack.eventually(timeout: .seconds(20)) {
                    let metrics = String(decoding: try await old.send("GET", "/metrics").body, as: UTF8.self).split(separator: "\n")
                    fenced = metrics.first { $0.hasPrefix("spotguard_replicas_fenced_writes_total ") }.map(String.init) ?? "none"
                    return metrics.filter { $0.hasPrefix("spotguard_replicas_leader ") }.contains { Double($0.split(separator: " ").last ?? "") == 0 }
                }
                print("the old leader's fenced writes: \(fenced)")
                #expect(stepsDown, "the old leader still believes it leads")
                let still = try await leadership(store)
                #expect(still?.holder.hasSuffix("-\(other.process.pid)") == true)
                #expect(try await launches() == 1, "a second launch for the same agent")
                let active = try await SEFQuery.count(
                    store, "SELECT count(*) FROM replica_instances WHERE agent_id = $1::uuid AND replica_type = 'manual' AND is_active", [agent.id])
                #expect(active == 1)
            }
            await store.shutdown()
        }
    }
}
