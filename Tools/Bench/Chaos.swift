import ArgumentParser
import Foundation
import Logging
import SEFApp
import SpotBus
import SpotFleet
import SpotModels
import SpotRuntime
import SpotStore
import Synchronization
import ToolSupport

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The fault suite (reliability plan F1, F2, F4, F6, F8, F14): the same price load runs four
/// times, each on pools of its own, through real service processes on the private stack:
///
/// 1. `reference`: one copy of each service, no fault;
/// 2. `scale`: three copies each of the SEF, the replica coordinator and the decision engine;
/// 3. `faults`: under the load, one after another, kill -9 of ingest, sef, replicas, decisions
///    and notifier (each started again at once), a broker restart, a database restart, and the
///    SEF's raw table locked against its writes;
/// 4. `network`: every service reaches the broker and the database through `FaultProxy`:
///    +200 ms latency, a black hole, a reset of every connection, every connection cut
///    mid-frame, and the SEF stopped with SIGSTOP past its heartbeat;
/// 5. `ha`: the broker as three nodes and the database as a primary and a synchronous standby
///    under Patroni (`HAEngines`): kill -9 of the broker node leading the SEF's queue, a stop and
///    start of the node leading it then, kill -9 of the database primary;
/// 6. `broker`: kill -9 of the broker, started again at once (twenty times at 10,000 sends), the
///    broker paused with SIGSTOP, its memory alarm raised, and a poison storm of invalid
///    messages published beside the load (each must be dead-lettered with its reason).
///
/// After each run it checks that every message answered 202 has its rows in
/// `pricing_submissions_raw` exactly once and nothing else is there, that the clean data
/// (buckets, fills, gaps) equals the reference run's, that the services' queues are empty and
/// that every dead letter of the run carries a reason. It prints one table and, with `--json`,
/// the figures; it exits non-zero when a check fails.
enum ChaosBench {
    struct Options: ParsableArguments, Sendable {
        @Option(help: "Messages the load sends per run (200 to 200000).")
        var sends = 10_000
        @Option(help: "Concurrent senders (1 to 256).")
        var lanes = 16
        @Option(help: "The private stack the suite runs on.")
        var stack = "bench"
        @Option(name: .customLong("stack-script"), help: "The stack script.")
        var stackScript = "deploy/stack.sh"
        @Option(name: .customLong("logs"), help: "Where each run's service logs go (default: .spotguard/<stack>/chaos).")
        var logDirectory: String?
        @Option(help: "Write the figures to this file as JSON.")
        var json: String?
        /// How long the latency and the black hole last.
        @Option(help: "Seconds the latency and the black hole last (1 to 120).")
        var window: Double = 10
        @Option(parsing: .upToNextOption, help: "The runs, the reference first (default: all).")
        var runs: [Kind] = Kind.allCases

        var logs: String { logDirectory ?? ".spotguard/\(stack)/chaos" }

        func validate() throws {
            guard (200...200_000).contains(sends) else { throw ValidationError("--sends must be 200 to 200000") }
            guard (1...256).contains(lanes) else { throw ValidationError("--lanes must be 1 to 256") }
            guard (1...120).contains(window) else { throw ValidationError("--window must be 1 to 120") }
            guard runs.first == .reference, Set(runs).count == runs.count else { throw ValidationError("--runs must start with reference, each once") }
        }
    }

    // the broker run before ha: a broker killed within seconds of a queue change loses it (see
    // `DeadLetterWatch`), and the ha run ends by shrinking every queue back to one node
    enum Kind: String, CaseIterable, ExpressibleByArgument, Sendable { case reference, scale, faults, network, broker, ha, overload }

    struct FaultFigure: Codable, Sendable {
        var fault: String
        /// From the fault to the component being back (process ready, command returned, window over).
        var seconds: Double
        /// Answers other than 202 (and attempts without an answer) that began in that time.
        var non202: Int
        /// Those attempts by answer ("202", another status, "error" for none).
        var answers: [String: Int]
        /// The longest an answer other than 202 took (nil: none).
        var slowestRefusalMs: Double?
        /// From the fault to the first 202 of a request begun after the component was back.
        var first202AfterSeconds: Double?
        /// Requests begun in that time, and the p99 latency of those answered 202.
        var requests: Int
        var p99Ms: Double?
        /// The longest time from the fault to 30 s after it (or the next fault) in which rows of
        /// accepted messages were owed and the SEF committed none (rows counted every 100 ms).
        var commitStallSeconds: Double?
    }

