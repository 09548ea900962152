import ArgumentParser
import Foundation
import Logging
import SpotBus
import SpotCLI
import SpotMarket
import SpotModels
import SpotRuntime
import SpotStore

/// Raw rates of the broker and the database this machine gives, measured the way SpotGuard
/// uses them, so `deploy/bench.sh` can print ingest throughput as a ratio of each.
///
///     spotguard-bench publish MESSAGES WINDOW   confirmed persistent publishes per second
///     spotguard-bench copy ROWS                 COPY rows per second into a price-shaped table
///     spotguard-bench replay send|wait|score ...  price history through ingest and the SEF (deploy/replay.sh)
///     spotguard-bench decisions-pass POOLS AGENTS  one decision pass over a synthetic market
///     spotguard-bench failover AGENTS           failover and command-delivery latency (needs ingest,
///                                               the coordinator, SPOTGUARD_INGEST_URL, SPOTGUARD_BENCH_TOKEN)
///     spotguard-bench agent-failover AGENTS     IMDS notice -> failover committed with real agent processes
///     spotguard-bench agent-recovery NOTICES    IMDS notice without a replica -> new primary serving (real agents)
///     spotguard-bench chaos [--sends N] ...    the fault suite: the same load fault-free, on three copies,
///                                               under kill -9 and restarts, and through network faults (Chaos.swift)
///     spotguard-bench soak [--minutes N] ...   a steady load with memory, descriptors and p99 sampled (make soak)
///     spotguard-bench sef-fill CLIENT AGENT REPORTS POOLS
///                                               queue pricing reports for the SEF, as ingest would
/// A bench that drives running services: ingest's address and a client token from the
/// environment, and the database for its checks.
func againstLiveServices(
    _ env: EnvironmentReader, _ logger: Logger, _ body: @escaping @Sendable (String, String, PostgresStore) async throws -> Void
) async throws {
    try await ServiceCommand.withStore(env: env, applicationName: "spotguard-bench", logger: logger) { store in
        try await body(try env.require("SPOTGUARD_INGEST_URL"), try env.require("SPOTGUARD_BENCH_TOKEN"), store)
    }
}

/// `againstLiveServices` for a step with real agents on moto's EC2: its endpoint
/// (`SPOTGUARD_BENCH_EC2_URL`) and the folder for the agents' logs (`logs/agents` of the stack).
func againstLiveServicesAndMoto(
    _ env: EnvironmentReader, _ logger: Logger, _ body: @escaping @Sendable (String, String, PostgresStore, URL, URL) async throws -> Void
) async throws {
    guard let moto = URL(string: try env.require("SPOTGUARD_BENCH_EC2_URL")) else { throw ValidationError("SPOTGUARD_BENCH_EC2_URL is not a URL") }
    let logs = URL(fileURLWithPath: env.string("SPOTGUARD_STACK_DIR") ?? FileManager.default.temporaryDirectory.path).appendingPathComponent("logs/agents")
    try await againstLiveServices(env, logger) { try await body($0, $1, $2, moto, logs) }
}

@main
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration.spotguard(
        "spotguard-bench", abstract: "Benchmarks and the fault suite (make bench, make chaos, make replay).",
        subcommands: [
            DecisionsPassCommand.self, FailoverCommand.self, AgentFailoverCommand.self, AgentRecoveryCommand.self, StateShippingCommand.self,
            ReplayCommand.self, ChaosCommand.self, SoakCommand.self, BacklogCommand.self,
            SEFFill.self, Codec.self, PoolsBody.self, Publish.self, Poison.self, Copy.self,
        ])
}

