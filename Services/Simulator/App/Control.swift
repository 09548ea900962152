import Foundation
import HTTPTypes
import Hummingbird
import IMDSMock
import NIOCore
import SimulatorCore

/// The simulator's own API (loopback, no authentication — a development tool):
/// `GET /sim/status`, `GET /sim/events?limit=N`, `POST /sim/drills {"agent", "kind", "notice_seconds"}`
/// (kind: `rebalance`, `termination`, or `loss` — the primary fails at once without a notice).
struct Control: Sendable {
    let cloud: Cloud
    let fleet: Fleet
    let configuration: SimConfiguration

    func addRoutes(to router: Router<BasicRequestContext>) {
        router.get("/health/ready") { _, _ in Self.json(["status": "ok"]) }
        router.get("/sim/status") { _, _ in try await status() }
        router.get("/sim/events") { request, _ in
            let limit = min(2000, max(1, Int(request.uri.queryParameters.get("limit") ?? "100") ?? 100))
            let events = await cloud.recent.suffix(limit)
            return Self.encoded(["events": Array(events)])
        }
        router.post("/sim/drills") { request, _ in try await drill(request) }
        // one instance as its machine sees it: where its metadata service answers
        router.get("/sim/instances/:instanceId") { _, context in
            let id = context.parameters.get("instanceId") ?? ""
            guard let instance = await cloud.instance(id) else { return Self.refuse(.notFound, "not_found", "no instance \(id)") }
            let imds = await cloud.imdsEndpoint(id)
            return Self.json([
                "instance_id": id, "state": instance.state.rawValue, "zone": instance.zone, "subnet_id": instance.subnetId,
                "profile_arn": instance.profileArn as Any? ?? NSNull(), "imds": imds as Any? ?? NSNull(),
            ])
        }
    }

    static func json(_ object: Any, status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func encoded<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? Report.encoder.encode(value)) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func refuse(_ status: HTTPResponse.Status, _ code: String, _ message: String) -> Response {
        json(["error": code, "message": message], status: status)
    }

    func status() async throws -> Response {
        let now = Date()
        let instances = await cloud.allInstances
        let bill = await cloud.bill
        let summary = await fleet.summary
        var workloads: [[String: Any]] = []
        for w in summary.workloads {
            let mine = instances.filter { $0.workload == w["logical_agent_id"] && $0.state != .terminated }
            var entry: [String: Any] = w
            entry["instances"] = mine.map {
                ["instance_id": $0.id, "pool": $0.pool, "state": $0.state.rawValue, "role": $0.primary ? "primary" : "replica", "spot": $0.spot]
                    as [String: Any]
            }
            workloads.append(entry)
        }
        var states: [String: Int] = [:]
        for i in instances { states[i.state.rawValue, default: 0] += 1 }
        return Self.json([
            "clock": [
                "sim_time": cloud.clock.sim(now).formatted(.iso8601), "simulated_hours": cloud.clock.simHours(now),
                "wall_seconds_per_hour": cloud.clock.hourSeconds,
            ],
            // null while the fleet's client is being created
            "client_id": summary.clientId.isEmpty ? NSNull() : summary.clientId as Any, "instances": states, "workloads": workloads,
            "counters": await cloud.counters,
            "bill": [
                "spot": bill.spot, "on_demand": bill.onDemand, "replicas": bill.replicas, "baseline_on_demand": bill.baseline,
                "savings_percent": bill.savingsPercent.map { $0 as Any } ?? NSNull(),
            ],
            "notices": summary.notices.count,
        ])
    }

    struct DrillRequest: Decodable {
        var agent: String?
        var kind: String?
        var noticeSeconds: Double?
    }

    func drill(_ request: Request) async throws -> Response {
        let body = Data(try await request.body.collect(upTo: 64 * 1024).readableBytesView)
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        guard let r = try? decoder.decode(DrillRequest.self, from: body) else {
            return Self.refuse(.badRequest, "invalid_json", "the body must be a JSON object")
        }
        guard let kind = r.kind, ["rebalance", "termination", "loss"].contains(kind) else {
            return Self.refuse(.badRequest, "invalid_kind", "kind must be rebalance, termination or loss")
        }
        if let s = r.noticeSeconds, !(1...3600).contains(s) { return Self.refuse(.badRequest, "out_of_range", "notice_seconds must be 1…3600") }
        guard let name = r.agent, let workload = await fleet.workload(named: name), let agentId = await fleet.agentId(of: workload) else {
            return Self.refuse(.notFound, "agent_not_found", "no simulated workload or agent id \(r.agent ?? "")")
        }
        guard let primary = await cloud.live(workload).first(where: { $0.primary && $0.state == .running && $0.terminationTime == nil }) else {
            return Self.refuse(.conflict, "no_running_instance", "\(workload) has no running primary instance without a notice right now")
        }
        if kind == "loss" {
            let ready = await fleet.replicas(agentId).contains { $0.status == "ready" }
            let lostAt = Date()
            await cloud.lose(primary.id, now: lostAt)
            return Self.encoded(
                await fleet.watchLoss(
                    primary.id, workload: workload, agentId: agentId, lostAt: lostAt, readyReplica: ready, within: .seconds(r.noticeSeconds ?? 180)))
        }
        if kind == "termination" {
            guard let notice = await cloud.armNotice(primary.id, seconds: r.noticeSeconds, drill: true) else {
                return Self.refuse(.conflict, "no_running_instance", "\(primary.id) can no longer be given a notice")
            }
            return Self.encoded(await fleet.watch(notice))
        }
        let before = Set(await fleet.replicas(agentId).map(\.id))
        guard let armed = await cloud.armRebalance(primary.id, drill: true) else {
            return Self.refuse(.conflict, "no_running_instance", "\(primary.id) can no longer be given a recommendation")
        }
        var result: [String: Any] = ["instance_id": primary.id, "workload": workload, "agent_id": agentId, "kind": kind, "armed_at": armed.formatted(.iso8601)]
        let imds = await cloud.imds(primary.id)
        let deadline = Date().addingTimeInterval(60)
        var outcome = before.isEmpty ? "no_replica" : "no_new_replica"
        // a workload that gets no new replica shows within 15 s (e.g. one that keeps a manual replica)
        while Date() < deadline, result["replica_created_ms"] != nil || Date() < armed.addingTimeInterval(15) {
            if result["notice_read_ms"] == nil, let read = imds?.firstRead("events/recommendations/rebalance") {
                result["notice_read_ms"] = read.timeIntervalSince(armed) * 1000
            }
            if let new = await fleet.replicas(agentId).first(where: { !before.contains($0.id) }) {
                if result["replica_created_ms"] == nil {
                    result["replica_created_ms"] = Date().timeIntervalSince(armed) * 1000
                    result["replica_id"] = new.id
                    outcome = "replica_created"
                }
                if new.status == "ready" {
                    result["replica_ready_ms"] = Date().timeIntervalSince(armed) * 1000
                    result["replica_instance_id"] = new.instanceId
                    outcome = "replica_ready"
                    break
                }
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
        result["outcome"] = outcome
        return Self.json(result)
    }
}
