import ArgumentParser
import Foundation
import Logging
import SimulatorApp
import SimulatorCore
import SpotCLI

/// `spotguard-sim run …` (the simulated region and fleet) and `spotguard-sim drill …` (a
/// failover drill against a running simulator, printed as a timeline).
@main
struct SimCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration.spotguard(
        "spotguard-sim", abstract: "A local cloud: an EC2 endpoint, instance metadata and a simulated fleet running real agents.",
        subcommands: [Run.self, Drill.self, Sample.self])

    /// Runs `body` with the log set up (notice by default); a simulator setting that is wrong is a
    /// usage problem (exit 2), a simulator that does not answer exit 1.
    static func running(_ body: () async throws -> Void) async throws {
        try await CommandLineRunner.run {
            let log = try LogOutput.settings(ProcessInfo.processInfo.environment, defaultLevel: .notice)
            LogOutput.bootstrap(level: log.level, format: log.format)
            do {
                try await body()
            } catch let error as SimConfiguration.Invalid {
                throw UsageProblem(error.description)
            } catch let error as DrillCommand.Unreachable {
                throw Unreachable(error.description)
            }
        }
    }

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the simulated region and its fleet until stopped (or for --sim-hours).",
            discussion: "Every option falls back to SPOTGUARD_SIM_<OPTION> (--hour-seconds: SPOTGUARD_SIM_HOUR_SECONDS).")

        @Option(help: "SpotGuard's agent API (or SPOTGUARD_INGEST_URL).") var ingest: String?
        @Option(help: "The admin token, to create the fleet's client (or SPOTGUARD_ADMIN_TOKEN).") var adminToken: String?
        @Option(help: "Address of the EC2 endpoint and the control API.") var host: String?
        @Option(help: "Port of the EC2 endpoint and the control API (0: any free port).") var port: String?
        @Option(help: "State folder: disks, images, events, the address file.") var dir: String?
        @Option(help: "Seed of the market, the bands and the faults.") var seed: String?
        @Option(help: "A price history to replay (needs --on-demand).") var prices: String?
        @Option(help: "On-demand prices per type.") var onDemand: String?
        @Option(help: "Spot Advisor bands.") var advisor: String?
        @Option(help: "The region (us-east-1).") var region: String?
        @Option(help: "Wall seconds per simulated hour (5).") var hourSeconds: String?
        @Option(help: "Simulated instances with an agent (20, at most 500).") var agents: String?
        @Option(help: "Instance types of the fleet, comma-separated (the market's first two).") var types: String?
        @Option(help: "Share of workloads in manual-replica mode (0.5).") var manualShare: String?
        @Option(help: "Multiplier of the interruption rate (20).") var interruptionScale: String?
        @Option(help: "Share of interruptions preceded by a rebalance recommendation (0.5).") var rebalanceShare: String?
        @Option(help: "Chance that a launch finds no capacity (0.02).") var capacityShortage: String?
        @Option(help: "Workloads never interrupted at random (drill targets), comma-separated.") var spare: String?
        @Option(help: "Seconds from a termination notice to the termination (120).") var noticeSeconds: String?
        @Option(help: "Seconds from a rebalance recommendation to its notice (30).") var rebalanceLeadSeconds: String?
        @Option(help: "Seconds a workload may be without an instance before a replacement (15).") var replaceSeconds: String?
        @Option(help: "Seconds an instance takes to boot (1).") var bootSeconds: String?
        @Option(help: "Seconds an image takes (3).") var imageSeconds: String?
        @Option(help: "Stop after this many simulated hours and write the report.") var simHours: String?
        @Option(help: "Where the report goes.") var report: String?
        @Option(help: "Days of history (prices, switches) sent with past times before the fleet starts (0, at most 7).") var historyDays: String?
        @Option(help: "The agents' heartbeat period in seconds (10).") var agentHeartbeatSeconds: String?
        @Option(help: "The agents' price period in seconds (5).") var agentPriceSeconds: String?
        @Option(help: "The agents' sync period in seconds (3).") var agentSyncSeconds: String?
        @Option(help: "The agents' command long-poll in seconds (20, at most 25).") var agentLongPollSeconds: String?
        @Option(help: "The agents' log level (notice).") var agentLogLevel: String?
        @Option(help: "spotguard-agent (default: next to spotguard-sim).") var agentBinary: String?

        /// The options given, by long name: the one list of options is the properties above.
        var given: [String: String] {
            var out: [String: String] = [:]
            for child in Mirror(reflecting: self).children {
                guard let label = child.label, let value = (child.value as? Option<String?>)?.wrappedValue else { continue }
                let name = label.dropFirst().reduce(into: "") { name, c in name += c.isUppercase ? "-\(c.lowercased())" : String(c) }
                out[name] = value
            }
            return out
        }

        func run() async throws {
            try await SimCommand.running {
                try await Simulator.run(try SimConfiguration(options: given), logger: Logger(label: "spotguard-sim"))
            }
        }
    }

    struct Sample: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "sample-data",
            abstract: "Write a made-up market as the price-history, on-demand and Spot Advisor files ../shared/data holds (same columns).",
            discussion: "For make backtest, make replay and spotguard-decisions train in a clone without AWS's files.")
        @Option(help: "The directory to write to (made when missing).") var out: String
        @Option(help: "Days of hourly prices (1 to 90).") var days = 14
        @Option(help: "The seed: the same seed writes the same files.") var seed: UInt64 = 1

        func validate() throws {
            guard (1...90).contains(days) else { throw ValidationError("--days must be 1 to 90") }
        }

        func run() async throws {
            try await SimCommand.running {
                let market = try Market.synthetic(seed: seed, days: days)
                do {
                    try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
                    for file in SampleData.files(market) {
                        try file.text.write(toFile: "\(out)/\(file.name)", atomically: true, encoding: .utf8)
                        print("\(out)/\(file.name)")
                    }
                } catch let error as CocoaError {
                    throw UsageProblem("cannot write to \(out) (\(error.code.rawValue)); check the path and its permissions")
                }
            }
        }
    }

    struct Drill: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Ask a running simulator for a failover drill and print what happened, with timings.")
        enum Kind: String, ExpressibleByArgument, CaseIterable { case rebalance, termination, loss }

        @Option(help: "The agent whose instance gets the notice.") var agent: String
        @Option(help: "rebalance, termination or loss") var kind: Kind
        @Option(help: "Seconds from the notice to the termination.") var noticeSeconds: Double?
        @Option(help: "The simulator's control API (default: SPOTGUARD_SIM_URL, or the running stack's).") var sim: String?

        func run() async throws {
            try await SimCommand.running {
                try await DrillCommand.run(agent: agent, kind: kind.rawValue, noticeSeconds: noticeSeconds, sim: sim)
            }
        }
    }
}