struct DecisionsPassCommand: ServiceSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "decisions-pass", abstract: "Time the decision pass over POOLS pools and AGENTS auto-switch agents.")
    @Argument(help: "Pools of the synthetic market (at least 5).") var pools: Int
    @Argument(help: "Auto-switch agents (at least 1).") var agents: Int

    func validate() throws {
        guard pools >= 5, agents >= 1 else { throw ValidationError("needs POOLS (at least 5) and AGENTS (at least 1)") }
    }

    func run(env: EnvironmentReader, logger: Logger) async throws {
        try await ServiceCommand.withStore(env: env, applicationName: "spotguard-bench", logger: logger) { store in
            try await DecisionPassBench.run(pools: pools, agents: agents, store: store)
        }
    }
}

struct FailoverCommand: ServiceSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "failover", abstract: "Failover and command-delivery latency through ingest and the coordinator.")
    @Argument(help: "Agents given a ready replica (at least 2).") var agents: Int
    @Option(help: "Failovers timed, spread over the agents (default: every agent).") var timed: Int?

    func validate() throws {
        guard agents >= 2 else { throw ValidationError("AGENTS must be at least 2") }
        guard (timed ?? 2) >= 2 else { throw ValidationError("--timed must be at least 2") }
    }

    func run(env: EnvironmentReader, logger: Logger) async throws {
        let (count, timed) = (agents, min(timed ?? agents, agents))
        try await againstLiveServices(env, logger) { try await FailoverBench.run(ingest: $0, token: $1, agents: count, timed: timed, store: $2) }
    }
}

struct AgentFailoverCommand: ServiceSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "agent-failover",
        abstract:
            "IMDS notice -> failover committed and Elastic IP moved, with spotguard-agent processes on moto's EC2 (needs ingest, the coordinator and SPOTGUARD_BENCH_EC2_URL)."
    )
    @Argument(help: "Agents (at least 1).") var agents: Int

    func validate() throws { guard agents >= 1 else { throw ValidationError("AGENTS must be at least 1") } }

    func run(env: EnvironmentReader, logger: Logger) async throws {
        let count = agents
        try await againstLiveServicesAndMoto(env, logger) {
            try await AgentFailoverBench.run(ingest: $0, token: $1, agents: count, store: $2, moto: $3, logs: $4)
        }
    }
}

struct AgentRecoveryCommand: ServiceSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "agent-recovery",
        abstract:
            "IMDS notice without a replica -> recovery instance launched, state sent, new primary serving, with spotguard-agent processes on moto's EC2 (needs ingest, the coordinator and SPOTGUARD_BENCH_EC2_URL)."
    )
    @Argument(help: "Notices (at least 1).") var notices: Int

    func validate() throws { guard notices >= 1 else { throw ValidationError("NOTICES must be at least 1") } }

    func run(env: EnvironmentReader, logger: Logger) async throws {
        let count = notices
        try await againstLiveServicesAndMoto(env, logger) {
            try await AgentRecoveryBench.run(ingest: $0, token: $1, notices: count, store: $2, moto: $3, logs: $4)
        }
    }
}

struct StateShippingCommand: ServiceSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "state-shipping",
        abstract:
            "A primary's state of each SIZES MiB shipped every PERIOD s and a replica's agent keeping it, with spotguard-agent processes on moto's EC2: first version, full restore, 1 % changes -> shipped -> held (needs ingest, the coordinator and SPOTGUARD_BENCH_EC2_URL)."
    )
    @Argument(help: "State sizes in MiB (at least 1 each).") var sizes: [Int]
    @Option(help: "The primary's shipping period, seconds.") var period = 10
    @Option(help: "Changes of 1 % per size.") var rounds = 3

    func validate() throws {
        guard !sizes.isEmpty, sizes.allSatisfy({ $0 >= 1 }), period >= 1, rounds >= 1 else {
            throw ValidationError("needs SIZES of at least 1 MiB, a PERIOD and ROUNDS of at least 1")
        }
    }

    func run(env: EnvironmentReader, logger: Logger) async throws {
        let (sizes, period, rounds) = (sizes, period, rounds)
        try await againstLiveServicesAndMoto(env, logger) {
            try await StateShippingBench.run(ingest: $0, token: $1, sizes: sizes, period: period, rounds: rounds, store: $2, moto: $3, logs: $4)
        }
    }
}

