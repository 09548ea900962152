import AgentApp
import Foundation
import IMDSMock
import SpotCloud
import SpotStore
import Testing

extension IntegrationTests {
    @Suite struct AgentClockTests {
        /// An instance whose clock is ten minutes off either way: the agent (its code, in this
        /// process, on a clock that is off) learns the server's time from the answers' `Date` and
        /// stamps its heartbeat and prices with it. Uncorrected, ingest refuses every report ten
        /// minutes ahead as `timestamp_in_future`, and files the prices ten minutes back when behind.
        @Test(arguments: [600.0, -600.0]) func stampsItsReportsWithTheServersTimeWhenItsClockIsOff(_ skew: Double) async throws {
            let store = try await TestStack.store()
            let harness = try AgentHarness()
            let imds = try await harness.instance()
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("agent-clock-\(UUID())").path
            defer { try? FileManager.default.removeItem(atPath: dir) }
            try await ServiceProcess.withIngest { ingest in
                try await withSEF {
                    let token = try await AgentHarness.client(ingest, "Skewed clock")
                    let logical = TestStack.uniqueName("skew")
                    try await imds.serving { url in
                        let env = [
                            "SPOTGUARD_AGENT_SERVER": ingest.base, "SPOTGUARD_AGENT_TOKEN": token, "SPOTGUARD_AGENT_LOGICAL_AGENT_ID": logical,
                            "SPOTGUARD_AGENT_SPOOL_DIR": dir + "/spool", "SPOTGUARD_AGENT_TOKEN_FILE": dir + "/token", "AWS_REGION": "us-east-1",
                            "AWS_ENDPOINT_URL_EC2": harness.moto.absoluteString, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_EC2_METADATA_SERVICE_ENDPOINT": url.absoluteString,
                        ]
                        let clock = ClockOffset(local: { Date().addingTimeInterval(skew) })
                        let metadata = IMDSClient(env: env)
                        var ec2 = try EC2Client.fromEnvironment(env, imds: metadata)
                        ec2.clock = clock
                        let api = AgentAPI(server: URL(string: ingest.base)!, token: token, clock: clock)
                        let agent = Agent(
                            configuration: try AgentConfiguration(env: env), imds: metadata, ec2: ec2, api: api,
                            spool: try Spool(directory: dir + "/spool", api: api, logger: TestStack.logger), logger: TestStack.logger)
                        try await agent.start()
                        #expect(abs(clock.offset + skew) <= 1.5, "the offset learned from registering: \(clock.offset)")
                        try await agent.heartbeat()
                        try await agent.reportPrices()
                        #expect(await agent.spool.flush(), "every report taken")
                        let refused = (try? FileManager.default.contentsOfDirectory(atPath: dir + "/spool/refused")) ?? []
                        #expect(refused.isEmpty, "reports refused: \(refused)")
                        func prices(_ condition: String) async throws -> Int {
                            try await SEFQuery.count(
                                store,
                                """
                                SELECT count(*) FROM pricing_submissions_raw r JOIN agents a ON a.id = r.source_agent_id
                                 WHERE a.logical_agent_id = $1 AND \(condition)
                                """, [logical])
                        }
                        #expect(try await TestStack.eventually(timeout: .seconds(30)) { try await prices("true") >= 5 }, "the agent's prices arrive")
                        let off = try await prices("abs(extract(epoch FROM r.observed_at - r.received_at)) > 5")
                        #expect(off == 0, "\(off) prices stamped more than 5 s from the server's time (clock \(skew) s off)")
                    }
                }
            }
            await store.shutdown()
        }
    }
}
