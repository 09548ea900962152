import Foundation
import SimulatorCore

/// The week the demo fleet lived before it started (`--history-days`), sent through SpotGuard's
/// agent API as its agents and operator would have sent it, with past times: the prices first,
/// then each workload's switches as it starts (`History`).
extension Fleet {
    /// The agent of a workload, created when missing (its id either way).
    func agent(_ logical: String) async throws -> String {
        let created = try await api.send("POST", "/api/agents/register", token: token, json: ["logical_agent_id": logical])
        guard [200, 201].contains(created.status), let agentId = (created.json["agent_id"] as? String)?.lowercased() else {
            throw SimError.product("creating the agent of \(logical) answered \(created.status) \(created.json)")
        }
        return agentId
    }

    /// Plans the history and sends its pricing reports, each type's from its first workload's
    /// agent, a few at a time; a progress line a day.
    func replayPrices(_ workloads: [History.Workload]) async throws -> History {
        let history = History.plan(
            market: cloud.market, workloads: workloads, end: Date(), days: configuration.historyDays,
            faults: FaultModel(seed: configuration.seed, interruptionScale: configuration.interruptionScale))
        var reporter: [String: String] = [:]
        for w in workloads where reporter[w.type] == nil { reporter[w.type] = try await agent(w.logical) }
        let days = Int(history.end.timeIntervalSince(history.start) / 86_400) + 1
        say("spotguard-sim: sending \(history.reports.count) pricing reports of the last \(days) days")
        let began = Date()
        let (api, token, onDemand) = (self.api, self.token, cloud.market.onDemand)
        var day = 0
        for batch in stride(from: 0, to: history.reports.count, by: 64).map({ history.reports[$0..<min($0 + 64, history.reports.count)] }) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for report in batch {
                    guard let agentId = reporter[report.type] else { continue }
                    group.addTask {
                        var body: [String: Any] = [
                            "pools": report.prices.map { ["id": $0.pool, "price": $0.price] }, "observed_at": report.at.formatted(.iso8601),
                        ]
                        body["on_demand_price"] = onDemand[report.type]
                        try await Self.accepted(api, "/api/agents/\(agentId)/pricing-report", token: token, body)
                    }
                }
                try await group.waitForAll()
            }
            if let last = batch.last, Int(last.at.timeIntervalSince(history.start) / 86_400) > day {
                day = Int(last.at.timeIntervalSince(history.start) / 86_400)
                say(String(format: "spotguard-sim: history: day %d of %d sent (%.0f s)", day, days, Date().timeIntervalSince(began)))
            }
        }
        say(String(format: "spotguard-sim: history prices sent in %.0f s", Date().timeIntervalSince(began)))
        return history
    }

    /// The workload's switches: from the on-demand instance it ran before the history, through
    /// made-up instances, to `live` (the instance it runs now, in `pool`), each old instance
    /// terminated two minutes after the switch began.
    func replaySwitches(_ moves: [History.Move], logical: String, agentId: String, to live: String, pool: String, spot: Bool) async throws {
        guard let type = workloads[logical]?.type else { return }
        var old: [String: Any] = [
            "instance_id": History.instanceId(seed: configuration.seed, logical: logical, index: 0), "instance_type": type, "mode": "ondemand",
        ]
        for (i, move) in moves.enumerated() {
            let last = i == moves.count - 1
            let newPool = last ? pool : move.pool
            var new: [String: Any] = [
                "instance_id": last ? live : History.instanceId(seed: configuration.seed, logical: logical, index: i + 1), "mode": "spot",
                "pool_id": newPool,
            ]
            if last && !spot { new = ["instance_id": live, "instance_type": type, "mode": "ondemand"] }
            var pricing: [String: Any] = [:]
            pricing["on_demand"] = cloud.market.onDemand[type]
            pricing["old_spot"] = move.leftPrice
            pricing["new_spot"] = newPool == move.pool && new["mode"] as? String == "spot" ? move.price : nil
            let timing = [
                "initiated_at": move.at, "instance_launched_at": move.at.addingTimeInterval(40), "instance_ready_at": move.at.addingTimeInterval(90),
                "old_terminated_at": move.at.addingTimeInterval(120),
            ].mapValues { $0.formatted(.iso8601) }
            try await Self.accepted(
                api, "/api/agents/\(agentId)/switch-report", token: token,
                ["old_instance": old, "new_instance": new, "timing": timing, "pricing": pricing])
            old = new
        }
    }

    /// Sends until accepted: a shed request (429, 503) is tried again after a pause.
    static func accepted(_ api: ProductAPI, _ path: String, token: String, _ body: [String: Any]) async throws {
        for attempt in 0..<20 {
            let answer = try await api.send("POST", path, token: token, json: body)
            if answer.status == 202 { return }
            guard [429, 503].contains(answer.status) else { throw SimError.product("\(path) answered \(answer.status) \(answer.json)") }
            try await Task.sleep(for: .milliseconds(100 * (attempt + 1)))
        }
        throw SimError.product("\(path) shed the history's request 20 times")
    }
}
