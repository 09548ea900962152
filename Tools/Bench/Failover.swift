import Foundation
import SpotCloud
import SpotFleet
import SpotModels
import SpotStore
import Synchronization

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Failover and command-delivery latency through the real services (deploy/bench.sh runs it
/// while pricing reports load ingest and the SEF):
///
/// 1. N agents, each with a ready `automatic-rebalance` replica (launched, synced over HTTP);
/// 2. termination-imminent → 200 `replica_promoted`, measured at the client, 4 at a time, for
///    all N or a sample spread over them (`--timed`, for the growth table's larger fleets);
/// 3. command delivery: an agent long-polls, a command is issued (an emergency replica's
///    launch), latency = poll answered − the command's `created_at` (its transaction start).
enum FailoverBench {
    struct Agent: Sendable {
        var id: String
        var instance: String
        var replicaInstance: String = ""
        var replicaId: String = ""
    }

    struct HTTP: Sendable {
        let base: String
        let token: String

        func send(_ method: String, _ path: String, _ json: String? = nil) async throws -> (Int, [String: Any]) {
            var request = URLRequest(url: URL(string: base + path)!)
            request.httpMethod = method
            request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
            if let json {
                request.httpBody = Data(json.utf8)
                request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            }
            let (status, _, data) = try await HTTPClientTransport(timeout: 30).send(request)
            let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
            return (status, object)
        }

        /// What an agent does: a 502/503/504 or no answer is asked again (backoff 0.2 s → 2 s, for
        /// up to 30 s), each retry printed to stderr and counted in `retries`; a retried command
        /// result the first attempt already closed (409 `command_closed`) is taken as done.
        func expect(_ status: Int, _ method: String, _ path: String, _ json: String? = nil) async throws -> [String: Any] {
            let deadline = ContinuousClock.now + .seconds(30)
            var delay = 0.2
            var retried = false
            while true {
                let answer: (Int, [String: Any])?
                do { answer = try await send(method, path, json) } catch { answer = nil }
                if let (got, body) = answer {
                    if got == status { return body }
                    if retried, got == 409, (body["error"] as? [String: Any])?["code"] as? String == "command_closed" { return body }
                    if ![502, 503, 504].contains(got) { throw BenchFailure("\(method) \(path): \(got) \(body)") }
                }
                guard ContinuousClock.now + .seconds(delay) < deadline else {
                    throw BenchFailure("\(method) \(path): no answer for 30 s (last: \(answer.map { "\($0.0) \($0.1)" } ?? "no connection"))")
                }
                HTTP.retries.add(1, ordering: .relaxed)
                FileHandle.standardError.write(
                    Data("[bench] \(method) \(path): \(answer.map { "\($0.0) \($0.1)" } ?? "no connection"); retrying in \(delay) s\n".utf8))
                retried = true
                try await Task.sleep(for: .seconds(delay))
                delay = min(2, delay * 2)
            }
        }

        static let retries = Atomic<Int>(0)
    }

    struct BenchFailure: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    /// The three t3.medium pools of us-east-1 with current prices, where the replicas go.
    static func pricedPools(_ store: PostgresStore) async throws {
        let pools = ["a": 0.0312, "b": 0.0298, "c": 0.0324].map { ("t3.medium.us-east-1\($0.key)", $0.value) }
        try await store.transaction { try Pools.ensure(pools.compactMap { PoolID(rawValue: $0.0) }, on: $0) }
        try await BenchFixtures.currentPrices(pools, store: store)
    }

    static func randomInstance() -> String { "i-" + String((0..<17).map { _ in "0123456789abcdef".randomElement()! }) }

    /// `timed` of the `count` agents (spread evenly over them) fail over, and half as many get a command.
    static func run(ingest: String, token: String, agents count: Int, timed: Int, store: PostgresStore) async throws {
        let http = HTTP(base: ingest, token: token)
        try await pricedPools(store)
        let run = UUID().uuidString.prefix(8).lowercased()

        // 1. agents with ready replicas
        let ready = try await concurrently(Array(0..<count), width: 8) { i -> Agent in
            try await readyAgent(http, logical: "failover-\(run)-\(i)", instance: randomInstance())
        }

        // 2. failovers
        let chosen = (0..<timed).map { ready[$0 * ready.count / timed] }
        let measured = try await concurrently(chosen, width: 4) { agent -> (client: Double, server: Double) in
            let t0 = ContinuousClock.now
            let body = try await http.expect(200, "POST", "/api/agents/\(agent.id)/termination-imminent", #"{"instance_id": "\#(agent.instance)"}"#)
            let client = (ContinuousClock.now - t0).milliseconds
            guard body["new_instance_id"] as? String == agent.replicaInstance else { throw BenchFailure("wrong promotion for \(agent.id)") }
            return (client, Double(body["failover_time_ms"] as? Int ?? -1))
        }

        // 3. command delivery to long-polling agents (the promoted replicas are their primaries now)
        let deliveries = try await concurrently(Array(chosen.prefix(max(1, timed / 2))), width: 4) { agent -> Double in
            // the new primary first collects its `promote`, so the next command is the only one
            _ = try await http.expect(200, "GET", "/api/agents/\(agent.id)/pending-commands?instance_id=\(agent.replicaInstance)&wait=0")
            let poll = Task { () -> Double in
                let body = try await http.expect(200, "GET", "/api/agents/\(agent.id)/pending-commands?instance_id=\(agent.replicaInstance)&wait=20")
                let answered = Date()
                guard let command = (body["commands"] as? [[String: Any]])?.first(where: { $0["command_type"] as? String == "launch_replica" }),
                    let createdText = command["created_at"] as? String, let created = Timestamp.parse(createdText)
                else { throw BenchFailure("the poll of \(agent.id) got no launch command") }
                return answered.timeIntervalSince(created) * 1000
            }
            try await Task.sleep(for: .milliseconds(100))  // the poll is holding by now
            _ = try await http.expect(201, "POST", "/api/agents/\(agent.id)/create-emergency-replica", #"{"signal_type": "rebalance-recommendation"}"#)
            return try await poll.value
        }

        func pct(_ xs: [Double], _ p: Double) -> String {
            let s = xs.sorted()
            return String(format: "%.1f", s[min(s.count - 1, Int((Double(s.count - 1) * p).rounded()))])
        }
        let client = measured.map(\.client)
        let server = measured.map(\.server)
        print(
            "ready_agents=\(count) failovers=\(measured.count) failover_client_p50_ms=\(pct(client, 0.5)) failover_client_p99_ms=\(pct(client, 0.99))",
            "failover_client_max_ms=\(pct(client, 1)) failover_server_p50_ms=\(pct(server, 0.5)) failover_server_p99_ms=\(pct(server, 0.99))",
            "commands=\(deliveries.count) command_delivery_p50_ms=\(pct(deliveries, 0.5)) command_delivery_p99_ms=\(pct(deliveries, 0.99))",
            "command_delivery_max_ms=\(pct(deliveries, 1))")
    }

    /// Maps `items` with at most `width` in flight, keeping their order.
    /// Registers an agent in pool a and gives it a ready `automatic-rebalance` replica, playing
    /// the agent over HTTP (the emergency replica, its launch command fetched and answered, two
    /// sync reports).
    /// `replicaInstance` names the instance the launch made (a random id when there is none).
    static func readyAgent(_ http: HTTP, logical: String, instance: String, replicaInstance: String = randomInstance()) async throws -> Agent {
        let reg = try await http.expect(
            201, "POST", "/api/agents/register",
            """
            {"logical_agent_id": "\(logical)", "instance_id": "\(instance)", "pool_id": "t3.medium.us-east-1a", "mode": "spot"}
            """)
        var agent = Agent(id: (reg["agent_id"] as! String).lowercased(), instance: instance)
        let replica = try await http.expect(201, "POST", "/api/agents/\(agent.id)/create-emergency-replica", #"{"signal_type": "rebalance-recommendation"}"#)
        let replicaId = replica["replica_id"] as! String
        agent.replicaId = replicaId.lowercased()
        let polled = try await http.expect(200, "GET", "/api/agents/\(agent.id)/pending-commands?instance_id=\(instance)&wait=0")
        guard let command = (polled["commands"] as? [[String: Any]])?.first, let commandId = command["command_id"] as? String else {
            throw BenchFailure("no launch command for \(agent.id)")
        }
        agent.replicaInstance = replicaInstance
        _ = try await http.expect(
            200, "POST", "/api/agents/\(agent.id)/commands/\(commandId)/result", #"{"status": "succeeded", "instance_id": "\#(agent.replicaInstance)"}"#)
        _ = try await http.expect(200, "POST", "/api/agents/\(agent.id)/replicas/\(replicaId)/sync-status", #"{"sync_status": "syncing"}"#)
        _ = try await http.expect(200, "POST", "/api/agents/\(agent.id)/replicas/\(replicaId)/sync-status", #"{"sync_status": "synced", "status": "ready"}"#)
        return agent
    }

    static func concurrently<T: Sendable, R: Sendable>(
        _ items: [T], width: Int, _ body: @escaping @Sendable (T) async throws -> R
    ) async throws -> [R] {
        try await withThrowingTaskGroup(of: (Int, R).self) { group in
            var results = [R?](repeating: nil, count: items.count)
            var next = 0
            while next < min(width, items.count) {
                let (i, item) = (next, items[next])
                group.addTask { (i, try await body(item)) }
                next += 1
            }
            while let (i, r) = try await group.next() {
                results[i] = r
                if next < items.count {
                    let (j, item) = (next, items[next])
                    group.addTask { (j, try await body(item)) }
                    next += 1
                }
            }
            return results.map { $0! }
        }
    }
}

extension Duration {
    var milliseconds: Double { seconds * 1000 }
}