    struct Outcome: Codable, Sendable {
        var kind: String
        var copies: [String: Int]
        var sends: Int
        var uniqueMessages: Int
        var accepted: Int
        var resendsAccepted: Int
        var rejected: Int
        var gaveUp: Int
        var answers: [String: Int]
        var expectedRows: Int
        var presentRows: Int
        var missingRows: Int
        var unexpectedRows: Int
        var duplicatedRows: Int
        var seconds: Double
        var pointsPerSecond: Double
        var p99Ms: Double
        /// Resends of accepted messages while a fault lasted (beyond `sends`).
        var fillerSends: Int
        var cleanRows: Int
        var cleanIdentical: Bool
        var cleanDiffering: Int
        var queuesLeft: [String: Int]
        var deadLetters: Int
        var deadLettersWithoutReason: Int
        /// Each reason given (queue, routing key, who and why: its first 160 characters) and how often.
        var deadLetterReasons: [String: Int]
        /// Invalid messages the poison storm published, and how many of them were dead-lettered as invalid.
        var poisonSent: Int
        var poisonDeadLettered: Int
        var replicaCallsOk: Int
        var replicaCallsFailed: Int
        var replicaLongestOutageSeconds: Double
        var faults: [FaultFigure]
        var failures: [String]
    }

    static let serviceQueues = ["spotguard.sef", "spotguard.replicas", "spotguard.decisions", "spotguard.notifier"]

    static func run(_ options: Options, env: EnvironmentReader, logger: Logger) async throws {
        try FileManager.default.createDirectory(atPath: options.logs, withIntermediateDirectories: true)
        let (store, publisher) = try connect(env, logger: logger)
        var outcomes: [Outcome] = []
        let deadLetterQueue = DeadLetterWatch.suiteQueue()
        do {
            // one time line for every run: the whole load in the last day (the SEF's scan window)
            let now = Date().timeIntervalSince1970
            let base = Date(timeIntervalSince1970: ((now - ChaosLoad.span(sends: options.sends) - 1800) / 300).rounded(.down) * 300)
            var reference: DerivedPrices?
            for kind in options.runs {
                var (outcome, derived) =
                    if kind == .ha {
                        // the stack's broker as three nodes and its database as a Patroni pair for this run
                        try await HAEngines.with(options, env: env, logger: logger) { ha in
                            try await runOnce(
                                kind, options: options, base: base, env: ha.env, store: ha.store, publisher: ha.publisher, deadLetters: deadLetterQueue,
                                logger: logger)
                        }
                    } else {
                        try await runOnce(
                            kind, options: options, base: base, env: env, store: store, publisher: publisher, deadLetters: deadLetterQueue, logger: logger)
                    }
                if let reference {
                    let differing = reference.differing(derived)
                    outcome.cleanIdentical = differing == 0
                    outcome.cleanDiffering = differing
                    if differing > 0 { outcome.failures.append("\(differing) derived rows differ from the reference run") }
                } else {
                    reference = derived
                }
                outcomes.append(outcome)
                say(summary(outcome))
            }
        } catch {
            try? await publisher.deleteQueue(deadLetterQueue)
            await publisher.shutdown()
            await store.shutdown()
            throw error
        }
        try? await publisher.deleteQueue(deadLetterQueue)
        await publisher.shutdown()
        await store.shutdown()
        say(table(outcomes))
        if let json = options.json {
            try WireJSON.encoder(pretty: true).encode(outcomes).write(to: URL(fileURLWithPath: json))
        }
        let failures = outcomes.flatMap { o in o.failures.map { "\(o.kind): \($0)" } }
        guard failures.isEmpty else { throw FailoverBench.BenchFailure("chaos: " + failures.joined(separator: "; ")) }
    }

    // MARK: - One run

