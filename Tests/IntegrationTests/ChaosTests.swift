import Foundation
import SpotRuntime
import Testing
import ToolSupport

extension IntegrationTests {
    /// Reliability plan F1, F2, F3, F4, F5, F6, F8, F9, F11, F14 and L1 at 2x saturation, the database out of disk, and the `ha` run (a broker node and the
    /// database primary lost) in CI's budget: `spotguard-bench chaos` (the fault suite `make chaos`
    /// runs with 10,000 sends) with 1,200 sends a run on the test stack.
    @Suite struct ChaosTests {
        @Test func faultsLoseNothingDoubleNothingAndChangeNoCleanRow() async throws {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("chaos-\(UUID())")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            let json = dir.appendingPathComponent("chaos.json").path
            let output = dir.appendingPathComponent("chaos.txt").path
            let driver = try ChildProcess(
                try TestStack.binDir + "/spotguard-bench",
                [
                    "chaos", "--stack", TestStack.stackName, "--stack-script", TestStack.repoRoot.appendingPathComponent("deploy/stack.sh").path,
                    "--sends", "1200", "--window", "4", "--logs", TestStack.repoRoot.appendingPathComponent(".spotguard/\(TestStack.stackName)/chaos").path,
                    "--json", json,
                ],
                output: output, errors: true)
            // a hung suite fails here instead of holding CI: its seven runs take about 12 minutes
            let watchdog = Task {
                try await Task.sleep(for: .seconds(1500))
                driver.signal(SIGKILL)
            }
            let status = await driver.exitStatus()
            watchdog.cancel()
            let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
            print(text.split(separator: "\n").filter { !$0.hasPrefix("20") }.joined(separator: "\n"))  // the table, not the log lines
            // each failure an issue of its own, short: a CI excerpt keeps the lines it can show
            func brief(_ s: some StringProtocol) -> String { s.count > 220 ? s.prefix(220) + "…" : String(s) }
            let written = (try? Data(contentsOf: URL(fileURLWithPath: json))).flatMap { try? JSONSerialization.jsonObject(with: $0) as? [[String: Any]] }
            let failures = (written ?? []).flatMap { run in (run["failures"] as? [String] ?? []).map { "chaos \(run["kind"] as? String ?? "?"): \($0)" } }
            for failure in failures { Issue.record(Comment(rawValue: brief(failure))) }
            guard status == 0 else {
                // a driver that stopped before its results: its last lines, and what the services said
                if failures.isEmpty {
                    for line in text.split(separator: "\n").suffix(3) { Issue.record("spotguard-bench chaos exited \(status): \(brief(line))") }
                }
                let logs = TestStack.repoRoot.appendingPathComponent(".spotguard/\(TestStack.stackName)/chaos")
                let files = (FileManager.default.enumerator(atPath: logs.path)?.allObjects as? [String] ?? []).filter { $0.hasSuffix(".log") }
                for file in files.sorted() {
                    let lines = ((try? String(contentsOf: logs.appendingPathComponent(file), encoding: .utf8)) ?? "").split(separator: "\n")
                    let bad = lines.filter { $0.contains(" error ") || $0.contains(" critical ") || $0.contains("Fatal error") || $0.contains("Crash") }
                    if let last = bad.last { Issue.record("\(file) (\(bad.count) error lines): \(brief(last))") }
                }
                return
            }
            let runs = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [[String: Any]])
            #expect(runs.compactMap { $0["kind"] as? String } == ["reference", "scale", "faults", "network", "broker", "ha", "overload"])
            for run in runs {
                let kind = run["kind"] as? String ?? "?"
                func int(_ key: String) -> Int { run[key] as? Int ?? -1 }
                #expect(int("accepted") == int("unique_messages"), "\(kind): every message is accepted in the end")
                #expect(int("resends_accepted") > 0, "\(kind): the load resends messages")
                #expect(int("expected_rows") > 7_000 && int("present_rows") == int("expected_rows"), "\(kind): rows of every 202")
                #expect(int("missing_rows") == 0 && int("unexpected_rows") == 0 && int("duplicated_rows") == 0, "\(kind)")
                #expect(run["clean_identical"] as? Bool == true && int("clean_rows") > 200, "\(kind): clean data as the reference's")
                #expect((run["queues_left"] as? [String: Any])?.isEmpty == true, "\(kind): nothing left in the services' queues")
                #expect(int("dead_letters_without_reason") == 0, "\(kind)")
            }
            let faults = runs.first { $0["kind"] as? String == "faults" }?["faults"] as? [[String: Any]] ?? []
            #expect(faults.count == 9, "kill -9 of five services, a broker and a database restart, the SEF's table locked, disk full")
            // L1: ingest offered twice what it accepts refuses the excess and times nothing out
            // (the driver's own check fails the run otherwise; here, that the figures say so)
            let saturated = (runs.first { $0["kind"] as? String == "overload" }?["faults"] as? [[String: Any]])?.first
            let answers = saturated?["answers"] as? [String: Int] ?? [:]
            #expect((answers["503"] ?? 0) > 0 && Set(answers.keys).isSubset(of: ["202", "503", "429"]), "\(saturated ?? [:])")
            print("chaos: ingest saturated: \(saturated ?? [:])")
            // 12 s without a free byte where the SEF writes: no commit in that time (the fault
            // struck), then the held batches land (0 lost above); a stack that cannot mount says so
            let disk = faults.first { ($0["fault"] as? String ?? "").hasPrefix("database disk full") }
            if let disk, !(disk["fault"] as? String ?? "").contains("not struck") {
                #expect((disk["commit_stall_seconds"] as? Double ?? 0) >= 8, "the SEF committed nothing while the disk was full: \(disk)")
            } else {
                print("chaos: the disk-full fault was not struck: \(disk ?? [:])")
            }
            let network = runs.first { $0["kind"] as? String == "network" }
            #expect((network?["faults"] as? [Any])?.count == 5, "latency, black hole, reset, mid-frame cut, the SEF stopped")
            // the engines lose a node each: the broker's (twice) and the database's primary
            let ha = runs.first { $0["kind"] as? String == "ha" }?["faults"] as? [[String: Any]] ?? []
            #expect(ha.count == 3, "kill -9 and stop/start of the broker node leading sef, kill -9 of the database primary")
            #expect(ha.allSatisfy { $0["commit_stall_seconds"] is Double && $0["first202_after_seconds"] is Double }, "\(ha)")
            let broker = runs.first { $0["kind"] as? String == "broker" }
            let brokerFaults = broker?["faults"] as? [[String: Any]] ?? []
            #expect(brokerFaults.count == 5, "kill -9 of the broker twice, a pause, a memory alarm, a poison storm: \(brokerFaults)")
            #expect(brokerFaults.allSatisfy { $0["first202_after_seconds"] is Double }, "\(brokerFaults)")
            #expect(broker?["poison_sent"] as? Int == 1200 && broker?["poison_dead_lettered"] as? Int == 1200, "\(broker ?? [:])")
            // the kill -9 of ingest and the broker restart are seen by the senders
            let felt = runs.first { $0["kind"] as? String == "faults" }?["answers"] as? [String: Int] ?? [:]
            #expect(felt.filter { $0.key != "202" }.values.reduce(0, +) > 0, "the faults were felt: \(felt)")
        }
    }
}
