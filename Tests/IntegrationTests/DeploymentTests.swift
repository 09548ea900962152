import Foundation
import SpotRuntime
import Testing
import ToolSupport

extension IntegrationTests {
    @Suite struct DeploymentTests {
        /// The stack's admin token and its settings file are readable by their owner only.
        @Test func stackSecretsAreForTheirOwnerOnly() throws {
            let dir = try TestStack.env.require("SPOTGUARD_STACK_DIR")
            for file in ["admin-token", "env"] {
                let mode = try FileManager.default.attributesOfItem(atPath: "\(dir)/\(file)")[.posixPermissions] as? Int
                #expect(mode == 0o600, "\(file) has mode \(String(mode ?? 0, radix: 8))")
            }
        }

        /// docker-compose.yml is valid (checked by docker-compose itself, since no Docker engine
        /// runs here) and has one service per SpotGuard executable besides the two brokers and
        /// the gateway (Caddy) in front of ingest and the console.
        @Test func composeFileIsValidAndRunsEveryExecutable() async throws {
            let output = FileManager.default.temporaryDirectory.appendingPathComponent("compose-\(UUID()).txt").path
            var env = ProcessInfo.processInfo.environment
            env["SPOTGUARD_ADMIN_TOKEN"] = "compose-check-token-0123456789"
            let compose = TestStack.repoRoot.appendingPathComponent("docker-compose.yml").path
            let status = try await ChildProcess("docker-compose", ["-f", compose, "config", "--services"], environment: env, output: output)
                .exitStatus()
            #expect(status == 0)
            let services = Set(try String(contentsOfFile: output, encoding: .utf8).split(separator: "\n").map(String.init))
            try? FileManager.default.removeItem(atPath: output)

            let executables = try FileManager.default.contentsOfDirectory(atPath: try TestStack.binDir)
                // the bench and the simulator are tools, and the agent runs on customers' instances, not in the stack
                .filter { $0.hasPrefix("spotguard-") && !$0.contains(".") && !["spotguard-bench", "spotguard-agent", "spotguard-sim"].contains($0) }
                .map { String($0.dropFirst("spotguard-".count)) }
            #expect(!executables.isEmpty)
            #expect(services == Set(executables + ["postgres", "rabbitmq", "gateway"]))
        }

        /// docker-compose.ha.yml on top: three broker nodes, and every service that connects to
        /// the broker lists all three.
        @Test func haComposeFileRunsThreeBrokerNodesEveryServiceKnows() async throws {
            let output = FileManager.default.temporaryDirectory.appendingPathComponent("compose-ha-\(UUID()).txt").path
            defer { try? FileManager.default.removeItem(atPath: output) }
            var env = ProcessInfo.processInfo.environment
            env["SPOTGUARD_ADMIN_TOKEN"] = "compose-check-token-0123456789"
            env["SPOTGUARD_RABBITMQ_COOKIE"] = "compose-check-cookie"
            let files = ["docker-compose.yml", "docker-compose.ha.yml"].flatMap { ["-f", TestStack.repoRoot.appendingPathComponent($0).path] }
            let status = try await ChildProcess("docker-compose", files + ["config"], environment: env, output: output).exitStatus()
            #expect(status == 0)
            let config = try String(contentsOfFile: output, encoding: .utf8)
            for node in ["rabbitmq-2:", "rabbitmq-3:"] { #expect(config.contains("\n  \(node)\n"), "service \(node)") }
            let urls = config.split(separator: "\n").filter { $0.contains("SPOTGUARD_AMQP_URL:") }
            #expect(urls.count == 6, "ingest, sef, replicas, decisions, notifier, console")
            #expect(urls.allSatisfy { $0.hasSuffix("@rabbitmq:5672,rabbitmq-2:5672,rabbitmq-3:5672/") }, "\(urls)")
            #expect(config.components(separatedBy: "20-cluster.conf").count - 1 == 3, "the three nodes find each other")
        }
    }
}
