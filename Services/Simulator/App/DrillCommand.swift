import Foundation
import SpotCloud

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `spotguard-sim drill --agent ID --kind rebalance|termination|loss [--notice-seconds S] [--sim URL]`:
/// asks a running simulator for the drill and prints what happened, with timings.
public enum DrillCommand {
    /// The simulator does not answer.
    public struct Unreachable: Error, CustomStringConvertible {
        public var description: String
    }

    public static func run(
        agent: String, kind: String, noticeSeconds: Double?, sim: String?, env: [String: String] = ProcessInfo.processInfo.environment
    ) async throws {
        let address =
            sim ?? env["SPOTGUARD_SIM_URL"]
            ?? env["SPOTGUARD_STACK_DIR"].flatMap { try? String(contentsOfFile: $0 + "/sim/address", encoding: .utf8) }
            ?? (try? String(contentsOfFile: ".spotguard/dev/sim/address", encoding: .utf8))
        guard let base = address?.trimmingCharacters(in: .whitespacesAndNewlines), let url = URL(string: base + "/sim/drills") else {
            throw SimConfiguration.Invalid(description: "no simulator address: pass --sim URL (or run it with make up)")
        }
        var body: [String: Any] = ["agent": agent, "kind": kind]
        if let noticeSeconds { body["notice_seconds"] = noticeSeconds }
        var request = URLRequest(url: url)
        request.httpMethod = "POST"
        request.httpBody = try JSONSerialization.data(withJSONObject: body)
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        print("drill: \(kind) for \(agent) via \(base) …")
        let status: Int, data: Data
        do {
            (status, _, data) = try await HTTPClientTransport(timeout: 3700).send(request)
        } catch {
            throw Unreachable(description: "cannot reach the simulator at \(base) (\(error)); start it with make up or pass --sim URL")
        }
        let json = (try? JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:]
        guard status == 200 else {
            print("refused (\(status)): \(json["error"] ?? "") \(json["message"] ?? String(decoding: data, as: UTF8.self))")
            exit(1)
        }
        for line in timeline(json) { print(line) }
    }

    /// The drill's answer as lines a person reads.
    public static func timeline(_ j: [String: Any]) -> [String] {
        func ms(_ key: String) -> String { (j[key] as? Double).map { String(format: "%8.0f ms", $0) } ?? "       — " }
        var lines = ["instance \(j["instance_id"] ?? "?") of \(j["workload"] ?? "?") (agent \(j["agent_id"] ?? "?"))"]
        if j["kind"] as? String == "loss" {
            return lines + [
                "  lost at \(j["lost_at"] ?? "?") without a notice; a ready replica then: \((j["ready_replica_at_loss"] as? Bool) == true ? "yes" : "no")",
                "  \(ms("promoted_ms"))  SpotGuard promoted replica \(j["replica_id"] ?? "-") on \(j["replica_instance_id"] ?? "-")",
                "  outcome: \(j["outcome"] ?? "?")",
            ]
        }
        if j["kind"] as? String == "rebalance" {
            lines += [
                "  \(ms("notice_read_ms"))  the agent read the rebalance recommendation",
                "  \(ms("replica_created_ms"))  SpotGuard created replica \(j["replica_id"] ?? "-")",
                "  \(ms("replica_ready_ms"))  the replica on \(j["replica_instance_id"] ?? "-") was ready",
            ]
        } else {
            lines += [
                "  termination at \(j["termination_time"] ?? "?"); a ready replica at the notice: \((j["ready_replica_at_notice"] as? Bool) == true ? "yes" : "no")",
                "  \(ms("notice_read_ms"))  the agent read the termination notice",
                "  \(ms("promoted_ms"))  SpotGuard promoted replica \(j["replica_id"] ?? "-") on \(j["replica_instance_id"] ?? "-")",
                "  workload state: \(j["primary_progress_at_notice"] ?? "?") at the notice, the replica resumed from \(j["replica_progress"] ?? "-")",
            ]
        }
        lines.append("outcome: \(j["outcome"] ?? "?")")
        return lines
    }
}
