import Foundation
import IMDSMock
import SpotStore
import Testing
import ToolSupport

extension IntegrationTests {
    /// The agent as an operator installs it: the Debian package `deploy/agent-package.sh` builds
    /// (`make agent-package` from a release build with the Swift runtime linked in; here from the
    /// test build), its unit checked by systemd's own verifier, installed with `dpkg -i` on this
    /// machine, run as its unit says against the test stack, and purged without a trace.
    @Suite struct AgentPackageTests {
        static let unitPath = "/lib/systemd/system/spotguard-agent.service"

        static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) async throws -> (status: Int32, lines: [String]) {
            try await CommandLineTests.run(executable, arguments, environment: environment)
        }

        /// `KEY=VALUE` lines as systemd's EnvironmentFile reads them (comments and blanks skipped, quotes removed).
        static func environmentFile(_ path: String) -> [String: String] {
            var out: [String: String] = [:]
            for line in ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n") {
                let text = line.trimmingCharacters(in: .whitespaces)
                guard !text.hasPrefix("#"), let eq = text.firstIndex(of: "=") else { continue }
                var value = String(text[text.index(after: eq)...])
                if value.count >= 2, let first = value.first, first == "'" || first == "\"", value.last == first {
                    value = String(value.dropFirst().dropLast())
                }
                out[String(text[..<eq])] = value
            }
            return out
        }

        @Test func buildsInstallsRunsAndPurgesCleanly() async throws {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("agent-package-\(UUID())")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            // the project's own script installs what is missing (systemd-analyze, adduser, deb-systemd-helper)
            let deps = try await Self.run(TestStack.repoRoot.appendingPathComponent("deploy/stack.sh").path, ["package-deps", "test"])
            try #require(deps.status == 0, "stack.sh package-deps: \(deps.lines)")
            let script = TestStack.repoRoot.appendingPathComponent("deploy/agent-package.sh").path
            let built = try await Self.run(
                script, [try TestStack.binDir + "/spotguard-agent", dir.path, "0.0.1-test"], environment: ["SPOTGUARD_DEB_COMPRESSION": "none"])
            #expect(built.status == 0, "\(built.lines)")
            let deb = try #require(built.lines.last { $0.hasSuffix(".deb") })
            let arch = try await Self.run("/usr/bin/dpkg", ["--print-architecture"]).lines.first ?? "?"

            // what dpkg says of it
            let info = try await Self.run("/usr/bin/dpkg-deb", ["--info", deb]).lines.joined(separator: "\n")
            #expect(info.contains("Package: spotguard-agent") && info.contains("Version: 0.0.1-test") && info.contains("Architecture: \(arch)"))
            #expect(info.contains("adduser") && info.contains("postinst") && info.contains("postrm") && info.contains("conffiles"))
            let contents = try await Self.run("/usr/bin/dpkg-deb", ["--contents", deb]).lines
            func entry(_ path: String) -> String? { contents.first { $0.hasSuffix(" .\(path)") } }
            #expect(entry("/usr/bin/spotguard-agent")?.hasPrefix("-rwxr-xr-x root/root") == true)
            #expect(entry(Self.unitPath)?.hasPrefix("-rw-r--r-- root/root") == true)
            #expect(entry("/etc/spotguard/agent.conf")?.hasPrefix("-rw------- root/root") == true, "the settings hold a token: root only")

            // the unit, as systemd's verifier reads it (pointed at the unpacked binary: nothing is installed yet)
            let unpacked = dir.appendingPathComponent("root")
            #expect(try await Self.run("/usr/bin/dpkg-deb", ["-x", deb, unpacked.path]).status == 0)
            let unit = try String(contentsOfFile: unpacked.path + Self.unitPath, encoding: .utf8)
            for line in [
                "User=spotguard-agent", "Restart=always", "RestartPreventExitStatus=2", "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
                "CapabilityBoundingSet=", "StateDirectory=spotguard-agent", "EnvironmentFile=-/etc/spotguard/agent.conf", "WantedBy=multi-user.target",
            ] {
                #expect(unit.split(separator: "\n").contains { $0 == line }, "the unit has \(line)")
            }
            let probe = dir.appendingPathComponent("spotguard-agent.service").path
            try unit.replacingOccurrences(of: "/usr/bin/spotguard-agent", with: unpacked.path + "/usr/bin/spotguard-agent")
                .write(toFile: probe, atomically: true, encoding: .utf8)
            let verified = try await Self.run("/usr/bin/systemd-analyze", ["verify", probe])
            #expect(verified.status == 0 && verified.lines.isEmpty, "systemd-analyze verify: \(verified.lines)")

            // a real install on this machine (the suite runs as root, as `make test` does in CI)
            try #require(getuid() == 0, "installing the package needs root")
            let before = try await Self.run("/usr/bin/dpkg-query", ["-W", "-f=${Status}", "spotguard-agent"])
            try #require(!(before.lines.first ?? "").contains("installed"), "spotguard-agent is installed on this machine already; not touching it")
            let installed = try await Self.run("/usr/bin/dpkg", ["-i", deb])
            #expect(installed.status == 0, "dpkg -i: \(installed.lines)")
            let purge = { _ = try? await Self.run("/usr/bin/dpkg", ["-P", "spotguard-agent"]) }
            do {
                #expect(FileManager.default.isExecutableFile(atPath: "/usr/bin/spotguard-agent"))
                #expect(try await Self.run("/usr/bin/getent", ["passwd", "spotguard-agent"]).status == 0, "the package's system user")
                #expect(
                    FileManager.default.fileExists(atPath: "/etc/systemd/system/multi-user.target.wants/spotguard-agent.service"),
                    "postinst enabled the unit")
                let installedUnit = try await Self.run("/usr/bin/systemd-analyze", ["verify", Self.unitPath])
                #expect(installedUnit.status == 0 && installedUnit.lines.isEmpty, "systemd-analyze verify: \(installedUnit.lines)")
                try await runsAsItsUnitSays()
            } catch {
                await purge()
                throw error
            }
            let purged = try await Self.run("/usr/bin/dpkg", ["-P", "spotguard-agent"])
            #expect(purged.status == 0, "dpkg -P: \(purged.lines)")
            for path in ["/usr/bin/spotguard-agent", Self.unitPath, "/etc/spotguard", "/etc/systemd/system/multi-user.target.wants/spotguard-agent.service"] {
                #expect(!FileManager.default.fileExists(atPath: path), "\(path) is gone after dpkg -P")
            }
            #expect(try await Self.run("/usr/bin/getent", ["passwd", "spotguard-agent"]).status != 0, "the user is gone after dpkg -P")
        }

        /// systemd is not running on the test machine, so the unit is started the way systemd
        /// would: its ExecStart, as its user, with its two environment files (the user data's
        /// `agent.env` written here, pointing at the test stack and the IMDS mock), no new
        /// privileges. The agent registers and stops cleanly on SIGTERM.
        func runsAsItsUnitSays() async throws {
            let unit = try String(contentsOfFile: Self.unitPath, encoding: .utf8).split(separator: "\n").map(String.init)
            func value(_ key: String) -> [String] { unit.filter { $0.hasPrefix(key + "=") }.map { String($0.dropFirst(key.count + 1)) } }
            let exec = try #require(value("ExecStart").first).split(separator: " ").map(String.init)
            let user = try #require(value("User").first)
            let harness = try AgentHarness()
            let imds = try await harness.instance()
            let store = try await TestStack.store()
            let logical = "packaged-\(UUID().uuidString.prefix(8))"
            let spool = "/var/lib/spotguard-agent-test-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: spool, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: spool) }
            #expect(try await Self.run("/usr/bin/chown", ["\(user):\(user)", spool]).status == 0)
            try await ServiceProcess.withIngest { ingest in
                let token = try await AgentHarness.client(ingest, "Packaged agent owner")
                try await imds.serving { url in
                    try """
                    SPOTGUARD_AGENT_SERVER=\(ingest.base)
                    SPOTGUARD_AGENT_TOKEN='\(token)'
                    SPOTGUARD_AGENT_LOGICAL_AGENT_ID=\(logical)
                    SPOTGUARD_AGENT_SPOOL_DIR=\(spool)
                    SPOTGUARD_AGENT_HEARTBEAT_SECONDS=0.5
                    SPOTGUARD_AGENT_ON_DEMAND_PRICE=0.096
                    AWS_REGION=us-east-1
                    AWS_ENDPOINT_URL_EC2=\(harness.moto.absoluteString)
                    AWS_ACCESS_KEY_ID=testing
                    AWS_SECRET_ACCESS_KEY=testing
                    AWS_EC2_METADATA_SERVICE_ENDPOINT=\(url.absoluteString)
                    SPOTGUARD_LOG_LEVEL=warning
                    """.write(toFile: "/etc/spotguard/agent.env", atomically: true, encoding: .utf8)
                    var env = ["PATH": "/usr/bin:/bin"]
                    for file in value("EnvironmentFile") { env.merge(Self.environmentFile(file.hasPrefix("-") ? String(file.dropFirst()) : file)) { $1 } }
                    let log = FileManager.default.temporaryDirectory.appendingPathComponent("packaged-agent-\(UUID()).log").path
                    defer { try? FileManager.default.removeItem(atPath: log) }
                    let agent = try ChildProcess(
                        "/usr/bin/setpriv", ["--reuid=\(user)", "--regid=\(user)", "--clear-groups", "--no-new-privs", "--"] + exec, environment: env,
                        output: log, errors: true)
                    let registered = try await TestStack.eventually {
                        try await SEFQuery.count(store, "SELECT count(*) FROM agents WHERE logical_agent_id = $1 AND agent_version IS NOT NULL", [logical]) == 1
                    }
                    agent.signal(SIGTERM)
                    let status = await agent.exitStatus()
                    let said = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                    #expect(registered, "the installed agent registered as \(user): \(said.suffix(600))")
                    #expect(status == 0, "a clean stop on SIGTERM: \(said.suffix(600))")
                }
            }
            await store.shutdown()
        }
    }
}
