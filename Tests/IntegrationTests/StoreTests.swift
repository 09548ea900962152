import Foundation
import SpotFleet
import SpotModels
import SpotRuntime
import Testing
import ToolSupport

@testable import SpotStore

extension IntegrationTests {
    @Suite struct StoreTests {
        /// A primary and its standbys are one URL; several servers mean "the one that takes writes".
        @Test func aMultiServerURLNamesEveryServer() throws {
            let c = try #require(PostgresConfiguration(url: "postgresql://svc:p%40ss@pg-1:5432,pg-2,10.0.0.3:6432/fleet?sslmode=verify-full"))
            #expect(c.servers.map(\.host) == ["pg-1", "pg-2", "10.0.0.3"] && c.servers.map(\.port) == [5432, 5432, 6432])
            #expect(c.user == "svc" && c.password == "p@ss" && c.database == "fleet")
            let keywords = Dictionary(c.keywords, uniquingKeysWith: { a, _ in a })
            #expect(keywords["host"] == "pg-1,pg-2,10.0.0.3" && keywords["port"] == "5432,5432,6432")
            #expect(keywords["target_session_attrs"] == "read-write" && keywords["sslmode"] == "verify-full")
            #expect(PostgresConfiguration(url: "postgresql://u@h/db?target_session_attrs=any")?.targetSessionAttributes == "any")
            #expect(PostgresConfiguration(url: "postgresql://u@h/db")?.targetSessionAttributes == nil)
            #expect(PostgresConfiguration(url: "postgresql://u@h/db?connect_timeout=1") == nil, "a setting not passed on is refused")
            #expect(PostgresConfiguration(url: "postgresql://u@h1,,h2/db") == nil)
        }

        /// A server that does not answer is passed over; a connection that finds itself on a
        /// read-only server (a standby after a failover) is dropped, and the next unit of work
        /// connects again.
        @Test func aDeadServerIsPassedOverAndAReadOnlySessionIsLeft() async throws {
            var config = try TestStack.postgres
            config.servers.insert(.init(host: "127.0.0.1", port: 1), at: 0)
            config.poolSize = 1
            let store = PostgresStore(configuration: config, logger: TestStack.logger)
            let backend = try await store.withConnection { conn in try conn.query("SELECT pg_backend_pid()")[0].decode(Int.self, at: 0) }
            let refused = await #expect(throws: PGError.self) {
                try await store.withConnection { conn in
                    try conn.execute("SET default_transaction_read_only = on")
                    try conn.execute("CREATE TEMPORARY TABLE should_not_exist (x int)")
                }
            }
            #expect(refused?.sqlState == "25006" && refused?.isTransient == true)
            let after = try await store.withConnection { conn in
                (
                    try conn.query("SELECT pg_backend_pid()")[0].decode(Int.self, at: 0),
                    try conn.query("SHOW transaction_read_only")[0].decode(String.self, at: 0)
                )
            }
            #expect(after.0 != backend, "a new session")
            #expect(after.1 == "off")
            await store.shutdown()
        }

        /// libpq keeps its buffers at the largest message until the connection closes: a
        /// connection that read a 2 MiB value is closed once idle (and opened again for the
        /// next job); one that moved only small messages stays open.
        @Test func aConnectionThatMovedALargeMessageIsClosedWhenIdle() async throws {
            var config = try TestStack.postgres
            config.poolSize = 1
            config.idleRelease = .milliseconds(200)
            let store = PostgresStore(configuration: config, logger: TestStack.logger)
            let watcher = try await TestStack.store()
            func pid() async throws -> Int { try await store.withConnection { try $0.query("SELECT pg_backend_pid()")[0].decode(Int.self, at: 0) } }
            func connected(_ pid: Int) async throws -> Bool {
                try await watcher.withConnection { try $0.query("SELECT count(*)::int FROM pg_stat_activity WHERE pid = $1", [pid])[0].decode(Int.self, at: 0) }
                    == 1
            }
            let small = try await pid()
            try await Task.sleep(for: .seconds(1))  // five idle periods
            let (stillConnected, samePid) = (try await connected(small), try await pid())
            #expect(stillConnected && samePid == small, "a connection of small messages was closed")

            let length = try await store.withConnection { try $0.query("SELECT repeat('x', 2 << 20)")[0].decode(String.self, at: 0).utf8.count }
            #expect(length == 2 << 20)
            #expect(try await TestStack.eventually(timeout: .seconds(10)) { try await !connected(small) }, "the connection that read 2 MiB stayed open")
            let next = try await pid()
            #expect(next != small, "the next job opens a new connection")
            await store.shutdown()
        }

