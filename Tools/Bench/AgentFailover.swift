import Foundation
import IMDSMock
import SpotStore

/// Notice visible in IMDS → failover committed, with a real `spotguard-agent` process per
/// instance watching its own IMDS mock (every second, its default): each agent first gets a
/// ready replica over HTTP, then its notice is armed and the time until the coordinator
/// committed the promotion (`failover_completed_at`) is measured, 4 agents at a time. The
/// agents have no EC2 endpoint here, so their price loops only log failures.
enum AgentFailoverBench {
    static func run(ingest: String, token: String, agents count: Int, store: PostgresStore) async throws {
        let http = FailoverBench.HTTP(base: ingest, token: token)
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("spotguard-agent").path
        let run = UUID().uuidString.prefix(8).lowercased()
        let latencies = try await FailoverBench.concurrently(Array(0..<count), width: 4) { i -> Double in
            let logical = "agent-failover-\(run)-\(i)"
            let agent = try await FailoverBench.readyAgent(http, logical: logical, instance: FailoverBench.randomInstance())
            let imds = IMDSMock(identity: .init(instanceId: agent.instance, instanceType: "t3.medium", availabilityZone: "us-east-1a"))
            return try await imds.serving { url -> Double in
                let spool = FileManager.default.temporaryDirectory.appendingPathComponent("bench-spool-\(run)-\(i)").path
                defer { try? FileManager.default.removeItem(atPath: spool) }
                let process = Process()
                process.executableURL = URL(fileURLWithPath: binary)
                process.arguments = ["run"]
                var env = ProcessInfo.processInfo.environment
                env.merge([
                    "SPOTGUARD_AGENT_SERVER": ingest, "SPOTGUARD_AGENT_TOKEN": token, "SPOTGUARD_AGENT_LOGICAL_AGENT_ID": logical,
                    "SPOTGUARD_AGENT_SPOOL_DIR": spool, "SPOTGUARD_AGENT_PRICE_SECONDS": "3600", "AWS_REGION": "us-east-1",
                    "AWS_ENDPOINT_URL_EC2": "http://127.0.0.1:9/", "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                    "AWS_EC2_METADATA_SERVICE_ENDPOINT": url.absoluteString, "SPOTGUARD_LOG_LEVEL": "critical",
                ]) { _, new in new }
                process.environment = env
                try process.run()
                let latency: Double
                do {
                    latency = try await measure(agent: agent, imds: imds, store: store)
                } catch {
                    await stop(process)
                    throw error
                }
                await stop(process)
                return latency
            }
        }
        let sorted = latencies.sorted()
        func pct(_ p: Double) -> String { String(format: "%.1f", sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)]) }
        print(
            "agent_notice_p50_ms=\(pct(0.5)) agent_notice_p99_ms=\(pct(0.99)) agent_notice_max_ms=\(String(format: "%.1f", sorted.last ?? -1)) agent_notice_count=\(sorted.count)"
        )
    }

    /// SIGTERM, then up to 30 s for a clean exit (the agent finishes its long-poll), then SIGKILL;
    /// waits without blocking a thread, so the other agents' IMDS mocks keep answering.
    static func stop(_ process: Process) async {
        process.terminate()
        for _ in 0..<600 where process.isRunning { try? await Task.sleep(for: .milliseconds(50)) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        for _ in 0..<100 where process.isRunning { try? await Task.sleep(for: .milliseconds(50)) }
    }

    static func measure(agent: FailoverBench.Agent, imds: IMDSMock, store: PostgresStore) async throws -> Double {
        // the agent registered (its version is on the agent row) and watches
        let registered = Date().addingTimeInterval(30)
        while try await Self.count(store, "SELECT count(*) FROM agents WHERE id = $1::uuid AND agent_version IS NOT NULL", agent.id) == 0 {
            guard Date() < registered else { throw FailoverBench.BenchFailure("agent \(agent.id) did not register") }
            try await Task.sleep(for: .milliseconds(20))
        }
        let armed = Date()
        imds.armInterruption()
        let deadline = armed.addingTimeInterval(30)
        while Date() < deadline {
            let rows = try await store.withConnection { conn in
                try conn.query(
                    """
                    SELECT failover_completed_at FROM spot_interruption_events
                     WHERE agent_id = $1::uuid AND instance_id = $2 AND signal_type = 'termination-notice' AND failover_completed
                    """, [agent.id, agent.instance])
            }
            if let done = try rows.first?.decode(Date.self, at: 0) { return done.timeIntervalSince(armed) * 1000 }
            try await Task.sleep(for: .milliseconds(5))
        }
        throw FailoverBench.BenchFailure("no failover for \(agent.id) within 30 s")
    }

    static func count(_ store: PostgresStore, _ sql: String, _ id: String) async throws -> Int {
        try await store.withConnection { try $0.query(sql, [id])[0].decode(Int.self, at: 0) }
    }
}
