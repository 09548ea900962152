import Foundation
import Testing
import ToolSupport

/// Every executable's command line as a user meets it: `--help` with every subcommand named in
/// full, `--version` with the revision, and bad invocations refused with an exit status and a
/// first line that says what to do.
@Suite struct CommandLineTests {
    /// An executable's output (standard output and error) and exit status; an empty value in
    /// `environment` unsets the variable.
    static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) async throws -> (status: Int32, lines: [String]) {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("cli-\(UUID()).txt").path
        defer { try? FileManager.default.removeItem(atPath: output) }
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { $1 }
        env = env.filter { !$0.value.isEmpty }
        let path = executable.hasPrefix("/") ? executable : try TestStack.binDir + "/" + executable
        let status = try await ChildProcess(path, arguments, environment: env, output: output, errors: true).exitStatus()
        let lines = try String(contentsOfFile: output, encoding: .utf8).split(separator: "\n").map(String.init)
        return (status, lines)
    }

    static let subcommands: [String: [String]] = [
        "spotguard-ingest": ["serve", "migrate", "create-client"],
        "spotguard-sef": ["serve", "migrate", "dead-letters", "gap-scan", "refresh-ml", "check-quality", "review"],
        "spotguard-replicas": ["serve", "migrate", "dead-letters", "reconcile"],
        "spotguard-decisions": ["serve", "migrate", "dead-letters", "pass", "savings", "train", "backtest"],
        "spotguard-notifier": ["serve", "migrate", "dead-letters"],
        "spotguard-console": ["serve", "migrate"],
        "spotguard-agent": ["run", "unit"],
        "spotguard-sim": ["run", "drill"],
        "spotguard-bench": [
            "decisions-pass", "failover", "agent-failover", "agent-recovery", "state-shipping", "replay", "chaos", "sef-fill", "codec", "pools", "publish",
            "copy",
        ],
    ]

    @Test(arguments: subcommands.keys.sorted())
    func helpNamesEverySubcommandInFull(executable: String) async throws {
        let (status, lines) = try await Self.run(executable, ["--help"])
        #expect(status == 0)
        #expect(lines.first?.hasPrefix("OVERVIEW: ") == true, "\(lines.first ?? "")")
        #expect(lines.contains { $0.hasPrefix("USAGE: \(executable) ") })
        // each subcommand on a line of its own, its name whole (not cut to a column's width)
        let listed = Set(lines.compactMap { $0.hasPrefix("  ") ? $0.split(separator: " ").first.map(String.init) : nil })
        for name in Self.subcommands[executable] ?? [] { #expect(listed.contains(name), "\(executable) --help lists \(name)") }
    }

    @Test(arguments: subcommands.keys.sorted())
    func versionNamesTheRevision(executable: String) async throws {
        let git = try await Self.run("/usr/bin/git", ["-C", TestStack.repoRoot.path, "rev-parse", "--short=12", "HEAD"])
        let revision = try #require(git.lines.first)
        let (status, lines) = try await Self.run(executable, ["--version"])
        #expect(status == 0)
        #expect(lines == ["\(executable) \(revision)"] || lines == ["\(executable) \(revision)-dirty"], "\(lines)")
    }

    struct Bad: Sendable, CustomTestStringConvertible {
        var executable: String
        var arguments: [String]
        var environment: [String: String] = [:]
        var status: Int32
        var firstLine: String
        var testDescription: String { "\(executable) \(arguments.joined(separator: " "))" }
    }

    static let badInvocations: [Bad] = [
        Bad(
            executable: "spotguard-sim", arguments: ["run", "--agent", "40"], status: 64,
            firstLine: "Error: Unknown option '--agent'. Did you mean '--agents'?"),
        Bad(
            executable: "spotguard-sim", arguments: ["drill", "--agent", "sim-01", "--kind", "explode"], status: 64,
            firstLine: "Error: The value 'explode' is invalid for '--kind <kind>'"),
        Bad(
            executable: "spotguard-sim", arguments: ["run", "--ingest", "http://127.0.0.1:1", "--admin-token", "t", "--hour-seconds", "fast"],
            status: 2, firstLine: "spotguard-sim: --hour-seconds must be a number in 0.05…3600.0"),
        Bad(
            executable: "spotguard-sim", arguments: ["drill", "--agent", "sim-01", "--kind", "loss", "--sim", "http://127.0.0.1:9"], status: 1,
            firstLine: "spotguard-sim: cannot reach the simulator at http://127.0.0.1:9"),
        Bad(executable: "spotguard-sef", arguments: ["gap-fill"], status: 64, firstLine: "Error: Unexpected argument 'gap-fill'"),
        Bad(
            executable: "spotguard-notifier", arguments: ["dead-letters", "purge"], status: 64,
            firstLine: "Error: The value 'purge' is invalid for '<action>'"),
        Bad(executable: "spotguard-ingest", arguments: ["create-client"], status: 64, firstLine: "Error: Missing expected argument '--name <name>'"),
        Bad(executable: "spotguard-decisions", arguments: ["train", "--days", "1"], status: 64, firstLine: "Error: --days must be 2 to 365"),
        Bad(
            executable: "spotguard-decisions", arguments: ["savings", "--from", "yesterday"], status: 64,
            firstLine: "Error: --from must be a date like 2026-01-31"),
        Bad(
            executable: "spotguard-decisions", arguments: ["train", "--csv", "/nonexistent/prices.csv"], status: 2,
            firstLine: "spotguard-decisions: cannot read /nonexistent/prices.csv: no such file; check the path"),
        Bad(
            executable: "spotguard-decisions", arguments: ["backtest", "--csv", "/etc/hostname"], status: 2,
            firstLine: "spotguard-decisions: cannot read /etc/hostname as a price history (no timestamp column)"),
        Bad(
            executable: "spotguard-sef", arguments: ["review"],
            environment: ["SPOTGUARD_DATABASE_URL": "postgresql://spotguard@127.0.0.1:1/spotguard", "SPOTGUARD_LOG_LEVEL": "error"], status: 1,
            firstLine: "spotguard-sef: cannot reach PostgreSQL (connection to server at \"127.0.0.1\", port 1 failed: Connection refused"),
        Bad(
            executable: "spotguard-console", arguments: ["serve"], environment: ["SPOTGUARD_AMQP_URL": "rabbit://nowhere"], status: 2,
            firstLine: "spotguard-console: configuration error: SPOTGUARD_AMQP_URL must look like amqp://"),
        Bad(
            executable: "spotguard-agent", arguments: ["run"], environment: ["SPOTGUARD_AGENT_SERVER": "", "SPOTGUARD_AGENT_CONFIG": ""], status: 2,
            firstLine: "spotguard-agent: configuration error: server is required (SPOTGUARD_AGENT_SERVER)"),
        Bad(
            executable: "spotguard-agent", arguments: ["run"],
            environment: [
                "SPOTGUARD_AGENT_SERVER": "http://127.0.0.1:1", "SPOTGUARD_AGENT_TOKEN": "t", "SPOTGUARD_AGENT_CONFIG": "", "AWS_REGION": "",
                "AWS_DEFAULT_REGION": "", "AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:9",
            ], status: 1,
            firstLine: "spotguard-agent: the instance metadata service does not answer"),
        Bad(
            executable: "spotguard-ingest", arguments: ["serve"], environment: ["SPOTGUARD_LOG_FORMAT": "xml"], status: 2,
            firstLine: "spotguard-ingest: configuration error: SPOTGUARD_LOG_FORMAT must be one of text, json (it is \"xml\")"),
        Bad(
            executable: "spotguard-agent", arguments: ["run"], environment: ["SPOTGUARD_LOG_LEVEL": "loud"], status: 2,
            firstLine: "spotguard-agent: configuration error: SPOTGUARD_LOG_LEVEL must be one of trace, debug, info, notice, warning, error, critical"),
        Bad(
            executable: "spotguard-bench", arguments: ["decisions-pass", "3", "1"], status: 64,
            firstLine: "Error: needs POOLS (at least 5) and AGENTS (at least 1)"),
    ]

    @Test(arguments: badInvocations)
    func badInvocationIsRefusedWithAHint(_ bad: Bad) async throws {
        let (status, lines) = try await Self.run(bad.executable, bad.arguments, environment: bad.environment)
        #expect(status == bad.status, "\(lines)")
        #expect(lines.first?.hasPrefix(bad.firstLine) == true, "first line: \(lines.first ?? "(none)")")
        #expect(!lines.contains { $0.contains("NSCocoaErrorDomain") || $0.contains("NSURLErrorDomain") }, "\(lines)")
        if bad.status == 64 { #expect(lines.contains { $0.contains("--help' for more information") || $0.hasPrefix("Usage: ") }, "\(lines)") }
    }
}