        @Test func twoProcessesMigratingAtOnceApplyEachMigrationOnce() async throws {
            // a fresh database, migrated by two `spotguard-ingest migrate` processes started together
            let admin = try await TestStack.store(poolSize: 1)
            let db = "spotguard_migrate_\(UInt32.random(in: 0...UInt32.max))"
            try await admin.withConnection { try $0.executeScript("CREATE DATABASE \(db)") }
            var env = ProcessInfo.processInfo.environment
            var config = try TestStack.postgres
            env["SPOTGUARD_DATABASE_URL"] = "postgresql://\(config.user)@\(config.host):\(config.port)/\(db)"
            env["SPOTGUARD_LOG_LEVEL"] = "warning"
            let binary = try TestStack.binDir + "/spotguard-ingest"
            let processes = try (0..<2).map { _ in try ChildProcess(binary, ["migrate"], environment: env) }
            var statuses: [Int32] = []
            for p in processes { statuses.append(await p.exitStatus()) }
            #expect(statuses == [0, 0])

            config.database = db
            config.poolSize = 1
            let store = PostgresStore(configuration: config, logger: TestStack.logger)
            let rows = try await store.withConnection { try $0.query("SELECT version, count(*) FROM schema_migrations GROUP BY version") }
            let expected = try Migration.bundled().map(\.version)
            #expect(try rows.map { try $0.decode(Int.self, at: 0) }.sorted() == expected)
            #expect(try rows.allSatisfy { try $0.decode(Int.self, at: 1) == 1 })
            let tables = try await store.withConnection {
                try $0.query("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")[0].decode(Int.self, at: 0)
            }
            #expect(tables >= 22)
            await store.shutdown()
            try await admin.withConnection { try $0.executeScript("DROP DATABASE \(db)") }
            await admin.shutdown()
        }

