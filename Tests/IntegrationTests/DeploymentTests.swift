import Foundation
import SpotRuntime
import Testing
import ToolSupport

extension IntegrationTests {
    @Suite struct DeploymentTests {
        /// The services the stack runs: the executables built, without `spotguard-`, less the
        /// bench and the simulator (tools) and the agent (it runs on customers' instances).
        static func services() throws -> [String] {
            try FileManager.default.contentsOfDirectory(atPath: try TestStack.binDir)
                .filter { $0.hasPrefix("spotguard-") && !$0.contains(".") && !["spotguard-bench", "spotguard-agent", "spotguard-sim"].contains($0) }
                .map { String($0.dropFirst("spotguard-".count)) }
        }

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
            env["SPOTGUARD_DB_PASSWORD"] = "compose-check-db"
            env["SPOTGUARD_AMQP_PASSWORD"] = "compose-check-amqp"
            let compose = TestStack.repoRoot.appendingPathComponent("docker-compose.yml").path
            let status = try await ChildProcess("docker-compose", ["-f", compose, "config", "--services"], environment: env, output: output)
                .exitStatus()
            #expect(status == 0)
            let services = Set(try String(contentsOfFile: output, encoding: .utf8).split(separator: "\n").map(String.init))
            try? FileManager.default.removeItem(atPath: output)

            let executables = try Self.services()
            #expect(!executables.isEmpty)
            #expect(services == Set(executables + ["postgres", "rabbitmq", "gateway"]))
        }

        /// The compose files follow the Compose Specification (no `version:`), run a RabbitMQ with
        /// quorum queues that is still supported, and hold no password: without its secrets the
        /// file is refused, naming the one to set.
        @Test func composeFilesHoldNoSecretAndASupportedBroker() async throws {
            for name in ["docker-compose.yml", "docker-compose.ha.yml"] {
                let text = try String(contentsOf: TestStack.repoRoot.appendingPathComponent(name), encoding: .utf8)
                #expect(!text.split(separator: "\n").contains { $0.hasPrefix("version:") }, "\(name)")
                #expect(!text.contains("spotguard:spotguard@") && !text.contains("_PASS: spotguard"), "\(name) holds a password")
                let brokers = text.matches(of: /image: rabbitmq:([0-9.]+)/).map { String($0.1) }
                #expect(!brokers.isEmpty && brokers.allSatisfy { $0 == "3.13" || $0.hasPrefix("4") }, "\(name): \(brokers)")
            }
            let output = FileManager.default.temporaryDirectory.appendingPathComponent("compose-bare-\(UUID()).txt").path
            defer { try? FileManager.default.removeItem(atPath: output) }
            var env = ProcessInfo.processInfo.environment
            env["SPOTGUARD_ADMIN_TOKEN"] = "compose-check-token-0123456789"
            env["SPOTGUARD_AMQP_PASSWORD"] = "compose-check-amqp"
            env.removeValue(forKey: "SPOTGUARD_DB_PASSWORD")
            let compose = TestStack.repoRoot.appendingPathComponent("docker-compose.yml").path
            let status = try await ChildProcess("docker-compose", ["-f", compose, "config"], environment: env, output: output, errors: true).exitStatus()
            let said = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
            #expect(status != 0 && said.contains("SPOTGUARD_DB_PASSWORD"), "\(status): \(said.prefix(300))")
        }

