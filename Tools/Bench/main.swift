import Foundation
import Logging
import SpotBus
import SpotModels
import SpotRuntime
import SpotStore
import SpotMarket

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
///     spotguard-bench chaos [--sends N] ...    the fault suite: the same load fault-free, on three copies,
///                                               under kill -9 and restarts, and through network faults (Chaos.swift)
///     spotguard-bench sef-fill CLIENT AGENT REPORTS POOLS
///                                               queue pricing reports for the SEF, as ingest would
/// A bench that drives running services: AGENTS from the arguments, ingest's address and a
/// client token from the environment, and the database for its checks.
func againstLiveServices(
    _ args: [String], _ env: EnvironmentReader, _ logger: Logger, minimum: Int,
    _ body: @escaping @Sendable (String, String, Int, PostgresStore) async throws -> Void
) async throws {
    guard let count = args.first.flatMap(Int.init), count >= minimum else {
        throw ConfigurationError(variable: "arguments", problem: "must be AGENTS (at least \(minimum))")
    }
    try await ServiceCommand.withStore(env: env, applicationName: "spotguard-bench", logger: logger) { store in
        try await body(try env.require("SPOTGUARD_INGEST_URL"), try env.require("SPOTGUARD_BENCH_TOKEN"), count, store)
    }
}

