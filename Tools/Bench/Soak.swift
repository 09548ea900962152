import ArgumentParser
import Foundation
import Logging
import SpotFleet
import SpotModels
import SpotRuntime
import SpotStore
import Synchronization
import ToolSupport

/// `spotguard-bench soak`: a steady load of pricing reports against a running stack (`make up`
/// runs the simulated fleet beside it) for `--minutes`, sampling every `--sample-seconds` each
/// service's resident memory and descriptors, the database's connections and largest tables,
/// the queues, and the load's p99; judged by `SoakJudge`, drawn by `SoakChart`.
struct SoakCommand: ServiceSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "soak", abstract: "A steady load for MINUTES with memory, descriptors, queues, tables and p99 sampled; fails on growth.")
    @Option(help: "The stack whose services are sampled (their pid files are in .spotguard/<stack>/pids).") var stack = "dev"
    @Option(name: .customLong("stack-script"), help: "The stack script.") var stackScript = "deploy/stack.sh"
    @Option(help: "How long the load runs.") var minutes = 60.0
    @Option(name: .customLong("sample-seconds"), help: "Seconds between samples.") var sampleSeconds = 60.0
    @Option(help: "Pricing reports per second (three pools each).") var rate = 25.0
    @Option(help: "Agents the reports come from.") var agents = 20
    @Option(help: "Write the samples and the verdict to this file as JSON.") var json: String?
    @Option(help: "Draw the curves into this SVG file.") var svg: String?

    func validate() throws {
        guard minutes > 0, sampleSeconds >= 1, rate > 0, rate <= 2_000, (1...1_000).contains(agents) else {
            throw ValidationError("--minutes > 0, --sample-seconds >= 1, --rate in (0, 2000], --agents 1 to 1000")
        }
    }

    func run(env: EnvironmentReader, logger: Logger) async throws {
        let ingest = try env.require("SPOTGUARD_INGEST_URL")
        let options = try ChaosBench.Options.parse(["--stack", stack, "--stack-script", stackScript])
        let pids = URL(fileURLWithPath: ".spotguard/\(stack)/pids")
        try await ServiceCommand.withStore(env: env, applicationName: "spotguard-bench", logger: logger) { store in
            let family = "sgsoak" + String(UUID().uuidString.lowercased().filter(\.isLetter).prefix(4))
            let token = try await ClientDirectory(store: store, ttl: .seconds(0)).createClient(name: "soak \(family)", email: nil).1.text
            let http = FailoverBench.HTTP(base: ingest, token: token)
            var ids: [String] = []
            for k in 0..<agents {
                let body = try await http.expect(
                    201, "POST", "/api/agents/register",
                    #"{"logical_agent_id": "\#(family)-\#(k)", "pool_id": "\#(family).large.us-east-1a", "mode": "spot", "agent_version": "1.0.0"}"#)
                ids.append(try (body["agent_id"] as? String).orThrow("register: no agent_id in \(body)"))
            }
            let period = SoakPeriod()
            let end = ContinuousClock.now + .seconds(minutes * 60)
            let origin = ContinuousClock.now
            let (lanes, rate) = (min(agents, 16), self.rate)
            let sampleSeconds = self.sampleSeconds
            print("minute  " + "memory MiB per service".padding(toLength: 70, withPad: " ", startingAt: 0) + "p99 ms  refused  queued")
            await withTaskGroup(of: Void.self) { group in
                for lane in 0..<lanes {
                    let mine = stride(from: lane, to: ids.count, by: lanes).map { ids[$0] }
                    group.addTask {
                        var next = ContinuousClock.now
                        var k = 0
                        while next < end {
                            let agent = mine[k % mine.count]
                            k += 1
                            let price = 0.03 + Double(k % 7) * 0.001
                            let report = """
                                {"pools": [{"id": "\(family).large.us-east-1a", "price": \(price)}, {"id": "\(family).large.us-east-1b", "price": \(price + 0.002)}, \
                                {"id": "\(family).large.us-east-1c", "price": \(price + 0.004)}], "on_demand_price": 0.1}
                                """
                            let started = ContinuousClock.now
                            let status = (try? await http.send("POST", "/api/agents/\(agent)/pricing-report", report).0) ?? 0
                            period.add(status: status, ms: (ContinuousClock.now - started) / .milliseconds(1))
                            // paced, never bursting to catch up
                            next = max(next + .seconds(Double(lanes) / rate), ContinuousClock.now)
                            try? await Task.sleep(until: next)
                        }
                    }
                }
                group.addTask {
                    var next = origin
                    while next < end {
                        next = next + .seconds(sampleSeconds)
                        try? await Task.sleep(until: min(next, end))
                        let (requests, refused, p99) = period.take()
                        let sample = await Self.sample(
                            at: (ContinuousClock.now - origin) / .seconds(1), pids: pids, store: store, options: options,
                            requests: requests, refused: refused, p99: p99)
                        period.keep(sample)
                        let memory = sample.rssMebibytes.sorted { $0.key < $1.key }.map {
                            "\($0.key.replacingOccurrences(of: "spotguard-", with: "")) \(Int($0.value))"
                        }
                        print(
                            String(format: "%6.1f  ", sample.at / 60) + memory.joined(separator: " ").padding(toLength: 70, withPad: " ", startingAt: 0)
                                + String(format: "%6.1f  %7d  %6d", p99, refused, sample.queues.values.reduce(0, +)))
                    }
                }
            }
            let taken = period.samples
            let failures = SoakJudge.failures(taken)
            if let svg {
                try SoakChart.svg(taken, title: "soak: \(Int(minutes)) min at \(rate) reports/s, \(agents) agents").write(
                    toFile: svg, atomically: true, encoding: .utf8)
            }
            if let json {
                struct Result: Encodable {
                    var minutes: Double
                    var rate: Double
                    var samples: [SoakSample]
                    var failures: [String]
                }
                try WireJSON.encoder().encode(Result(minutes: minutes, rate: rate, samples: taken, failures: failures)).write(to: URL(fileURLWithPath: json))
            }
            guard failures.isEmpty else { throw FailoverBench.BenchFailure("soak: " + failures.joined(separator: "; ")) }
            print("soak: no growth in memory or descriptors, p99 steady")
        }
    }

    static func sample(
        at: Double, pids: URL, store: PostgresStore, options: ChaosBench.Options, requests: Int, refused: Int, p99: Double
    ) async -> SoakSample {
        var rss: [String: Double] = [:]
        var descriptors: [String: Int] = [:]
        for file in (try? FileManager.default.contentsOfDirectory(atPath: pids.path)) ?? [] where file.hasSuffix(".pid") {
            guard let text = try? String(contentsOf: pids.appendingPathComponent(file), encoding: .utf8),
                let pid = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)),
                let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
                let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
                let kb = Double(line.split(separator: " ").dropFirst().first ?? "")
            else { continue }
            let name = String(file.dropLast(4))
            rss[name] = kb / 1024
            descriptors[name] = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? 0
        }
        let (connections, tables) =
            (try? await store.withConnection { conn -> (Int, [String: Int]) in
                let connections =
                    try conn.query("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'").first?.decode(Int.self, at: 0) ?? 0
                var tables: [String: Int] = [:]
                for row in try conn.query(
                    """
                    SELECT coalesce(p.relname, c.relname), sum(pg_total_relation_size(c.oid))::bigint
                      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
                      LEFT JOIN pg_inherits i ON i.inhrelid = c.oid LEFT JOIN pg_class p ON p.oid = i.inhparent
                     WHERE c.relkind = 'r' GROUP BY 1 ORDER BY 2 DESC LIMIT 8
                    """)
                {
                    tables[try row.decode(String.self, at: 0)] = try row.decode(Int.self, at: 1)
                }
                return (connections, tables)
            }) ?? (0, [:])
        let queues = (try? await ChaosBench.queueDepths(options)) ?? [:]
        return SoakSample(
            at: at, rssMebibytes: rss, descriptors: descriptors, databaseConnections: connections, queues: queues, tableBytes: tables, requests: requests,
            refused: refused, p99ms: p99)
    }
}

/// The answers of the current sample period, and the samples so far.
final class SoakPeriod: Sendable {
    private let state = Mutex<(latencies: [Double], requests: Int, refused: Int)>(([], 0, 0))
    private let kept = Mutex<[SoakSample]>([])

    func keep(_ sample: SoakSample) { kept.withLock { $0.append(sample) } }
    var samples: [SoakSample] { kept.withLock { $0 } }

    func add(status: Int, ms: Double) {
        state.withLock { s in
            s.requests += 1
            if status == 202 { s.latencies.append(ms) } else { s.refused += 1 }
        }
    }

    /// The period's requests, refusals and p99 of its 202s; starts the next period.
    func take() -> (Int, Int, Double) {
        state.withLock { s in
            let sorted = s.latencies.sorted()
            let p99 = sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.99))]
            defer { s = ([], 0, 0) }
            return (s.requests, s.refused, p99)
        }
    }
}

extension Optional {
    fileprivate func orThrow(_ message: String) throws -> Wrapped {
        guard let self else { throw FailoverBench.BenchFailure(message) }
        return self
    }
}