        /// docker-compose.ha.yml on top: three broker nodes and two database nodes under Patroni,
        /// and every service lists them all.
        @Test func haComposeFileRunsThreeBrokerNodesAndTwoDatabaseNodesEveryServiceKnows() async throws {
            let output = FileManager.default.temporaryDirectory.appendingPathComponent("compose-ha-\(UUID()).txt").path
            defer { try? FileManager.default.removeItem(atPath: output) }
            var env = ProcessInfo.processInfo.environment
            env["SPOTGUARD_ADMIN_TOKEN"] = "compose-check-token-0123456789"
            env["SPOTGUARD_RABBITMQ_COOKIE"] = "compose-check-cookie"
            env["SPOTGUARD_DB_PASSWORD"] = "compose-check-password"
            env["SPOTGUARD_AMQP_PASSWORD"] = "compose-check-amqp"
            env["SPOTGUARD_REPLICATION_PASSWORD"] = "compose-check-replication"
            let files = ["docker-compose.yml", "docker-compose.ha.yml"].flatMap { ["-f", TestStack.repoRoot.appendingPathComponent($0).path] }
            let status = try await ChildProcess("docker-compose", files + ["config"], environment: env, output: output).exitStatus()
            #expect(status == 0)
            let config = try String(contentsOfFile: output, encoding: .utf8)
            for node in ["rabbitmq-2:", "rabbitmq-3:"] { #expect(config.contains("\n  \(node)\n"), "service \(node)") }
            let urls = config.split(separator: "\n").filter { $0.contains("SPOTGUARD_AMQP_URL:") }
            #expect(urls.count == 6, "ingest, sef, replicas, decisions, notifier, console")
            #expect(urls.allSatisfy { $0.hasSuffix("@rabbitmq:5672,rabbitmq-2:5672,rabbitmq-3:5672/") }, "\(urls)")
            #expect(config.components(separatedBy: "20-cluster.conf").count - 1 == 3, "the three nodes find each other")
            for node in ["postgres-2:", "etcd:"] { #expect(config.contains("\n  \(node)\n"), "service \(node)") }
            #expect(config.components(separatedBy: "image: spotguard-patroni:latest").count - 1 == 3, "two Patroni nodes and etcd")
            let databases = config.split(separator: "\n").filter { $0.contains("SPOTGUARD_DATABASE_URL:") }
            #expect(databases.count == 6 && databases.allSatisfy { $0.hasSuffix("@postgres:5432,postgres-2:5432/spotguard") }, "\(databases)")
        }

        /// deploy/kubernetes passes deploy/check-kubernetes.py (the API's and the operators' schemas,
        /// references, memory requests against the bench), has a Deployment per service executable,
        /// and the check refuses a misspelled field, an unknown engine setting and a request below
        /// what the bench measured.
        @Test func kubernetesManifestsValidateAndTheCheckRefusesBrokenOnes() async throws {
            let python = try TestStack.env.require("SPOTGUARD_TEST_CONTRACT_PYTHON")
            let source = TestStack.repoRoot.appendingPathComponent("deploy/kubernetes")
            func check(_ directory: URL) async throws -> (Int32, String) {
                let output = FileManager.default.temporaryDirectory.appendingPathComponent("k8s-\(UUID()).txt").path
                defer { try? FileManager.default.removeItem(atPath: output) }
                let script = TestStack.repoRoot.appendingPathComponent("deploy/check-kubernetes.py").path
                let status = try await ChildProcess(python, [script, directory.path], output: output, errors: true).exitStatus()
                return (status, (try? String(contentsOfFile: output, encoding: .utf8)) ?? "")
            }
            let (status, text) = try await check(source)
            #expect(status == 0, "\(text)")
            for kind in ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Job", "RabbitmqCluster", "Cluster", "Secret"] {
                #expect(text.contains(kind), "\(kind) checked: \(text)")
            }
            for service in try Self.services() {
                let manifest = (try? String(contentsOf: source.appendingPathComponent("\(service).yaml"), encoding: .utf8)) ?? ""
                #expect(manifest.contains("kind: Deployment\nmetadata:\n  name: spotguard-\(service)\n"), "a Deployment for \(service)")
            }
            let breakages: [(file: String, from: String, to: String, expected: String)] = [
                ("ingest.yaml", "readinessProbe:", "readinesProbe:", "readinesProbe"),
                ("engines.yaml", "  instances: 3", "  instance: 3", "instance"),
                ("decisions.yaml", "memory: 256Mi}", "memory: 192Mi}", "below the"),
            ]
            for b in breakages {
                let copy = FileManager.default.temporaryDirectory.appendingPathComponent("k8s-\(UUID())")
                defer { try? FileManager.default.removeItem(at: copy) }
                try FileManager.default.copyItem(at: source, to: copy)
                let file = copy.appendingPathComponent(b.file)
                let original = try String(contentsOf: file, encoding: .utf8)
                #expect(original.contains(b.from))
                try original.replacingOccurrences(of: b.from, with: b.to).write(to: file, atomically: true, encoding: .utf8)
                let (status, text) = try await check(copy)
                #expect(status == 1 && text.contains(b.expected), "\(b.file) with \(b.to): \(status) \(text)")
            }
        }
    }
}