await ServiceCommand.main(
    executable: "spotguard-bench",
    serve: { _, _, _ in throw ConfigurationError(variable: "command", problem: "must name a command (spotguard-bench help)") },
    extra: [
        "decisions-pass": (
            usage: "POOLS AGENTS: time the decision pass over POOLS pools and AGENTS auto-switch agents",
            run: { args, env, logger in
                guard args.count == 2, let pools = Int(args[0]), let agents = Int(args[1]), pools >= 5, agents >= 1 else {
                    throw ConfigurationError(variable: "arguments", problem: "must be POOLS (at least 5) AGENTS")
                }
                var config = try env.postgres(applicationName: "spotguard-bench")
                config.poolSize = 1
                let store = PostgresStore(configuration: config, logger: logger)
                do {
                    try await DecisionPassBench.run(pools: pools, agents: agents, store: store)
                } catch {
                    await store.shutdown()
                    throw error
                }
                await store.shutdown()
            }
        ),
        "failover": (
            usage: "AGENTS: failover and command-delivery latency through ingest and the coordinator",
            run: { args, env, logger in
                try await againstLiveServices(args, env, logger, minimum: 2) { try await FailoverBench.run(ingest: $0, token: $1, agents: $2, store: $3) }
            }
        ),
        "agent-failover": (
            usage: "AGENTS: IMDS notice -> failover committed, with a spotguard-agent process per instance (needs ingest and the coordinator)",
            run: { args, env, logger in
                try await againstLiveServices(args, env, logger, minimum: 1) { try await AgentFailoverBench.run(ingest: $0, token: $1, agents: $2, store: $3) }
            }
        ),
        "replay": (
            usage: "send|wait|score: replay a price history through ingest and the SEF (see deploy/replay.sh)",
            run: { args, env, logger in
                func option(_ name: String) -> String? { ServiceCommand.option(name, in: args) }
                let truth = option("--truth") ?? ".spotguard/bench/replay-truth.json"
                switch args.first {
                case "send":
                    guard let csv = option("--csv"), let token = option("--token"), let agent = option("--agent") else {
                        throw ConfigurationError(variable: "arguments", problem: "send needs --csv FILE --token TOKEN --agent ID")
                    }
                    try await Replay.send(
                        csv: csv, rows: option("--rows").flatMap(Int.init), dropShare: option("--drop").flatMap(Double.init) ?? 0.10,
                        replicaShare: option("--replicas").flatMap(Double.init) ?? 0.10, seed: option("--seed").flatMap(UInt64.init) ?? 1,
                        ingest: try env.require("SPOTGUARD_INGEST_URL"), token: token, agent: agent, truthFile: truth)
                case "wait":
                    try await ServiceCommand.withStore(env: env, applicationName: "spotguard-replay", logger: logger) {
                        try await Replay.waitCommitted($0, truthFile: truth)
                    }
                case "score":
                    try await ServiceCommand.withStore(env: env, applicationName: "spotguard-replay", logger: logger) {
                        try await Replay.score($0, truthFile: truth)
                    }
                default:
                    throw ConfigurationError(variable: "replay", problem: "needs send, wait or score")
                }
            }
        ),
        "chaos": (
            usage: "[--sends N] [--lanes N] [--window S] [--stack NAME] [--stack-script PATH] [--logs DIR] [--json FILE]: the fault suite",
            run: { args, env, logger in try await ChaosBench.run(args, env: env, logger: logger) }
        ),
        "sef-fill": (
            usage: "CLIENT AGENT REPORTS POOLS: publish REPORTS pricing reports of POOLS pools each to the SEF queue",
            run: { args, env, logger in
                guard args.count == 4, let client = UUID(uuidString: args[0]), let agent = UUID(uuidString: args[1]),
                    let count = Int(args[2]), let poolCount = Int(args[3])
                else { throw ConfigurationError(variable: "arguments", problem: "must be CLIENT AGENT REPORTS POOLS") }
                let pools = benchPools(poolCount)
                let publisher = BusPublisher(endpoint: try env.amqp(), logger: logger)
                publisher.start()
                while !publisher.isConnected { try await Task.sleep(for: .milliseconds(20)) }
                let window = 200
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for lane in 0..<window {
                        group.addTask {
                            var rng = SplitMix64(seed: UInt64(lane))
                            for _ in stride(from: lane, to: count, by: window) {
                                let now = Date()
                                let report = PricingReport(
                                    reportId: UUID(), clientId: client, agentId: agent, instanceId: nil,
                                    pools: pools.map { PoolPrice(poolId: $0, price: Double(Int.random(in: 300...340, using: &rng)) / 10_000) },
                                    onDemandPrice: 0.0416, observedAt: now, receivedAt: now)
                                try await publisher.publish(
                                    Envelope(id: report.reportId, type: RoutingKey.pricingReported, producer: "spotguard-bench",
                                             payload: PricingReported.report(report)))
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                print("queued_reports=\(count) points=\(count * pools.count)")
                await publisher.shutdown()
            }
        ),
        "codec": (
            usage: "N: microseconds per encode and decode of a 10-pool pricing report envelope, and per SQL timestamp",
            run: { args, _, _ in
                let n = args.first.flatMap(Int.init) ?? 5000
                let now = Date()
                let report = PricingReport(
                    reportId: UUID(), clientId: UUID(), agentId: UUID(), instanceId: nil,
                    pools: benchPools(10).map { PoolPrice(poolId: $0, price: 0.0312) }, onDemandPrice: 0.0416,
                    observedAt: now, receivedAt: now)
                let envelope = Envelope(type: RoutingKey.pricingReported, producer: "bench", payload: PricingReported.report(report))
                func time(_ label: String, _ body: () throws -> Void) rethrows {
                    let start = ContinuousClock.now
                    for _ in 0..<n { try body() }
                    print(String(format: "%@_us=%.1f", label, (ContinuousClock.now - start).seconds * 1e6 / Double(n)))
                }
                let data = try WireJSON.encoder().encode(envelope)
                try time("encode") { _ = try WireJSON.encoder().encode(envelope) }
                try time("decode") { _ = try WireJSON.decoder().decode(Envelope<PricingReported>.self, from: data) }
                time("timestamp_format") { _ = Timestamp.format(now) }
                time("timestamp_parse") { _ = Timestamp.parse("2026-11-23T06:20:00.123Z") }
                time("sql_timestamp") { _ = now.pgText }
            }
        ),
        "pools": (
            usage: "POOLS: print a pricing-report body with POOLS pools (for load generators)",
            run: { args, _, _ in
                let pools = benchPools(args.first.flatMap(Int.init) ?? 10)
                let entries = pools.enumerated().map { #"{"id": "\#($1.rawValue)", "price": 0.03\#($0 % 10)1}"# }
                print(#"{"pools": [\#(entries.joined(separator: ", "))], "on_demand_price": 0.0416}"#)
            }
        ),
        "publish": (
            usage: "MESSAGES WINDOW: confirmed publishes per second with WINDOW in flight",
            run: { args, env, logger in
                let messages = args.first.flatMap(Int.init) ?? 20_000
                let window = args.dropFirst().first.flatMap(Int.init) ?? 200
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
        ),
        "copy": (
            usage: "ROWS: COPY rows per second into a table shaped like spot_price_snapshots",
            run: { args, env, logger in
                let rows = args.first.flatMap(Int.init) ?? 200_000
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
        ),
    ])

/// Up to 30 pools: five us-east-1 zones of six instance types, as an agent reporting its own
/// type and alternatives would send.
func benchPools(_ n: Int) -> [PoolID] {
    let types = ["t3.medium", "m5.large", "c5.large", "r5.large", "m6i.large", "c6i.large"]
    let zones = ["a", "b", "c", "d", "f"]
    let all = types.flatMap { t in zones.map { PoolID(rawValue: "\(t).us-east-1\($0)")! } }
    return Array(all.prefix(max(1, min(n, all.count))))
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
