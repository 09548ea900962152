import Foundation
import Testing
import ToolSupport

extension IntegrationTests {
    /// Reliability plan L3 in CI's budget: `spotguard-bench backlog` (which `make chaos` runs with
    /// a million reports) with 20,000 on the test stack — queued while no service runs, then
    /// drained by the services: every row once, the queues empty, no broker alarm.
    @Suite struct BacklogTests {
        @Test func aBacklogQueuedWhileTheServicesWereDownDrainsCompletely() async throws {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("backlog-\(UUID())")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            let json = dir.appendingPathComponent("backlog.json").path
            let output = dir.appendingPathComponent("backlog.txt").path
            let status = try await ChildProcess(
                try TestStack.binDir + "/spotguard-bench",
                [
                    "backlog", "20000", "--stack", TestStack.stackName, "--stack-script",
                    TestStack.repoRoot.appendingPathComponent("deploy/stack.sh").path, "--json", json,
                ],
                output: output, errors: true
            ).exitStatus()
            let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
            print(text.split(separator: "\n").filter { $0.hasPrefix("backlog:") }.suffix(3).joined(separator: "\n"))
            #expect(status == 0, "spotguard-bench backlog exited \(status): \(text.split(separator: "\n").suffix(4).joined(separator: " | "))")
            let figures = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any])
            #expect(figures["rows"] as? Int == 20_000 && figures["distinct_rows"] as? Int == 20_000, "\(figures)")
            #expect((figures["peak_queued"] as? Int ?? 0) >= 20_000, "the backlog was queued whole before the services started: \(figures)")
            #expect((figures["alarms"] as? [Any])?.isEmpty == true && (figures["queues_left"] as? [String: Any])?.isEmpty == true, "\(figures)")
        }
    }
}