struct ReplayCommand: ServiceSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "replay", abstract: "Replay a price history through ingest and the SEF (see deploy/replay.sh).")
    enum Step: String, ExpressibleByArgument, CaseIterable { case send, wait, score }
    @Argument(help: "send, wait or score") var step: Step
    @Option(help: "Where the truth of the replay is kept.") var truth = ".spotguard/bench/replay-truth.json"
    @Option(help: "send: the price history.") var csv: String?
    @Option(help: "send: the client token.") var token: String?
    @Option(help: "send: the agent that reports.") var agent: String?
    @Option(help: "send: rows to send (default: all).") var rows: Int?
    @Option(help: "send: share of points dropped, for the SEF to fill.") var drop = 0.10
    @Option(help: "send: share of points also sent as a replica's report.") var replicas = 0.10
    @Option(help: "send: seed of the drops.") var seed: UInt64 = 1

    func validate() throws {
        if step == .send, csv == nil || token == nil || agent == nil { throw ValidationError("send needs --csv FILE --token TOKEN --agent ID") }
    }

    func run(env: EnvironmentReader, logger: Logger) async throws {
        switch step {
        case .send:
            try await Replay.send(
                csv: csv ?? "", rows: rows, dropShare: drop, replicaShare: replicas, seed: seed,
                ingest: try env.require("SPOTGUARD_INGEST_URL"), token: token ?? "", agent: agent ?? "", truthFile: truth)
        case .wait:
            try await ServiceCommand.withStore(env: env, applicationName: "spotguard-replay", logger: logger) {
                try await Replay.waitCommitted($0, truthFile: truth)
            }
        case .score:
            try await ServiceCommand.withStore(env: env, applicationName: "spotguard-replay", logger: logger) {
                try await Replay.score($0, truthFile: truth)
            }
        }
    }
}

struct ChaosCommand: ServiceSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "chaos", abstract: "The fault suite: one load fault-free, on three copies, under kill -9, restarts, network faults, HA node losses.")
    @OptionGroup var options: ChaosBench.Options

    func run(env: EnvironmentReader, logger: Logger) async throws { try await ChaosBench.run(options, env: env, logger: logger) }
}

struct SEFFill: ServiceSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "sef-fill", abstract: "Publish REPORTS pricing reports of POOLS pools each to the SEF queue, as ingest would.")
    @Argument var client: String
    @Argument var agent: String
    @Argument var reports: Int
    @Argument var pools: Int
    @Option(help: "Distinct pools the reports rotate over (default POOLS: every report names the same ones).") var distinct: Int?

    func validate() throws {
        guard UUID(uuidString: client) != nil, UUID(uuidString: agent) != nil else { throw ValidationError("CLIENT and AGENT must be UUIDs") }
        guard reports >= 1, pools >= 1 else { throw ValidationError("REPORTS and POOLS must be at least 1") }
        guard (distinct ?? pools) >= pools else { throw ValidationError("--distinct must be at least POOLS") }
    }

    func run(env: EnvironmentReader, logger: Logger) async throws {
        let (client, agent, count, poolCount) = (UUID(uuidString: client)!, UUID(uuidString: agent)!, reports, pools)
        let market = benchPools(distinct ?? poolCount)
        let publisher = BusPublisher(endpoint: try env.amqp(), logger: logger)
        publisher.start()
        while !publisher.isConnected { try await Task.sleep(for: .milliseconds(20)) }
        let window = 200
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<window {
                group.addTask {
                    var rng = SplitMix64(seed: UInt64(lane))
                    for i in stride(from: lane, to: count, by: window) {
                        let now = Date()
                        let pools = (0..<poolCount).map { market[(i * poolCount + $0) % market.count] }
                        let report = PricingReport(
                            reportId: UUID(), clientId: client, agentId: agent, instanceId: nil,
                            pools: pools.map { PoolPrice(poolId: $0, price: Double(Int.random(in: 300...340, using: &rng)) / 10_000) },
                            onDemandPrice: 0.0416, observedAt: now, receivedAt: now)
                        try await publisher.publish(
                            Envelope(
                                id: report.reportId, type: RoutingKey.pricingReported, producer: "spotguard-bench",
                                payload: PricingReported.report(report)))
                    }
                }
            }
            try await group.waitForAll()
        }
        print("queued_reports=\(count) points=\(count * poolCount) distinct_pools=\(market.count)")
        await publisher.shutdown()
    }
}