    static func runOnce(
        _ kind: Kind, options: Options, base: Date, env: EnvironmentReader, store: PostgresStore, publisher: BusPublisher, deadLetters: String,
        logger: Logger
    ) async throws -> (Outcome, DerivedPrices) {
        let family = "cx" + String((0..<6).map { _ in "abcdefghijklmnopqrstuvwxyz".randomElement()! })
        let token = try await ClientDirectory(store: store, ttl: .seconds(0)).createClient(name: "chaos \(kind.rawValue) \(family)", email: nil).1.text
        let proxies =
            kind == .network
            ? (
                amqp: try FaultProxy(upstreamPort: try env.amqp().port),
                postgres: try FaultProxy(upstreamPort: try env.postgres(applicationName: "spotguard-chaos").port)
            )
            : nil
        defer {
            proxies?.amqp.stop()
            proxies?.postgres.stop()
        }
        let fleet = try ChaosFleet(
            binDir: URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path,
            logDir: options.logs + "/" + kind.rawValue, environment: try serviceEnvironment(env, proxies: proxies, kind: kind))
        let copies = kind == .scale ? ["spotguard-sef": 3, "spotguard-replicas": 3, "spotguard-decisions": 3] : [:]
        let dead = DeadLetterWatch(queue: deadLetters, logger: logger)
        do {
            try await fleet.startAll(copies: copies)
            try await dead.start(env: env, publisher: publisher)
            let agent = try await register(fleet.ingestURL, token: token, family: family)
            let load = ChaosLoad.make(sends: options.sends, family: family, agent: agent, base: base)
            let expected = Set(load.messages.flatMap(\.rows))
            let tally = ChaosTally()
            let probe = ReplicaProbe(ingest: fleet.ingestURL, token: token, agent: agent, tally: tally)
            let schedule = FaultSchedule(kind: kind, sends: load.sends.count, window: options.window, stack: options)
            let commits = CommitWatch(store: store, family: family, tally: tally, load: load)
            let watching = Task { await commits.run() }
            let probing = Task { await probe.run() }
            let flood = ChaosFlood(ingest: fleet.ingestURL, token: token)
            let faulting = Task {
                try await schedule.run(fleet: fleet, proxies: proxies, store: store, tally: tally) { await flood.run(load, tally: tally, seconds: $0) }
            }
            let started = tally.now()
            await ChaosSender(ingest: fleet.ingestURL, token: token, lanes: options.lanes).send(load, tally: tally) { await schedule.isOpen($0) }
            try await faulting.value
            // every accepted row committed (or the time is up)
            let deadline = ContinuousClock.now + .seconds(180)
            var present = 0
            while ContinuousClock.now < deadline {
                present = (try? await count(store, family: family)) ?? present  // the database may be restarting
                if present >= tally.accepted.reduce(0, { $0 + load.messages[$1].rows.count }) { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            let seconds = tally.now() - started
            probe.stop()  // not a cancellation: a URLSession request cancelled mid-answer can hang on Linux
            await probing.value
            commits.stop()
            await watching.value
            let probeFigures = probe.figures
            let queues = try await drainedQueues(options, also: dead.queue)
            try await gapScan(fleet.binDir, env: env)
            try await fleet.stopAll()
            let deadLetters = await dead.stop()
            var outcome = try await verify(
                kind, load: load, expected: expected, tally: tally, family: family, store: store, seconds: seconds, copies: copies)
            outcome.queuesLeft = queues.filter { $0.value > 0 }
            if !outcome.queuesLeft.isEmpty { outcome.failures.append("messages left in \(outcome.queuesLeft)") }
            outcome.deadLetters = deadLetters.count
            outcome.deadLettersWithoutReason = deadLetters.filter { $0.reason == nil }.count
            for reason in deadLetters.compactMap(\.reason) { outcome.deadLetterReasons[String(reason.prefix(160)), default: 0] += 1 }
            if outcome.deadLettersWithoutReason > 0 { outcome.failures.append("\(outcome.deadLettersWithoutReason) dead letters without a reason") }
            outcome.poisonSent = await schedule.poisoned
            // each invalid message dead-lettered once as invalid (a publish sent again may arrive twice)
            outcome.poisonDeadLettered = Set(deadLetters.filter { $0.reason?.contains("invalid_message") == true }.compactMap(\.id)).count
            if outcome.poisonDeadLettered != outcome.poisonSent {
                outcome.failures.append("\(outcome.poisonDeadLettered) of \(outcome.poisonSent) invalid messages dead-lettered as invalid")
            }
            (outcome.replicaCallsOk, outcome.replicaCallsFailed, outcome.replicaLongestOutageSeconds) = probeFigures
            outcome.faults = await schedule.figures(tally: tally, commits: commits)
            outcome.failures += outcome.faults.flatMap(\.overloadFailures)
            let derived = try await DerivedPrices.read(store, family: family)
            outcome.cleanRows = derived.clean.count
            return (outcome, derived)
        } catch {
            try? await fleet.stopAll()
            _ = await dead.stop()
            throw error
        }
    }

    /// The services' environment: the stack's, with the broker and database behind the
    /// proxies for the network run, and timeouts short enough to notice a black hole in it.
    /// For the overload run ingest admits 16 reports at once instead of 256: on two cores the
    /// flooding client is slower than ingest (two runs of this machine's suite had all 8,005 and
    /// 9,085 flood requests answered 202), so only a smaller house shows the excess refused
    /// rather than queued, which is what the run checks.
    static func serviceEnvironment(
        _ env: EnvironmentReader, proxies: (amqp: FaultProxy, postgres: FaultProxy)?, kind: Kind? = nil
    ) throws -> [String: String] {
        var vars = env.values
        vars["SPOTGUARD_LOG_LEVEL"] = vars["SPOTGUARD_CHAOS_LOG_LEVEL"] ?? "warning"
        if kind == .overload { vars["SPOTGUARD_INGEST_REPORT_CONCURRENCY"] = "16" }
        guard let proxies else { return vars }
        func through(_ variable: String, _ port: Int) throws {
            var url = URLComponents(string: try env.require(variable))!
            url.port = port
            vars[variable] = url.string!
        }
        try through("SPOTGUARD_AMQP_URL", proxies.amqp.port)
        try through("SPOTGUARD_DATABASE_URL", proxies.postgres.port)
        vars["SPOTGUARD_AMQP_HEARTBEAT_SECONDS"] = "2"
        vars["SPOTGUARD_DB_STATEMENT_TIMEOUT_MS"] = "5000"
        return vars
    }

    static func register(_ ingest: String, token: String, family: String) async throws -> String {
        let http = FailoverBench.HTTP(base: ingest, token: token)
        let body = try await http.expect(
            201, "POST", "/api/agents/register",
            """
            {"logical_agent_id": "chaos-\(family)", "instance_id": "i-0a1b2c3d4e5f60718", "pool_id": "\(family).large.us-east-1a",
             "mode": "spot", "agent_version": "1.0.0"}
            """)
        guard let id = body["agent_id"] as? String else { throw FailoverBench.BenchFailure("register: no agent_id in \(body)") }
        return id
    }

    static func count(_ store: PostgresStore, family: String) async throws -> Int {
        try await store.withConnection { conn in
            try conn.query("SELECT count(*) FROM pricing_submissions_raw WHERE pool_id LIKE $1 || '.%'", [family]).first?.decode(Int.self, at: 0) ?? 0
        }
    }

    /// The services' queues (and `also`, the run's dead-letter watch) once empty (ready +
    /// unacknowledged), or as they are after 120 s.
    static func drainedQueues(_ options: Options, also watch: String) async throws -> [String: Int] {
        let names = serviceQueues + [watch]
        var depths: [String: Int] = [:]
        for _ in 0..<60 {
            depths = try await queueDepths(options)
            if names.allSatisfy({ depths[$0, default: 0] == 0 }) { break }
            try await Task.sleep(for: .seconds(2))
        }
        return depths.filter { names.contains($0.key) }
    }

    static func queueDepths(_ options: Options) async throws -> [String: Int] {
        var depths: [String: Int] = [:]
        for line in try await stackOutput(options, "queues").split(separator: "\n") {
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })  // name type ready unacked consumers
            if f.count >= 4, let ready = Int(f[2]), let unacked = Int(f[3]) { depths[String(f[0])] = ready + unacked }
        }
        return depths
    }