        @Test func serializationFailureRunsTheTransactionAgain() async throws {
            let store = try await TestStack.store(poolSize: 2)
            let table = "retry_probe_\(UInt32.random(in: 0...UInt32.max))"
            try await store.withConnection { try $0.executeScript("CREATE TABLE \(table) (id serial PRIMARY KEY, n integer NOT NULL)") }
            // Write skew: both transactions read the table, wait for each other, then insert a row
            // derived from what they read. SERIALIZABLE lets only one commit; the other must run again.
            let attempts = Counter()
            let bothRead = DispatchGroup()
            bothRead.enter()
            bothRead.enter()
            let firstRound = Marks()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<2 {
                    group.addTask {
                        try await store.transaction(isolation: .serializable) { conn in
                            attempts.increment()
                            let n = try conn.query("SELECT count(*) FROM \(table)")[0].decode(Int.self, at: 0)
                            if firstRound.markOnce(worker) {
                                bothRead.leave()
                                _ = bothRead.wait(timeout: .now() + 5)
                            }
                            try conn.execute("INSERT INTO \(table) (n) VALUES ($1)", [n + 1])
                        }
                    }
                }
                try await group.waitForAll()
            }
            let values = try await store.withConnection { conn in
                try conn.query("SELECT n FROM \(table) ORDER BY n").map { try $0.decode(Int.self, at: 0) }
            }
            #expect(values == [1, 2])
            #expect(attempts.current == 3)
            try await store.withConnection { try $0.executeScript("DROP TABLE \(table)") }
            await store.shutdown()
        }

        @Test func copyWritesEveryRowExactly() async throws {
            let store = try await TestStack.store()
            let table = "copy_probe_\(UInt32.random(in: 0...UInt32.max))"
            try await store.withConnection {
                try $0.executeScript("CREATE TABLE \(table) (id integer PRIMARY KEY, label text, price numeric(12,6), seen timestamptz)")
            }
            let tricky = ["plain", "tab\there", "new\nline", #"back\slash"#, "ünïcødé ✓", "\\N", "'; DROP TABLE agents; --"]
            let start = Date(timeIntervalSince1970: 1_704_067_200)
            func expectedPrice(_ i: Int) -> Double { Double(i % 1000) / 10_000 + 0.001 }
            func expectedLabel(_ i: Int) -> String? { i % 10 == 9 ? nil : tricky[i % tricky.count] }
            var rows: [[(any PGEncodable)?]] = []
            for i in 0..<20_000 {
                let label: (any PGEncodable)? = expectedLabel(i)
                rows.append([i, label, expectedPrice(i), start.addingTimeInterval(Double(i) * 0.5)])
            }
            let batch = rows
            let written = try await store.withConnection { try $0.copy(into: table, columns: ["id", "label", "price", "seen"], rows: batch) }
            #expect(written == 20_000)
            let back = try await store.withConnection { conn in
                try conn.query("SELECT id, label, price, seen FROM \(table) WHERE id IN (0, 1, 2, 3, 4, 5, 6, 9, 19999) ORDER BY id")
            }
            for row in back {
                let id = try row.decode(Int.self, at: 0)
                let label: String? = try row.decodeIfPresent(String.self, at: 1)
                #expect(label == expectedLabel(id))
                #expect(abs(try row.decode(Double.self, at: 2) - expectedPrice(id)) < 1e-9)
                #expect(try row.decode(Date.self, at: 3) == start.addingTimeInterval(Double(id) * 0.5))
            }
            try await store.withConnection { try $0.executeScript("DROP TABLE \(table)") }
            await store.shutdown()
        }

        @Test func parametersAndTypesRoundTrip() async throws {
            let store = try await TestStack.store()
            let id = UUID()
            let when = Date(timeIntervalSince1970: 1_763_892_000.123456)
            let injection = "x'); DELETE FROM clients; --"
            let row = try await store.withConnection { conn in
                try conn.query(
                    "SELECT $1::uuid, $2::timestamptz, $3::text, $4::bytea, $5::boolean, $6::text",
                    [id, when, injection, PGBytes([0, 1, 254, 255]), true, nil])[0]
            }
            #expect(try row.decode(UUID.self, at: 0) == id)
            #expect(abs(try row.decode(Date.self, at: 1).timeIntervalSince(when)) < 0.000_001)
            #expect(try row.decode(String.self, at: 2) == injection)
            #expect(try row.decode(PGBytes.self, at: 3) == PGBytes([0, 1, 254, 255]))
            #expect(try row.decode(Bool.self, at: 4))
            #expect(try row.decodeIfPresent(String.self, at: 5) == nil)
            // arrays: every element quoted, quotes and backslashes escaped, NULL as NULL, any UTF-8
            let texts: [String?] = [#"a"b"#, #"back\slash"#, nil, "NULL", "ünïcødé ☃", "", "{,}"]
            let ids = (0..<5).map { _ in UUID() }
            let arrays = try await store.withConnection { conn in
                try conn.query(
                    "SELECT u.t, u.i::text FROM unnest($1::text[], $2::uuid[]) WITH ORDINALITY AS u(t, i, n) ORDER BY n",
                    [PGArray(texts), PGArray(ids.map { $0 as (any PGEncodable)? } + [nil, nil])])
            }
            #expect(try arrays.map { try $0.decodeIfPresent(String.self, at: 0) } == texts)
            #expect(try arrays.prefix(5).map { try $0.decode(String.self, at: 1) } == ids.map { $0.uuidString.lowercased() })
            // the earliest times an ISO-8601 parser gives (year 1 is year 0, 1 BC, in the
            // proleptic calendar PostgreSQL uses) and the latest PostgreSQL keeps
            for text in ["0001-01-01T05:00:03Z", "0001-03-01T00:00:00Z", "9999-12-31T23:59:59Z"] {
                let d = try #require(Timestamp.parse(text))
                let back = try await store.withConnection { try $0.query("SELECT $1::timestamptz", [d])[0].decode(Date.self, at: 0) }
                #expect(back == d, "\(text)")
            }
            await #expect(throws: PGError.self) {
                try await store.withConnection { try $0.query("SELECT * FROM no_such_table") }
            }
            await store.shutdown()
        }

        /// Past its expiry a command is closed rather than handed out, unless the agent holds it
        /// within its lease (a switch at work for minutes must be left to report).
        /// Commands expire unless their agent holds them within the lease, and the lease is as
        /// long as the kind of work: a switch fetched five minutes ago is still at work (the old
        /// 60 s lease handed it out again mid-flight), a renewed one stays the agent's, and one
        /// whose lease ran out goes to the next poll.
        @Test func commandsAreLeasedForTheirKindOfWorkAndRenewed() async throws {
            let store = try await TestStack.store()
            let statuses = try await store.transaction { conn -> [String: String] in
                let client = try conn.query(
                    "INSERT INTO clients (name, token_key_id, token_hash) VALUES ('expiry', $1, $2) RETURNING id",
                    [String((0..<16).map { _ in "abcdefghij".randomElement()! }), PGBytes(Array(repeating: 2, count: 32))])[0].decode(UUID.self, at: 0)
                let agent = try conn.query("INSERT INTO agents (client_id, logical_agent_id) VALUES ($1, 'expiry') RETURNING id", [client])[0]
                    .decode(UUID.self, at: 0)
                // (status, kind, delivered seconds ago, expired seconds ago)
                let cases: [String: (String, String, Double?, Double)] = [
                    "pending": ("pending", "switch", nil, 5), "at work": ("delivered", "switch", 30, 5), "lease lapsed": ("delivered", "promote", 900, 5),
                    "not yet due": ("pending", "switch", nil, -60), "long switch": ("delivered", "switch", 300, -600),
                    "dead agent": ("delivered", "terminate", 900, -600),
                ]
                var ids: [UUID: String] = [:]
                for (name, c) in cases {
                    let id = try conn.query(
                        """
                        INSERT INTO commands (client_id, agent_id, command_type, target_mode, issued_by, status, delivered_at, lease_expires_at, expires_at)
                        VALUES ($1, $2, $3, 'ondemand', 'decisions', $4, now() - make_interval(secs => $5),
                                CASE WHEN $4 = 'delivered' THEN now() - make_interval(secs => $5) + make_interval(secs => $7) END,
                                now() - make_interval(secs => $6)) RETURNING id
                        """, [client, agent, c.1, c.0, c.2, c.3, Double(CommandKind(rawValue: c.1)!.lease.components.seconds)])[0].decode(UUID.self, at: 0)
                    ids[id] = name
                }
                let handedOut = try Commands.claim(agentId: agent, instanceId: nil, on: conn)
                #expect(Set(handedOut.compactMap { ids[$0.commandId] }) == ["not yet due", "dead agent"])
                let lease = try #require(handedOut.first { ids[$0.commandId] == "not yet due" })
                #expect(lease.leaseSeconds == 1800 && abs(lease.leaseExpiresAt.timeIntervalSinceNow - 1800) < 60)
                // renewing: the agent's own command is extended, another agent's or a finished one is not
                let long = try #require(ids.first { $0.value == "long switch" }?.key)
                let renewed = try #require(try Commands.renew(long, agentId: agent, on: conn))
                #expect(abs(renewed.timeIntervalSinceNow - 1800) < 60)
                #expect(try Commands.renew(long, agentId: UUID(), on: conn) == nil)
                let pending = try #require(ids.first { $0.value == "pending" }?.key)
                #expect(try Commands.renew(pending, agentId: agent, on: conn) == nil)
                var out: [String: String] = [:]
                for row in try conn.query("SELECT id, status FROM commands WHERE agent_id = $1", [agent]) {
                    out[ids[try row.decode(UUID.self, at: 0)] ?? "?"] = try row.decode(String.self, at: 1)
                }
                return out
            }
            #expect(
                statuses == [
                    "pending": "expired", "at work": "delivered", "lease lapsed": "expired", "not yet due": "delivered",
                    "long switch": "delivered", "dead agent": "delivered",
                ])
            await store.shutdown()
        }

        /// A switch reported after its new instance registered (an agent's spooled report, sent
        /// after an outage): the instance ran since the switch made it ready, not since it
        /// registered, and savings count it from then.
        @Test func aLateSwitchReportDatesTheInstanceFromItsReadiness() async throws {
            let store = try await TestStack.store()
            let (installed, ready) = try await store.transaction { conn -> (Date, Date) in
                let client = try conn.query(
                    "INSERT INTO clients (name, token_key_id, token_hash) VALUES ('late switch', $1, $2) RETURNING id",
                    [String((0..<16).map { _ in "abcdefghij".randomElement()! }), PGBytes(Array(repeating: 3, count: 32))])[0].decode(UUID.self, at: 0)
                let agent = try conn.query("INSERT INTO agents (client_id, logical_agent_id) VALUES ($1, 'late') RETURNING id", [client])[0]
                    .decode(UUID.self, at: 0)
                let (old, new) = (ReplicaAgent.randomInstance(), ReplicaAgent.randomInstance())
                try conn.execute(
                    "INSERT INTO instances (id, client_id, agent_id, current_mode, installed_at) VALUES ($1, $2, $3, 'spot', now())", [new, client, agent])
                let ready = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 - 7200).rounded())
                let side = { (id: String) in Switches.Side(instanceId: id, instanceType: "m5.large", region: nil, az: nil, mode: "spot", poolId: nil) }
                try Switches.record(
                    Switches.Record(
                        clientId: client, agentId: agent, old: side(old), new: side(new), onDemandPrice: nil, savingsImpact: nil, savingsConfidence: nil,
                        trigger: .manual, initiatedAt: ready.addingTimeInterval(-60), instanceReadyAt: ready, oldTerminatedAt: nil),
                    on: conn)
                return (try conn.query("SELECT installed_at FROM instances WHERE id = $1", [new])[0].decode(Date.self, at: 0), ready)
            }
            #expect(installed == ready)
            await store.shutdown()
        }

        @Test func schemaEnforcesTheModesExclusionAndEnums() async throws {
            let store = try await TestStack.store()
            let error = await #expect(throws: PGError.self) {
                try await store.transaction { conn in
                    let client = try conn.query(
                        "INSERT INTO clients (name, token_key_id, token_hash) VALUES ('c', $1, $2) RETURNING id",
                        [String((0..<16).map { _ in "abcdefghij".randomElement()! }), PGBytes(Array(repeating: 1, count: 32))])[0]
                        .decode(UUID.self, at: 0)
                    try conn.execute(
                        "INSERT INTO agents (client_id, logical_agent_id, manual_replica_enabled, auto_switch_enabled) VALUES ($1, 'a', true, true)",
                        [client])
                }
            }
            #expect(error?.sqlState == "23514")  // check_violation: agents_manual_excludes_auto
            await store.shutdown()
        }
    }
}