struct Codec: ServiceSubcommand {
    static let configuration = CommandConfiguration(
        abstract: "Microseconds per encode and decode of a pricing report (the body, the envelope), by the hand coders and by Foundation's.")
    @Argument(help: "Repetitions.") var n = 5000
    @Option(help: "Pools in the report.") var pools = 10

    func run(env: EnvironmentReader, logger: Logger) async throws {
        let n = self.n
        let now = Date()
        let report = PricingReport(
            reportId: UUID(), clientId: UUID(), agentId: UUID(), instanceId: nil,
            pools: benchPools(pools).map { PoolPrice(poolId: $0, price: 0.0312) }, onDemandPrice: 0.0416,
            observedAt: now, receivedAt: now)
        let envelope = Envelope(type: RoutingKey.pricingReported, producer: "bench", payload: PricingReported.report(report))
        let body = Array(PoolsBody.body(pools).utf8)
        func time(_ label: String, _ body: () throws -> Void) rethrows {
            let start = ContinuousClock.now
            for _ in 0..<n { try body() }
            print(String(format: "%@_us=%.1f", label, (ContinuousClock.now - start).seconds * 1e6 / Double(n)))
        }
        let data = try WireJSON.encode(envelope)
        let key = RoutingKey.pricingReported
        try time("body_decode") { _ = try WireJSON.decode(PricingReportRequest.self, from: body) }
        try time("body_decode_foundation") { _ = try WireJSON.decoder().decode(PricingReportRequest.self, from: Data(body)) }
        try time("envelope_encode") { _ = try WireJSON.encode(envelope) }
        try time("envelope_encode_foundation") { _ = try WireJSON.encoder().encode(envelope) }
        try time("envelope_decode") { _ = try WireJSON.decode(Envelope<PricingReported>.self, from: data, routingKey: key) }
        try time("envelope_decode_foundation") { _ = try WireJSON.decoder(routingKey: key).decode(Envelope<PricingReported>.self, from: Data(data)) }
        time("timestamp_format") { _ = Timestamp.format(now) }
        time("timestamp_parse") { _ = Timestamp.parse("2026-11-23T06:20:00.123Z") }
        time("sql_timestamp") { _ = now.pgText }
    }
}

struct PoolsBody: ServiceSubcommand {
    static let configuration = CommandConfiguration(commandName: "pools", abstract: "Print a pricing-report body with POOLS pools (for load generators).")
    @Argument(help: "Pools in the body.") var count = 10

    func run(env: EnvironmentReader, logger: Logger) async throws { print(Self.body(count)) }

    static func body(_ count: Int) -> String {
        let entries = benchPools(count).enumerated().map { #"{"id": "\#($1.rawValue)", "price": 0.03\#($0 % 10)1}"# }
        return #"{"pools": [\#(entries.joined(separator: ", "))], "on_demand_price": 0.0416}"#
    }
}

struct Publish: ServiceSubcommand {
    static let configuration = CommandConfiguration(abstract: "Confirmed persistent publishes per second with WINDOW in flight.")
    @Argument(help: "Messages to publish.") var messages = 20_000
    @Argument(help: "Publishes in flight.") var window = 200