    /// `stack.sh COMMAND STACK ARGUMENTS…`'s standard output, trimmed; throws unless it exits 0.
    static func stackOutput(_ options: Options, _ command: String, _ arguments: [String] = []) async throws -> String {
        let (status, output) = try await stackRun(options, command, arguments)
        guard status == 0 else { throw FailoverBench.BenchFailure("stack.sh \(command) \(options.stack) exited \(status)") }
        return output
    }

    /// A stack.sh command's exit status and standard output, whatever the status.
    static func stackRun(_ options: Options, _ command: String, _ arguments: [String] = []) async throws -> (status: Int32, output: String) {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("chaos-stack-\(UUID()).txt").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        let status = try await ChildProcess(options.stackScript, [command, options.stack] + arguments, output: out).exitStatus()
        return (status, ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines))
    }

    static func gapScan(_ binDir: String, env: EnvironmentReader) async throws {
        let status = try await ChildProcess(binDir + "/spotguard-sef", ["gap-scan"], environment: env.values, output: "/dev/null").exitStatus()
        guard status == 0 else { throw FailoverBench.BenchFailure("spotguard-sef gap-scan exited \(status)") }
    }

    /// The 99th percentile of the attempts' latencies in ms (nil: none).
    static func p99(_ attempts: [ChaosTally.Attempt]) -> Double? {
        let ms = attempts.map { ($0.end - $0.start) * 1000 }.sorted()
        return ms.isEmpty ? nil : ms[min(ms.count - 1, Int(Double(ms.count) * 0.99))]
    }

    static func verify(
        _ kind: Kind, load: ChaosLoad, expected: Set<UUID>, tally: ChaosTally, family: String, store: PostgresStore, seconds: Double,
        copies: [String: Int]
    ) async throws -> Outcome {
        let rows = try await store.withConnection { conn in
            try conn.query(
                "SELECT submission_id::text, count(*) FROM pricing_submissions_raw WHERE pool_id LIKE $1 || '.%' GROUP BY 1", [family]
            ).map { (UUID(uuidString: try $0.decode(String.self, at: 0))!, try $0.decode(Int.self, at: 1)) }
        }
        let present = Dictionary(uniqueKeysWithValues: rows)
        let accepted = tally.accepted
        let owed = Set(accepted.flatMap { load.messages[$0].rows })
        let missing = owed.subtracting(present.keys).count
        let unexpected = Set(present.keys).subtracting(expected).count
        let duplicated = present.values.filter { $0 > 1 }.count
        let attempts = tally.attempts
        var answers: [String: Int] = [:]
        for a in attempts { answers[a.outcome, default: 0] += 1 }
        let counts = tally.counts
        var failures: [String] = []
        if missing > 0 { failures.append("\(missing) rows of accepted messages missing") }
        if unexpected > 0 { failures.append("\(unexpected) rows nobody sent") }
        if duplicated > 0 { failures.append("\(duplicated) rows stored more than once") }
        if counts.rejected > 0 { failures.append("\(counts.rejected) messages refused with a 4xx") }
        if counts.gaveUp > 0 { failures.append("\(counts.gaveUp) messages never accepted") }
        return Outcome(
            kind: kind.rawValue, copies: copies, sends: load.sends.count, uniqueMessages: load.messages.count, accepted: accepted.count,
            resendsAccepted: counts.resendsAccepted, rejected: counts.rejected, gaveUp: counts.gaveUp, answers: answers,
            expectedRows: owed.count, presentRows: present.count, missingRows: missing, unexpectedRows: unexpected, duplicatedRows: duplicated,
            seconds: seconds, pointsPerSecond: Double(present.count) / max(seconds, 0.001),
            p99Ms: p99(attempts.filter { $0.outcome == "202" }) ?? 0, fillerSends: tally.fillers,
            cleanRows: 0, cleanIdentical: true, cleanDiffering: 0, queuesLeft: [:], deadLetters: 0, deadLettersWithoutReason: 0, deadLetterReasons: [:],
            poisonSent: 0, poisonDeadLettered: 0,
            replicaCallsOk: 0, replicaCallsFailed: 0, replicaLongestOutageSeconds: 0, faults: [], failures: failures)
    }
}
