import Foundation
import SpotModels

/// The fault suite's table and lines.
extension ChaosBench {
    // MARK: - Report

    /// Straight to standard output, unbuffered: each run's line appears as the run ends.
    static func say(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }

    static func summary(_ o: Outcome) -> String {
        "[chaos] \(o.kind): \(o.sends) sends, \(o.accepted) of \(o.uniqueMessages) messages accepted, rows \(o.presentRows)/\(o.expectedRows)"
            + " (missing \(o.missingRows), unexpected \(o.unexpectedRows), doubled \(o.duplicatedRows)), clean rows \(o.cleanRows)"
            + (o.failures.isEmpty ? ", ok" : ", FAILED: " + o.failures.joined(separator: "; "))
    }

    static func table(_ outcomes: [Outcome]) -> String {
        func f(_ v: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", v) }
        var lines = ["", "SpotGuard fault suite (\(Timestamp.format(Date())), \(ProcessInfo.processInfo.activeProcessorCount) cores)"]
        let header = [
            "run", "sends", "+resends", "accepted", "202 again", "not 202", "rows/expected", "lost", "doubled", "unexpected",
            "clean", "identical", "points/s", "p99 ms", "queues", "dead letters",
        ]
        var rows = [header]
        for o in outcomes {
            let non202 = o.answers.filter { $0.key != "202" }.values.reduce(0, +)
            rows.append([
                o.kind, "\(o.sends)", "\(o.fillerSends)", "\(o.accepted)", "\(o.resendsAccepted)", "\(non202)", "\(o.presentRows)/\(o.expectedRows)",
                "\(o.missingRows)", "\(o.duplicatedRows)", "\(o.unexpectedRows)", "\(o.cleanRows)", o.cleanIdentical ? "yes" : "NO (\(o.cleanDiffering))",
                f(o.pointsPerSecond, 0), f(o.p99Ms), o.queuesLeft.isEmpty ? "empty" : "\(o.queuesLeft)",
                "\(o.deadLetters) (\(o.deadLettersWithoutReason) no reason)",
            ])
        }
        let widths = header.indices.map { c in rows.map { $0[c].count }.max() ?? 0 }
        for row in rows {
            lines.append(row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: "  "))
        }
        if let one = outcomes.first(where: { $0.kind == "reference" }), let three = outcomes.first(where: { $0.kind == "scale" }) {
            lines.append(
                "three copies of sef, replicas, decisions against one: \(f(three.pointsPerSecond, 0)) / \(f(one.pointsPerSecond, 0)) points/s = \(f(three.pointsPerSecond / max(one.pointsPerSecond, 1), 2))"
            )
        }
        for o in outcomes {
            for (reason, n) in o.deadLetterReasons.sorted(by: { $0.key < $1.key }) { lines.append("\(o.kind): dead letter ×\(n): \(reason)") }
        }
        for o in outcomes where o.poisonSent > 0 {
            lines.append("\(o.kind): poison storm: \(o.poisonDeadLettered) of \(o.poisonSent) invalid messages dead-lettered as invalid")
        }
        for o in outcomes where !o.faults.isEmpty {
            lines.append(
                "\(o.kind): replica calls relayed ok \(o.replicaCallsOk), failed \(o.replicaCallsFailed), longest outage \(f(o.replicaLongestOutageSeconds)) s")
            for x in o.faults {
                lines.append(
                    "  \(x.fault.padding(toLength: 46, withPad: " ", startingAt: 0)) back after \(f(x.seconds, 2)) s; meanwhile \(x.requests) requests, \(x.non202) not 202"
                        + (x.p99Ms.map { ", p99 of 202s \(f($0)) ms" } ?? "")
                        + (x.slowestRefusalMs.map { ", slowest other answer \(f($0)) ms" } ?? "")
                        + (x.first202AfterSeconds.map { "; first 202 begun after it \(f($0, 2)) s" } ?? "")
                        + (x.commitStallSeconds.map { "; SEF owing rows without a commit at most \(f($0, 2)) s" } ?? ""))
            }
        }
        return lines.joined(separator: "\n")
    }
}
