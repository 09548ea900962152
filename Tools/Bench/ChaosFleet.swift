import ArgumentParser
import Foundation
import FoundationNetworking
import Logging
import SEFApp
import SpotBus
import SpotFleet
import SpotModels
import SpotRuntime
import SpotStore
import Synchronization
import ToolSupport

/// The SpotGuard services of one run as child processes, each copy on its own loopback port.
actor ChaosFleet {
    struct Member {
        var executable: String
        var port: Int
        var process: ChildProcess
    }

    static let services: [(executable: String, portVariable: String)] = [
        ("spotguard-ingest", "SPOTGUARD_INGEST_PORT"), ("spotguard-sef", "SPOTGUARD_SEF_PORT"),
        ("spotguard-replicas", "SPOTGUARD_REPLICAS_PORT"), ("spotguard-decisions", "SPOTGUARD_DECISIONS_PORT"),
        ("spotguard-notifier", "SPOTGUARD_NOTIFIER_PORT"),
    ]

    nonisolated let binDir: String
    nonisolated let ingestURL: String
    private let logDir: String
    private let environment: [String: String]
    private let ingestPort: Int
    private var members: [Member] = []

    init(binDir: String, logDir: String, environment: [String: String]) throws {
        self.binDir = binDir
        self.logDir = logDir
        self.environment = environment
        try FileManager.default.createDirectory(atPath: logDir, withIntermediateDirectories: true)
        ingestPort = Int.random(in: 21_000...29_999)
        ingestURL = "http://127.0.0.1:\(ingestPort)"
    }

    func startAll(copies: [String: Int]) async throws {
        for service in Self.services {
            for i in 0..<copies[service.executable, default: 1] {
                let port = service.executable == "spotguard-ingest" ? ingestPort : Int.random(in: 21_000...29_999)
                members.append(try await start(service.executable, port: port, log: "\(service.executable)-\(i)"))
            }
        }
    }

    /// kill -9 of the first copy of `executable`, started again on its port; returns when ready.
    func kill9(_ executable: String) async throws {
        guard let i = members.firstIndex(where: { $0.executable == executable }) else { return }
        members[i].process.signal(SIGKILL)
        _ = await members[i].process.exitStatus()
        members[i] = try await start(executable, port: members[i].port, log: "\(executable)-0")
    }

    /// SIGSTOP (or SIGCONT) to every copy of `executable`: stuck without dying.
    func pause(_ executable: String, _ paused: Bool) {
        for m in members where m.executable == executable { m.process.signal(paused ? SIGSTOP : SIGCONT) }
    }

    /// A poison storm: `spotguard-bench poison COUNT` as a process of its own, without the bus tap.
    func poison(_ count: Int) async throws {
        let status = try await ChildProcess(
            binDir + "/spotguard-bench", ["poison", String(count)], environment: Poison.environment(environment),
            output: "\(logDir)/poison.log", errors: true
        ).exitStatus()
        guard status == 0 else { throw FailoverBench.BenchFailure("spotguard-bench poison exited \(status) (log: \(logDir)/poison.log)") }
    }

    func stopAll() async throws {
        for m in members { m.process.signal(SIGTERM) }
        var unclean: [String] = []
        for m in members {
            let status = await m.process.exitStatus()
            if status != 0 { unclean.append("\(m.executable) on \(m.port) exited \(status)") }
        }
        members = []
        guard unclean.isEmpty else { throw FailoverBench.BenchFailure("no clean exit on SIGTERM (logs in \(logDir)): \(unclean.joined(separator: ", "))") }
    }

    private func start(_ executable: String, port: Int, log: String) async throws -> Member {
        var env = environment
        env[Self.services.first { $0.executable == executable }!.portVariable] = String(port)
        let process = try ChildProcess(binDir + "/" + executable, ["serve"], environment: env, output: "\(logDir)/\(log).log", errors: true, appending: true)
        let url = URL(string: "http://127.0.0.1:\(port)/health/ready")!
        for _ in 0..<600 {
            if let (_, r) = try? await URLSession.shared.data(from: url), (r as? HTTPURLResponse)?.statusCode == 200 {
                return Member(executable: executable, port: port, process: process)
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        process.signal(SIGKILL)
        throw FailoverBench.BenchFailure("\(executable) on \(port) not ready within 30 s (log: \(logDir)/\(log).log)")
    }
}

/// The fault schedule of a run: fault k begins once the k-th of (faults + 1) equal segments of
/// the sends is done, and the sends of the next segment wait until it has begun; meanwhile the
/// senders resend (`ChaosSender`), so every fault strikes, and lasts, under load.
actor FaultSchedule {
    enum Fault: Sendable {
        case kill(executable: String)
        case brokerRestart
        case databaseCrash
        /// A proxy fault on both proxies for the window.
        case network(FaultProxy.Fault)
        case resetConnections
        case cutConnectionsMidFrame
        /// kill -9 of the broker node leading the SEF's queue (started again once the fault is over)
        case brokerNodeKill
        /// A graceful stop and start of the node leading the SEF's queue then (another node)
        case brokerNodeRestart
        /// kill -9 of the database primary, Patroni and PostgreSQL together (started again as the standby)
        case databasePrimaryKill
        /// kill -9 of the (single) broker, started again at once
        case brokerKill
        /// SIGSTOP of the broker for three windows, then SIGCONT
        case brokerPause
        /// The broker's memory alarm raised for a window, then cleared
        case brokerAlarm
        /// As many invalid messages as the load's sends published on the SEF's routing keys
        case poisonStorm(count: Int)
        /// The SEF stopped (SIGSTOP) for three windows and continued: no acks, no heartbeats
        case sefPaused
        /// The SEF's raw table locked against writes for three windows: it runs, but cannot commit
        case sefTablesLocked
        /// The raw table's partitions on a filesystem filled to the last byte for three windows
        case databaseDiskFull
        /// Ingest offered twice what it accepts, in an open loop, for three windows (`ChaosFlood`)
        case ingestSaturated

        func label(window: Double) -> String {
            switch self {
            case .kill(let executable): "kill -9 \(executable)"
            case .brokerRestart: "broker restart"
            case .databaseCrash: "database restart (immediate stop)"
            case .network(.latency(let ms)): "+\(ms) ms latency, \(Int(window)) s"
            case .network: "black hole, \(Int(window)) s"
            case .resetConnections: "reset every connection"
            case .cutConnectionsMidFrame: "cut every connection mid-frame"
            case .brokerNodeKill: "kill -9 broker node leading sef"
            case .brokerNodeRestart: "stop+start broker node leading sef"
            case .databasePrimaryKill: "kill -9 database primary"
            case .brokerKill: "kill -9 broker"
            case .brokerPause: "broker paused (SIGSTOP) \(Int(window * 3)) s"
            case .brokerAlarm: "broker memory alarm \(Int(window)) s"
            case .poisonStorm(let count): "poison storm, \(count) invalid messages"
            case .sefPaused: "sef stopped (SIGSTOP) \(Int(window * 3)) s"
            case .sefTablesLocked: "sef's raw table locked \(Int(window * 3)) s"
            case .databaseDiskFull: "database disk full \(Int(window * 3)) s"
            case .ingestSaturated: "ingest saturated 2x \(Int(window * 3)) s"
            }
        }
    }

    private let faults: [Fault]
    private let boundaries: [Int]
    private let window: Double
    private let options: ChaosBench.Options
    private var begun = 0
    private var finished = false
    private var spans: [(fault: String, start: Double, end: Double)] = []
    /// What brings a killed node back before the next fault (a stack.sh command and its argument).
    private var recovery: [String]?
    /// Invalid messages the storm published.
    private(set) var poisoned = 0

    init(kind: ChaosBench.Kind, sends: Int, window: Double, stack options: ChaosBench.Options) {
        let list: [Fault] =
            switch kind {
            case .reference, .scale: []
            // F4 for each service, F2, F6, F5 both ways (a consumer stuck in its database, a consumer
            // stopped), and the database out of disk where the SEF writes
            case .faults:
                ChaosFleet.services.map { .kill(executable: $0.executable) } + [.brokerRestart, .databaseCrash, .sefTablesLocked, .databaseDiskFull]
            // L1 at 2x saturation
            case .overload: [.ingestSaturated]
            // the stopped SEF here, where the heartbeat is 2 s: the broker closes its connection and takes its messages back
            case .network: [.network(.latency(milliseconds: 200)), .network(.blackHole), .resetConnections, .cutConnectionsMidFrame, .sefPaused]
            case .ha: [.brokerNodeKill, .brokerNodeRestart, .databasePrimaryKill]
            // F1 twenty times at the 10,000-send load (fewer below it), F3, F9, F11 as a storm
            case .broker: Array(repeating: .brokerKill, count: min(20, max(1, sends / 500))) + [.brokerPause, .brokerAlarm, .poisonStorm(count: sends)]
            }
        faults = list
        boundaries = (1...max(1, list.count)).map { $0 * sends / (list.count + 1) }
        self.window = window
        self.options = options
    }

    /// Whether send `position` may go; for nil, whether every fault is over.
    func isOpen(_ position: Int?) -> Bool {
        guard let position else { return finished }
        return begun == faults.count || position < boundaries[begun]
    }

    func run(
        fleet: ChaosFleet, proxies: (amqp: FaultProxy, postgres: FaultProxy)?, store: PostgresStore, tally: ChaosTally,
        flood: @Sendable (_ seconds: Double) async -> Void
    ) async throws {
        defer {  // also when a fault fails: the senders finish instead of resending forever
            begun = faults.count
            finished = true
        }
        for (k, fault) in faults.enumerated() {
            while tally.done < boundaries[k] { try await Task.sleep(for: .milliseconds(20)) }
            // the node a node fault strikes, found before the fault's clock starts
            let node: String =
                switch fault {
                case .brokerNodeKill, .brokerNodeRestart: try await stackOutput("broker-leader", "spotguard.sef")
                case .databasePrimaryKill: try await stackOutput("db-leader")
                default: ""
                }
            let start = tally.now()
            begun += 1
            var label = fault.label(window: window) + (node.isEmpty ? "" : " (node \(node))")
            switch fault {
            case .kill(let executable): try await fleet.kill9(executable)
            case .brokerRestart: try await stack("broker-restart")
            case .databaseCrash:
                try await stack("db-crash")
                try await stack("db-start")
            case .network(let proxyFault):
                for proxy in [proxies?.amqp, proxies?.postgres] { proxy?.fault = proxyFault }
                try await Task.sleep(for: .seconds(window))
                for proxy in [proxies?.amqp, proxies?.postgres] { proxy?.fault = .none }
            case .resetConnections:
                for proxy in [proxies?.amqp, proxies?.postgres] { proxy?.resetAll() }
            case .cutConnectionsMidFrame:
                for proxy in [proxies?.amqp, proxies?.postgres] { proxy?.cutAll(after: 37) }
            case .brokerNodeKill:
                try await stack("broker-node-kill", node)
                recovery = ["broker-node-start", node]
            case .brokerNodeRestart:
                try await stack("broker-node-stop", node)
                try await stack("broker-node-start", node)
            case .brokerKill:  // the only node: back once it is started again
                try await stack("broker-node-kill", "1")
                try await stack("broker-node-start", "1")
            case .brokerPause:
                try await stack("broker-pause")
                try await Task.sleep(for: .seconds(window * 3))
                try await stack("broker-resume")
            case .brokerAlarm:
                try await stack("broker-alarm-on")
                try await Task.sleep(for: .seconds(window))
                try await stack("broker-alarm-off")
            case .poisonStorm(let count):
                try await fleet.poison(count)
                poisoned += count
            case .sefPaused:
                await fleet.pause("spotguard-sef", true)
                try? await Task.sleep(for: .seconds(window * 3))
                await fleet.pause("spotguard-sef", false)
            case .sefTablesLocked:
                let seconds = window * 3
                try await store.withConnection { conn in
                    try conn.execute("BEGIN")
                    defer { _ = try? conn.execute("ROLLBACK") }
                    try conn.execute("SET LOCAL statement_timeout = 0")
                    // EXCLUSIVE: no insert, while reads (the suite's row count) go on
                    try conn.execute("LOCK TABLE pricing_submissions_raw IN EXCLUSIVE MODE")
                    try conn.execute("SELECT pg_sleep($1)", [seconds])
                }
            case .databaseDiskFull:
                // a stack that may not mount a filesystem (exit 3) shows the fault as not struck
                let (status, _) = try await ChaosBench.stackRun(options, "db-disk-full")
                guard status != 3 else {
                    label += ": not struck, no filesystem could be mounted"
                    break
                }
                // the partitions go home whatever happens meanwhile (stack.sh infra also brings them back)
                do {
                    guard status == 0 else { throw FailoverBench.BenchFailure("stack.sh db-disk-full exited \(status)") }
                    try await Task.sleep(for: .seconds(window * 3))
                } catch {
                    _ = try? await stack("db-disk-free")
                    throw error
                }
                try await stack("db-disk-free")
            case .ingestSaturated:
                await flood(window * 3)
            case .databasePrimaryKill:
                try await stack("db-node-kill", node)
                // started again only once the standby is promoted: a node back within the leader
                // key's life would simply resume as the primary
                recovery = ["db-promoted", node]
            }
            spans.append((label, start, tally.now()))
            if let recovery {
                try await stack(recovery[0], recovery[1])
                self.recovery = nil
            }
        }
    }

    private func stack(_ command: String, _ arguments: String...) async throws {
        _ = try await ChaosBench.stackOutput(options, command, arguments)
    }

    private func stackOutput(_ command: String, _ arguments: String...) async throws -> String {
        try await ChaosBench.stackOutput(options, command, arguments)
    }

    /// When the fault after the one begun at `start` began (infinity for the last).
    private func next(after start: Double) -> Double {
        spans.map(\.start).filter { $0 > start }.min() ?? .infinity
    }

    func figures(tally: ChaosTally, commits: CommitWatch) -> [ChaosBench.FaultFigure] {
        let attempts = tally.attempts
        return spans.map { span in
            let during = attempts.filter { $0.start >= span.start && $0.start <= span.end }
            let first = attempts.filter { $0.start >= span.end && $0.outcome == "202" }.map(\.end).min()
            let refusals = during.filter { $0.outcome != "202" && $0.outcome != "error" }
            return .init(
                fault: span.fault, seconds: span.end - span.start, non202: during.filter { $0.outcome != "202" }.count,
                answers: during.reduce(into: [:]) { $0[$1.outcome, default: 0] += 1 },
                slowestRefusalMs: refusals.map { ($0.end - $0.start) * 1000 }.max(),
                first202AfterSeconds: first.map { $0 - span.start }, requests: during.count,
                p99Ms: ChaosBench.p99(during.filter { $0.outcome == "202" }),
                commitStallSeconds: commits.longestStall(from: span.start, to: min(span.end + 30, next(after: span.start))))
        }
    }
}

/// Collects the dead letters of a run and their reasons: the consumer's `x-spotguard-error`, or
/// the broker's `x-first-death-reason`.
///
/// The queue it reads on `spotguard.dlx` is the suite's, declared by the reference run and
/// deleted after the last. A queue declared a second or so before a broker's kill -9 is lost
/// with it (RabbitMQ 3.10: a quorum queue never elects a leader again, and every message routed
/// to it waits 65 s for a confirm that never comes; a classic one can vanish with a message it
/// had confirmed), so a queue of the broker run's own made that run fail at random. Each run's
/// services stop before its watch does, so no run's letters reach the next one's.
final class DeadLetterWatch: Sendable {
    let queue: String
    let logger: Logger
    private let letters = Mutex<[(id: String?, reason: String?)]>([])
    private let task = Mutex<Task<Void, any Error>?>(nil)

    static func suiteQueue() -> String { "spotguard.chaos-dead-letters.\(UUID().uuidString.prefix(8).lowercased())" }

    init(queue: String, logger: Logger) {
        self.queue = queue
        self.logger = logger
    }

    func start(env: EnvironmentReader, publisher: BusPublisher) async throws {
        let topology = Topology.standard.adding(.init(name: queue, bindings: ["#"], exchange: Topology.deadLetterExchange))
        let consumer = BusConsumer(
            endpoint: try env.amqp(), topology: topology, configuration: .init(queue: queue), deadLetters: publisher,
            logger: logger
        ) { [self] d in
            let broker = d.headers["x-first-death-reason"].map { "\(d.headers["x-first-death-queue"] ?? "?") \(d.routingKey), by the broker: \($0)" }
            let consumer = d.headers["x-spotguard-error"].map { "\(d.headers["x-spotguard-queue"] ?? "?") \(d.routingKey), by the consumer: \($0)" }
            self.letters.withLock { $0.append((d.messageId, consumer ?? broker)) }
        }
        task.withLock { $0 = Task { try await consumer.run() } }
        for _ in 0..<200 where !consumer.isConnected { try await Task.sleep(for: .milliseconds(50)) }
        guard consumer.isConnected else { throw FailoverBench.BenchFailure("dead-letter watch did not connect") }
    }

    /// Stops watching and returns each dead letter's message id and reason (nil: none given).
    func stop() async -> [(id: String?, reason: String?)] {
        let t = task.withLock { t -> Task<Void, any Error>? in
            defer { t = nil }; return t
        }
        t?.cancel()
        _ = await t?.result
        return letters.withLock { $0 }
    }
}
