import Foundation
import IMDSMock
import SpotCloud
import SpotRuntime
import SpotStore
import Testing
import ToolSupport

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

extension IntegrationTests {
    /// The gateway (`deploy/Caddyfile`, started by `deploy/stack.sh gateway-start` as `make up`
    /// does): TLS from its own CA on one address, HTTP/2, ingest copies balanced and
    /// health-checked, the console behind the same address.
    @Suite struct GatewayTests {
        /// Starts the stack's gateway in front of `ingest` copies and `console`; stops it after.
        static func withGateway(ingest: [ServiceProcess], console: ServiceProcess, _ body: (_ base: String, _ ca: String) async throws -> Void) async throws {
            func port(_ service: ServiceProcess) -> String { "127.0.0.1:\(URL(string: service.base)!.port!)" }
            var env = ProcessInfo.processInfo.environment
            env["SPOTGUARD_GATEWAY_INGEST"] = "to " + ingest.map(port).joined(separator: " ")
            env["SPOTGUARD_GATEWAY_CONSOLE"] = port(console)
            let script = TestStack.repoRoot.appendingPathComponent("deploy/stack.sh").path
            let log = FileManager.default.temporaryDirectory.appendingPathComponent("gateway-\(UUID()).log").path
            defer { try? FileManager.default.removeItem(atPath: log) }
            let started = try await ChildProcess(script, ["gateway-start", "test"], environment: env, output: log, errors: true).exitStatus()
            try #require(started == 0, "gateway-start: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
            let stop = { _ = try? await ChildProcess(script, ["gateway-stop", "test"], output: log, errors: true).exitStatus() }
            do {
                try await body(try TestStack.env.require("SPOTGUARD_GATEWAY_URL"), try TestStack.env.require("SPOTGUARD_CA_BUNDLE"))
            } catch {
                await stop()
                throw error
            }
            await stop()
        }

        /// curl's view: exit status and `-w` output.
        static func curl(_ arguments: [String]) async throws -> (status: Int32, out: String) {
            let out = FileManager.default.temporaryDirectory.appendingPathComponent("curl-\(UUID()).txt").path
            defer { try? FileManager.default.removeItem(atPath: out) }
            let status = try await ChildProcess("/usr/bin/curl", ["-s", "-o", "/dev/null"] + arguments, output: out).exitStatus()
            return (status, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "")
        }

        /// Agents, people and scripts reach SpotGuard on one TLS address: the certificate is the
        /// stack's CA's (an unverified peer is refused by curl and by the agent's own HTTP
        /// client), HTTP/2 is offered, reports spread over every ingest copy and keep being
        /// accepted when one copy stops, the console's login works over it (its Secure cookie),
        /// and the agent registers through it with the CA bundle configured.
        @Test func oneTLSAddressForAgentsAndPeople() async throws {
            let a = try await ServiceProcess.ingest()
            let b = try await ServiceProcess.ingest()
            let console = try await ServiceProcess.start("spotguard-console", portVariable: "SPOTGUARD_CONSOLE_PORT")
            // `a` is stopped halfway through, as a failed copy would be; stopped here on an earlier failure
            let stopA = StopOnce(a)
            do {
                try await run(a, b, console, stopA)
            } catch {
                await stopA.stop()
                throw error
            }
        }

        final class StopOnce: @unchecked Sendable {
            let service: ServiceProcess
            let lock = NSLock()
            var stopped = false
            init(_ service: ServiceProcess) { self.service = service }
            /// The exit status the first time; nil after.
            @discardableResult func stop() async -> Int32? {
                let first = lock.withLock {
                    defer { stopped = true }
                    return !stopped
                }
                return first ? await service.stop() : nil
            }
        }

        func run(_ a: ServiceProcess, _ b: ServiceProcess, _ console: ServiceProcess, _ stopA: StopOnce) async throws {
            try await ServiceProcess.with(console) { console in
                try await ServiceProcess.with(b) { b in
                    try await Self.withGateway(ingest: [a, b], console: console) { base, ca in
                        // TLS from the stack's CA, HTTP/2
                        let h2 = try await Self.curl(["--cacert", ca, "-w", "%{http_version} %{http_code}", base + "/health/ready"])
                        #expect(h2.status == 0 && h2.out == "2 200", "\(h2)")
                        #expect(try await Self.curl([base + "/health/ready"]).status == 60, "curl must refuse a certificate it cannot verify")
                        let unverified = HTTPClientTransport(timeout: 5, proxies: nil)
                        let trusted = HTTPClientTransport(timeout: 5, proxies: nil, caBundle: ca)
                        await #expect(throws: TransportFailure.self) { try await unverified.send(URLRequest(url: URL(string: base + "/health/live")!)) }
                        #expect(try await trusted.send(URLRequest(url: URL(string: base + "/health/live")!)).status == 200)

                        // agent traffic, balanced over both copies
                        let token = try await AgentHarness.client(b, "Gateway")
                        func send(_ method: String, _ path: String, _ json: String? = nil) async throws -> (Int, [String: Any]) {
                            let reply = try await ServiceProcess.send(to: base, via: trusted, method, path, token: token, json: json)
                            return (reply.status, reply.json)
                        }
                        let logical = "gw-\(UUID().uuidString.prefix(8).lowercased())"
                        let (registered, json) = try await send("POST", "/api/agents/register", #"{"logical_agent_id": "\#(logical)"}"#)
                        #expect(registered == 201)
                        let agent = try #require(json["agent_id"] as? String)
                        for _ in 0..<20 { #expect(try await send("POST", "/api/agents/\(agent)/heartbeat", #"{"status": "online"}"#).0 == 202) }
                        for copy in [a, b] {
                            let metrics = String(decoding: try await copy.send("GET", "/metrics").body, as: UTF8.self)
                            let published =
                                metrics.split(separator: "\n").first { $0.hasPrefix("spotguard_bus_published_total") }
                                .flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
                            #expect(published >= 3, "an ingest copy behind the gateway got \(published) of 20 reports")
                        }
                        // one copy stops: every report is still accepted
                        #expect(await stopA.stop() == 0)
                        for _ in 0..<10 { #expect(try await send("POST", "/api/agents/\(agent)/heartbeat", #"{"status": "online"}"#).0 == 202) }

                        // people: the console's login over TLS keeps its session (the cookie is Secure)
                        let browser = Browser(base: base, caBundle: ca)
                        #expect(try await browser.logIn(token: token) == 303)
                        #expect(try await browser.request("GET", "/overview").status == 200)
                        // ingest's own document, beside the console's
                        #expect(try await Self.curl(["--cacert", ca, "-w", "%{http_code}", base + "/ingest/openapi.yaml"]).out == "200")

                        // the agent, verifying the gateway with the CA bundle
                        let harness = try AgentHarness()
                        let imds = try await harness.instance()
                        let store = try await TestStack.store()
                        try await imds.serving { url in
                            try await harness.withAgent(
                                ingest: b, token: token, imds: url, logical: logical,
                                environment: ["SPOTGUARD_AGENT_SERVER": base, "SPOTGUARD_AGENT_CA_BUNDLE": ca]
                            ) {
                                let instance = imds.identity.instanceId
                                let registered = try await TestStack.eventually(timeout: .seconds(15)) {
                                    try await SEFQuery.count(
                                        store, "SELECT count(*) FROM agents WHERE logical_agent_id = $1 AND instance_id = $2", [logical, instance])
                                        == 1
                                }
                                #expect(registered, "the agent registered through the gateway")
                            }
                        }
                        await store.shutdown()
                    }
                }
            }
        }
    }
}
