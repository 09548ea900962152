import Foundation
import Hummingbird
import SpotModels
import SpotRuntime
import SpotStore

/// The client's savings against on-demand and switch history (seed 001), for the API and the
/// dashboard alike.
extension ConsoleController {
    struct Money: Encodable {
        var onDemandCost = 0.0
        var actualCost = 0.0
        var replicaCost = 0.0
        var savings = 0.0
        var savingsPercent: Double?
        var instanceHours = 0.0

        init() {}

        init(_ r: PGRow, from i: Int) throws {
            onDemandCost = try r.decode(Double.self, at: i)
            actualCost = try r.decode(Double.self, at: i + 1)
            replicaCost = try r.decode(Double.self, at: i + 2)
            savings = try r.decode(Double.self, at: i + 3)
            instanceHours = try r.decode(Double.self, at: i + 4)
            savingsPercent = onDemandCost > 0 ? (10_000 * savings / onDemandCost).rounded() / 100 : nil
        }
    }

    struct SavingsDay: Encodable {
        var day: String
        var money: Money

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: AnyKey.self)
            try c.encode(day, forKey: AnyKey("day"))
            try money.encode(to: encoder)
        }
    }

    struct AgentSavings: Encodable {
        var agentId: UUID
        var logicalAgentId: String
        var money: Money

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: AnyKey.self)
            try c.encode(agentId, forKey: AnyKey("agent_id"))
            try c.encode(logicalAgentId, forKey: AnyKey("logical_agent_id"))
            try money.encode(to: encoder)
        }
    }

    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ s: String) { stringValue = s }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    struct SavingsReport: Encodable {
        var clientId: UUID
        var currency = "USD"
        var baseline = "on_demand"
        var from: String
        var to: String
        var computedAt: Date?
        var total: Money
        var monthToDate: Money
        var daily: [SavingsDay]
        var agents: [AgentSavings]
    }

    /// `GET /api/client/{id}/savings?from=YYYY-MM-DD&to=YYYY-MM-DD` (default: the last 30 days):
    /// totals, this month, per day and per agent, from the daily savings_snapshots.
    @Sendable func savings(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let client = try await authenticateClient(request, context)
        let query = request.uri.queryParameters
        func day(_ name: String, _ fallback: Date) throws -> Date {
            guard let raw = query[Substring(name)] else { return fallback }
            guard let d = try? Date(String(raw), strategy: Date.ISO8601FormatStyle().year().month().day()) else {
                throw APIError(.badRequest, code: "invalid_date", message: "\(name) must be a date like 2026-01-31", field: name)
            }
            return d
        }
        let today = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 / 86_400).rounded(.down) * 86_400)
        let to = try day("to", today)
        let from = try day("from", to.addingTimeInterval(-29 * 86_400))
        guard from <= to, to.timeIntervalSince(from) <= 366 * 86_400 else {
            throw APIError(.badRequest, code: "out_of_range", message: "from must be before to, at most 366 days apart", field: "from")
        }
        return try HTTPJSON.response(try await savingsReport(client, from: from, to: to), status: .ok)
    }

    func savingsReport(_ client: UUID, from: Date, to: Date) async throws -> SavingsReport {
        let money = "on_demand_cost::float8, actual_cost::float8, replica_cost::float8, savings::float8, instance_hours::float8"
        return try await store.read { conn -> SavingsReport in
            let daily = try conn.query(
                """
                SELECT day::text, \(money), computed_at FROM savings_snapshots
                 WHERE client_id = $1 AND agent_id IS NULL AND day BETWEEN $2::timestamptz::date AND $3::timestamptz::date ORDER BY day
                """, [client, from, to])
            let sums = "sum(on_demand_cost)::float8, sum(actual_cost)::float8, sum(replica_cost)::float8, sum(savings)::float8, sum(instance_hours)::float8"
            let month = try conn.query(
                """
                SELECT \(sums) FROM savings_snapshots
                 WHERE client_id = $1 AND agent_id IS NULL AND day >= date_trunc('month', now())::date HAVING count(*) > 0
                """, [client])
            let agents = try conn.query(
                """
                SELECT s.agent_id, a.logical_agent_id, sum(s.on_demand_cost)::float8, sum(s.actual_cost)::float8, sum(s.replica_cost)::float8,
                       sum(s.savings)::float8, sum(s.instance_hours)::float8
                  FROM savings_snapshots s JOIN agents a ON a.id = s.agent_id
                 WHERE s.client_id = $1 AND s.day BETWEEN $2::timestamptz::date AND $3::timestamptz::date
                 GROUP BY s.agent_id, a.logical_agent_id ORDER BY sum(s.savings) DESC, a.logical_agent_id
                """, [client, from, to])
            var total = Money()
            let days = try daily.map { r -> SavingsDay in
                let m = try Money(r, from: 1)
                total.onDemandCost += m.onDemandCost
                total.actualCost += m.actualCost
                total.replicaCost += m.replicaCost
                total.savings += m.savings
                total.instanceHours += m.instanceHours
                return SavingsDay(day: try r.decode(String.self, at: 0), money: m)
            }
            total.savingsPercent = total.onDemandCost > 0 ? (10_000 * total.savings / total.onDemandCost).rounded() / 100 : nil
            let iso = Date.ISO8601FormatStyle().year().month().day()
            return SavingsReport(
                clientId: client, from: from.formatted(iso), to: to.formatted(iso),
                computedAt: try daily.compactMap { try $0.decodeIfPresent(Date.self, at: 6) }.max(),
                total: total, monthToDate: try month.first.map { try Money($0, from: 0) } ?? Money(), daily: days,
                agents: try agents.map {
                    AgentSavings(agentId: try $0.decode(UUID.self, at: 0), logicalAgentId: try $0.decode(String.self, at: 1), money: try Money($0, from: 2))
                })
        }
    }

    struct SwitchSide: Encodable {
        var instanceId: String?
        var instanceType: String?
        var az: String?
        var mode: String?
        var poolId: String?
        var spotPrice: Double?
        var priceConfidence: Double?
        var priceDataSource: String?
    }

    struct SwitchEntry: Encodable {
        var id: UUID
        var agentId: UUID
        var logicalAgentId: String
        var eventTrigger: SwitchTrigger
        var old: SwitchSide
        var new: SwitchSide
        var onDemandPrice: Double?
        var savingsImpact: Double?
        var savingsConfidence: String?
        var reason: String?
        var engine: String?
        var commandId: UUID?
        var initiatedAt: Date?
        var amiCreatedAt: Date?
        var instanceLaunchedAt: Date?
        var instanceReadyAt: Date?
        var oldTerminatedAt: Date?
        var totalSeconds: Double?
    }

    struct SwitchPage: Encodable {
        var switches: [SwitchEntry]
        var count: Int
        /// Pass as `before` for the next (older) page; absent on the last page.
        var nextBefore: Date?
    }

    /// `GET /api/client/{id}/switches?limit=50&before=ISO-8601&agent_id=UUID`: newest first, with
    /// both prices and their confidence, timings, and the decision's reason when an engine
    /// asked for the switch.
    @Sendable func switches(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let client = try await authenticateClient(request, context)
        let query = request.uri.queryParameters
        var limit = 50
        if let raw = query["limit"] {
            guard let n = Int(String(raw)), (1...500).contains(n) else {
                throw APIError(.badRequest, code: "out_of_range", message: "limit must be 1 to 500", field: "limit")
            }
            limit = n
        }
        var before: Date?
        if let raw = query["before"] {
            guard let d = Timestamp.parse(String(raw)) else {
                throw APIError(.badRequest, code: "invalid_timestamp", message: "before must be an ISO-8601 time with an offset", field: "before")
            }
            before = d
        }
        var agent: UUID?
        if let raw = query["agent_id"] {
            guard let id = UUID(uuidString: String(raw)) else {
                throw APIError(.badRequest, code: "invalid_agent_id", message: "agent_id must be a UUID", field: "agent_id")
            }
            agent = id
        }
        return try HTTPJSON.response(try await switchPage(client, limit: limit, before: before, agent: agent), status: .ok)
    }

    /// When each of the client's moves since `since` began, and why (at most the latest 5,000).
    func moveTimes(_ client: UUID, since: Date) async throws -> [TimelineChart.Move] {
        try await store.read { conn in
            try conn.query(
                """
                SELECT coalesce(initiated_at, created_at), event_trigger FROM switches
                 WHERE client_id = $1 AND coalesce(initiated_at, created_at) >= $2
                 ORDER BY coalesce(initiated_at, created_at) DESC LIMIT 5000
                """, [client, since]
            ).map { TimelineChart.Move(time: try $0.decode(Date.self, at: 0), trigger: try $0.decode(SwitchTrigger.self, at: 1)) }
        }
    }

    func switchPage(_ client: UUID, limit cap: Int, before after: Date?, agent only: UUID?) async throws -> SwitchPage {
        try await store.read { conn -> SwitchPage in
            let rows = try conn.query(
                """
                SELECT s.id, s.agent_id, a.logical_agent_id, s.event_trigger,
                       s.old_instance_id, s.old_instance_type, s.old_az, s.old_mode, s.old_pool_id, s.old_spot_price::float8,
                       s.old_price_confidence::float8, s.old_price_data_source,
                       s.new_instance_id, s.new_instance_type, s.new_az, s.new_mode, s.new_pool_id, s.new_spot_price::float8,
                       s.new_price_confidence::float8, s.new_price_data_source,
                       s.on_demand_price::float8, s.savings_impact::float8, s.savings_confidence, d.reason, d.engine, s.command_id,
                       coalesce(s.initiated_at, s.created_at), s.ami_created_at, s.instance_launched_at, s.instance_ready_at, s.old_terminated_at
                  FROM switches s JOIN agents a ON a.id = s.agent_id
                  LEFT JOIN LATERAL (SELECT h.reason, h.engine FROM agent_decision_history h
                                      WHERE s.command_id IS NOT NULL AND h.command_id = s.command_id LIMIT 1) d ON true
                 WHERE s.client_id = $1 AND ($2::timestamptz IS NULL OR coalesce(s.initiated_at, s.created_at) < $2)
                   AND ($3::uuid IS NULL OR s.agent_id = $3)
                 ORDER BY coalesce(s.initiated_at, s.created_at) DESC, s.id
                 LIMIT $4
                """, [client, after, only, cap + 1])
            func side(_ r: PGRow, _ i: Int) throws -> SwitchSide {
                SwitchSide(
                    instanceId: try r.decodeIfPresent(String.self, at: i), instanceType: try r.decodeIfPresent(String.self, at: i + 1),
                    az: try r.decodeIfPresent(String.self, at: i + 2), mode: try r.decodeIfPresent(String.self, at: i + 3),
                    poolId: try r.decodeIfPresent(String.self, at: i + 4), spotPrice: try r.decodeIfPresent(Double.self, at: i + 5),
                    priceConfidence: try r.decodeIfPresent(Double.self, at: i + 6), priceDataSource: try r.decodeIfPresent(String.self, at: i + 7))
            }
            let entries = try rows.prefix(cap).map { r -> SwitchEntry in
                let initiated = try r.decodeIfPresent(Date.self, at: 26)
                let ready = try r.decodeIfPresent(Date.self, at: 29)
                return SwitchEntry(
                    id: try r.decode(UUID.self, at: 0), agentId: try r.decode(UUID.self, at: 1), logicalAgentId: try r.decode(String.self, at: 2),
                    eventTrigger: try r.decode(SwitchTrigger.self, at: 3), old: try side(r, 4), new: try side(r, 12),
                    onDemandPrice: try r.decodeIfPresent(Double.self, at: 20), savingsImpact: try r.decodeIfPresent(Double.self, at: 21),
                    savingsConfidence: try r.decodeIfPresent(String.self, at: 22), reason: try r.decodeIfPresent(String.self, at: 23),
                    engine: try r.decodeIfPresent(String.self, at: 24), commandId: try r.decodeIfPresent(UUID.self, at: 25),
                    initiatedAt: initiated, amiCreatedAt: try r.decodeIfPresent(Date.self, at: 27),
                    instanceLaunchedAt: try r.decodeIfPresent(Date.self, at: 28), instanceReadyAt: ready,
                    oldTerminatedAt: try r.decodeIfPresent(Date.self, at: 30),
                    totalSeconds: initiated.flatMap { i in ready.map { $0.timeIntervalSince(i) } })
            }
            return SwitchPage(switches: entries, count: entries.count, nextBefore: rows.count > cap ? entries.last?.initiatedAt : nil)
        }
    }
}
