import ArgumentParser
import Foundation
import Logging
import SpotBus
import SpotFleet
import SpotModels
import SpotRuntime
import SpotStore
import ToolSupport

/// `spotguard-bench backlog MESSAGES` (reliability plan L3): MESSAGES one-pool price reports
/// published straight to the bus, confirmed, while no service runs — the backlog an outage of
/// the consumers leaves — then the services started and the backlog drained. Every few seconds
/// it samples the SEF's queue, the broker's memory against its limit and the broker's alarms.
/// Passes when every report's row is in `pricing_submissions_raw` once, the services' queues are
/// empty and no alarm was raised.
struct BacklogCommand: ServiceSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "backlog", abstract: "Queue MESSAGES price reports with no service running, then drain them (reliability plan L3).")
    @Argument(help: "Reports to queue (1000 to 2000000), one row each.") var messages = 1_000_000
    @Option(help: "The private stack.") var stack = "bench"
    @Option(name: .customLong("stack-script"), help: "The stack script.") var stackScript = "deploy/stack.sh"
    @Option(help: "Write the figures to this file as JSON.") var json: String?

    func validate() throws {
        guard (1000...2_000_000).contains(messages) else { throw ValidationError("MESSAGES must be 1000 to 2000000") }
    }

    struct Figures: Codable {
        var messages: Int
        var publishSeconds: Double
        var drainSeconds: Double
        var peakQueued: Int
        var brokerMemoryPeakMebibytes: Double
        var brokerMemoryLimitMebibytes: Double
        var alarms: [String]
        var rows: Int
        var distinctRows: Int
        var queuesLeft: [String: Int]
        var failures: [String]
    }

    func run(env: EnvironmentReader, logger: Logger) async throws {
        let options = try ChaosBench.Options.parse(["--stack", stack, "--stack-script", stackScript])
        let (store, publisher) = try ChaosBench.connect(env, logger: logger)
        for _ in 0..<500 where !publisher.isConnected { try await Task.sleep(for: .milliseconds(20)) }
        let family = "bl" + String((0..<6).map { _ in "abcdefghijklmnopqrstuvwxyz".randomElement()! })
        let (client, _) = try await ClientDirectory(store: store, ttl: .seconds(0)).createClient(name: "backlog \(family)", email: nil)
        let pools = ["large", "xlarge", "2xlarge", "4xlarge"].flatMap { size in "abcdef".map { "\(family).\(size).us-east-1\($0)" } }
        try await store.transaction { try Pools.ensure(pools.compactMap(PoolID.init(rawValue:)), on: $0) }
        try await BenchFixtures.agents(1, of: client, in: pools, store: store)
        let agent = try await store.withConnection { try $0.query("SELECT id FROM agents WHERE client_id = $1", [client])[0].decode(UUID.self, at: 0) }

        // the reports: one pool each, observed over the last six days in order
        let (count, span) = (messages, 6 * 86_400.0)
        let start = Date().addingTimeInterval(-span)
        let published = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<200 {
                group.addTask {
                    for i in stride(from: lane, to: count, by: 200) {
                        let pool = PoolID(rawValue: pools[i % pools.count])!
                        let report = PricingReport(
                            reportId: UUID(), clientId: client, agentId: agent, instanceId: nil,
                            pools: [PoolPrice(poolId: pool, price: 0.03 + Double(i % 97) / 10_000)], onDemandPrice: 0.0416,
                            observedAt: start.addingTimeInterval(span * Double(i) / Double(count)), receivedAt: Date())
                        try await publisher.publish(
                            Envelope(
                                id: report.reportId, type: RoutingKey.pricingReported, producer: "spotguard-bench", payload: PricingReported.report(report)))
                    }
                }
            }
            try await group.waitForAll()
        }
        await publisher.shutdown()
        var figures = Figures(
            messages: count, publishSeconds: (ContinuousClock.now - published).seconds, drainSeconds: 0, peakQueued: 0, brokerMemoryPeakMebibytes: 0,
            brokerMemoryLimitMebibytes: 0, alarms: [], rows: 0, distinctRows: 0, queuesLeft: [:], failures: [])
        ChaosBench.say("backlog: \(count) reports queued in \(String(format: "%.1f", figures.publishSeconds)) s; starting the services")

        let fleet = try ChaosFleet(
            binDir: URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path,
            logDir: ".spotguard/\(stack)/backlog", environment: try ChaosBench.serviceEnvironment(env, proxies: nil))
        // the whole backlog, before any consumer (the broker's queue counts lag by seconds)
        for _ in 0..<10 {
            try await sample(options, into: &figures)
            if figures.peakQueued >= count { break }
            try await Task.sleep(for: .seconds(1))
        }
        let drained = ContinuousClock.now
        do {
            try await fleet.startAll(copies: [:])
            let deadline = drained + .seconds(max(600, count / 200))
            while ContinuousClock.now < deadline {
                try await sample(options, into: &figures)
                figures.rows = try await ChaosBench.count(store, family: family)
                ChaosBench.say("backlog: \(figures.rows) of \(count) rows after \(Int((ContinuousClock.now - drained).seconds)) s")
                if figures.rows >= count { break }
                try await Task.sleep(for: .seconds(5))
            }
            figures.drainSeconds = (ContinuousClock.now - drained).seconds
            try await sample(options, into: &figures)
            // the last messages are acknowledged after their rows commit, and the counts lag
            figures.queuesLeft = try await ChaosBench.drainedQueues(options, also: "spotguard.sef").filter { $0.value > 0 }
        } catch {
            // the services do not outlive a failed drain
            try? await fleet.stopAll()
            await store.shutdown()
            throw error
        }
        try await fleet.stopAll()
        (figures.rows, figures.distinctRows) = try await store.withConnection { conn in
            let row = try conn.query(
                "SELECT count(*), count(DISTINCT submission_id) FROM pricing_submissions_raw WHERE pool_id LIKE $1 || '.%'", [family])[0]
            return (try row.decode(Int.self, at: 0), try row.decode(Int.self, at: 1))
        }
        await store.shutdown()
        if figures.rows != count || figures.distinctRows != count {
            figures.failures.append("\(figures.rows) rows (\(figures.distinctRows) distinct) of \(count)")
        }
        if !figures.alarms.isEmpty { figures.failures.append("broker alarms: \(figures.alarms)") }
        if !figures.queuesLeft.isEmpty { figures.failures.append("messages left in \(figures.queuesLeft)") }
        ChaosBench.say(
            String(
                format:
                    "backlog: %d reports, published in %.1f s (%.0f/s), drained in %.1f s (%.0f/s); SEF queue peak %d; broker memory peak %.0f MiB of its %.0f MiB limit; alarms %@",
                count, figures.publishSeconds, Double(count) / figures.publishSeconds, figures.drainSeconds, Double(count) / figures.drainSeconds,
                figures.peakQueued, figures.brokerMemoryPeakMebibytes, figures.brokerMemoryLimitMebibytes,
                figures.alarms.isEmpty ? "none" : figures.alarms.joined(separator: ", ")))
        if let json {
            try WireJSON.encoder(pretty: true).encode(figures).write(to: URL(fileURLWithPath: json))
        }
        guard figures.failures.isEmpty else { throw FailoverBench.BenchFailure("backlog: " + figures.failures.joined(separator: "; ")) }
    }

    /// The SEF's queue and the broker's memory, limit and alarms (`stack.sh broker-memory`).
    private func sample(_ options: ChaosBench.Options, into figures: inout Figures) async throws {
        figures.peakQueued = max(figures.peakQueued, try await ChaosBench.queueDepths(options)["spotguard.sef", default: 0])
        let fields = try await ChaosBench.stackOutput(options, "broker-memory").split(separator: " ", maxSplits: 2)
        guard fields.count == 3, let used = Double(fields[0]), let limit = Double(fields[1]) else { return }
        figures.brokerMemoryPeakMebibytes = max(figures.brokerMemoryPeakMebibytes, used / 1_048_576)
        figures.brokerMemoryLimitMebibytes = limit / 1_048_576
        if fields[2] != "[]", !figures.alarms.contains(String(fields[2])) { figures.alarms.append(String(fields[2])) }
    }
}