    func run(env: EnvironmentReader, logger: Logger) async throws {
        let (messages, window) = (self.messages, self.window)
        let queue = "spotguard.bench.\(UUID().uuidString.prefix(8).lowercased())"
        let publisher = BusPublisher(
            endpoint: try env.amqp(), topology: .standard.adding(.init(name: queue, bindings: ["bench.#"])), logger: logger)
        publisher.start()
        while !publisher.isConnected { try await Task.sleep(for: .milliseconds(20)) }
        // a body the size of a three-pool pricing report envelope
        let body = Array(String(repeating: "x", count: 520).utf8)
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<window {
                group.addTask {
                    var i = lane
                    while i < messages {
                        try await publisher.publish(OutgoingMessage(routingKey: "bench.price", body: body, messageId: "\(queue)-\(i)"))
                        i += window
                    }
                }
            }
            try await group.waitForAll()
        }
        let seconds = (ContinuousClock.now - started).seconds
        print(String(format: "publish_confirmed_per_second=%.0f messages=%d window=%d", Double(messages) / seconds, messages, window))
        try await publisher.deleteQueue(queue)
        await publisher.shutdown()
    }
}

struct Copy: ServiceSubcommand {
    static let configuration = CommandConfiguration(abstract: "COPY rows per second into a table shaped like spot_price_snapshots.")
    @Argument(help: "Rows to copy.") var rows = 200_000

    func run(env: EnvironmentReader, logger: Logger) async throws {
        let rows = self.rows
        try await ServiceCommand.withStore(env: env, applicationName: "spotguard-bench", logger: logger) { store in
            let table = "bench_copy_\(UInt32.random(in: 0...UInt32.max))"
            try await store.withConnection {
                try $0.executeScript(
                    """
                    CREATE TABLE \(table) (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, pool_id text NOT NULL,
                        price numeric(12,6) NOT NULL, captured_at timestamptz NOT NULL, report_id uuid NOT NULL,
                        UNIQUE (report_id, pool_id))
                    """)
            }
            let start = Date()
            var batch: [[(any PGEncodable)?]] = []
            batch.reserveCapacity(rows)
            for i in 0..<rows {
                batch.append(["t3.medium.us-east-1\(["a", "b", "c"][i % 3])", 0.03 + Double(i % 100) / 10_000, start, UUID()])
            }
            let all = batch
            let started = ContinuousClock.now
            let written = try await store.withConnection {
                try $0.copy(into: table, columns: ["pool_id", "price", "captured_at", "report_id"], rows: all)
            }
            let seconds = (ContinuousClock.now - started).seconds
            print(String(format: "copy_rows_per_second=%.0f rows=%d", Double(written) / seconds, written))
            try await store.withConnection { try $0.executeScript("DROP TABLE \(table)") }
        }
    }
}

/// Up to 30 pools: five us-east-1 zones of six instance types, as an agent reporting its own
/// type and alternatives would send.
/// `n` distinct pools: 30 real ones (six types in five zones of us-east-1), then synthetic
/// types (`bq` and four letters, `.large`) in the same five zones, for markets larger than that.
func benchPools(_ n: Int) -> [PoolID] {
    let zones = ["a", "b", "c", "d", "f"]
    let letters = Array("abcdefghijklmnopqrstuvwxyz")
    let real = ["t3.medium", "m5.large", "c5.large", "r5.large", "m6i.large", "c6i.large"]
    let synthetic = (0..<max(0, (n - real.count * zones.count + zones.count - 1) / zones.count)).map { i -> String in
        var (k, name) = (i, "")
        for _ in 0..<4 {
            name.append(letters[k % 26])
            k /= 26
        }
        return "bq\(name).large"
    }
    let all = (real + synthetic).lazy.flatMap { t in zones.lazy.map { PoolID(rawValue: "\(t).us-east-1\($0)")! } }
    return Array(all.prefix(max(1, n)))
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
