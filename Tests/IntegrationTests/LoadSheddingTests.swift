import Foundation
import SpotModels
import SpotRuntime
import Testing

extension IntegrationTests {
    @Suite struct LoadSheddingTests {
        /// A report that waited past the bound between its head being read and its handler
        /// starting is refused; one stamped by no server (or a clock gone backwards) is not.
        @Test func aReportThatWaitedTooLongForAThreadIsRefused() {
            let admission = Admission(limit: 4, maxWait: .milliseconds(500))
            #expect(admission.waitedTooLong(received: 1_000_000_000, now: 1_600_000_000))
            #expect(!admission.waitedTooLong(received: 1_000_000_000, now: 1_400_000_000))
            #expect(!admission.waitedTooLong(received: nil, now: 9_000_000_000))
            #expect(!admission.waitedTooLong(received: 2_000_000_000, now: 1_000_000_000))
            #expect(!Admission(limit: 4).waitedTooLong(received: 0, now: 9_000_000_000))
        }

        /// Past its limit of reports in progress ingest answers at once, 503 `overloaded` with
        /// `Retry-After: 1`, instead of queueing. Two slots, the broker paused so the reports
        /// holding them wait for their publish deadline, six reports at once: the four without a
        /// slot are refused as overloaded, the two with one end 503 when the deadline passes, and
        /// the health routes are not limited meanwhile. With the broker back a report is accepted
        /// again. (Without the limit all six wait for the deadline.)
        @Test func reportsBeyondTheLimitAreRefusedAtOnceNotQueued() async throws {
            let ingest = try await ServiceProcess.start(
                "spotguard-ingest", portVariable: "SPOTGUARD_INGEST_PORT",
                environment: ["SPOTGUARD_INGEST_REPORT_CONCURRENCY": "2", "SPOTGUARD_PUBLISH_TIMEOUT_MS": "4000"])
            try await ServiceProcess.with(ingest) { ingest in
                let token = try await AgentHarness.client(ingest, "Shedding")
                let reg = try await ingest.send(
                    "POST", "/api/agents/register", token: token, json: #"{"logical_agent_id": "\#(TestStack.uniqueName("shed"))"}"#)
                let agent = try #require(reg.id("agent_id"))
                func heartbeat() async throws -> ServiceProcess.Reply {
                    try await ingest.send(
                        "POST", "/api/agents/\(agent)/heartbeat", token: token,
                        json: #"{"status": "online", "observed_at": "\#(Timestamp.format(Date()))"}"#)
                }
                #expect(try await heartbeat().status == 202)
                try await TestStack.stack("broker-pause")
                let replies: [ServiceProcess.Reply]
                let live: Int
                do {
                    async let answers = withThrowingTaskGroup(of: ServiceProcess.Reply.self) { group in
                        for _ in 0..<6 { group.addTask { try await heartbeat() } }
                        return try await group.reduce(into: []) { $0.append($1) }
                    }
                    try await Task.sleep(for: .milliseconds(500))
                    live = try await ingest.send("GET", "/health/live").status
                    replies = try await answers
                } catch {
                    try await TestStack.stack("broker-resume")
                    throw error
                }
                try await TestStack.stack("broker-resume")
                let overloaded = replies.filter { $0.errorCode == "overloaded" }
                #expect(replies.allSatisfy { $0.status == 503 }, "\(replies.map(\.status))")
                #expect(overloaded.count == 4, "\(replies.map { $0.errorCode ?? "-" })")
                #expect(overloaded.allSatisfy { $0.headers["retry-after"] == "1" })
                #expect(live == 200, "an overloaded ingest is still live")
                #expect(await TestStack.eventually(timeout: .seconds(20)) { (try? await heartbeat().status) == 202 }, "accepted again")
            }
        }
    }
}
