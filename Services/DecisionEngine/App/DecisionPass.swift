import DecisionCore
import Foundation
import Logging
import SpotModels
import SpotRuntime
import SpotStore

/// One decision pass, in one transaction holding the `decisions.pass` claim: every pool with a
/// recent clean price gets its risk (stored in pool_risk_analysis), then every auto-switch agent
/// (never a manual-mode one) is decided by its engine; a decision to move becomes a `switch`
/// command and a ledger row (agent_decision_history) with the inputs, scores and reason.
public struct DecisionPass: Sendable {
    let store: PostgresStore
    let configuration: DecisionConfiguration
    let bands: [String: [String: AdvisorBand]]
    let risk = PoolRiskModel()
    let rules = RulesEngine()

    public init(store: PostgresStore, configuration: DecisionConfiguration, bands: [String: [String: AdvisorBand]]) {
        self.store = store
        self.configuration = configuration
        self.bands = bands
    }

    public struct Summary: Sendable, Codable, Equatable {
        public var pools = 0
        public var agents = 0
        public var switches = 0
        public var skippedPending = 0
        public var skippedNoPrice = 0

        public init() {}
    }

    /// Runs the pass when it is due (always with `force`); nil when another copy has it.
    public func run(force: Bool) async throws -> Summary? {
        let pass = self
        return try await ScheduledJobs.run(
            "decisions.pass", every: configuration.passInterval, force: force, worker: configuration.workerName, store: store
        ) { conn in try pass.perform(on: conn) }
    }

    struct PoolFacts {
        var id: String
        var type: String
        var region: String
        var price: Double
        var onDemand: Double?
        var hourly: [Double]
        var recentMean: Double
        var score: PoolRiskModel.Score
    }

    func perform(on conn: PGConnection) throws -> Summary {
        var summary = Summary()
        let now = Date()
        let hour = Calendar(identifier: .gregorian).dateComponents(in: TimeZone(identifier: "UTC")!, from: now).hour ?? 0
        // pools with a clean price in the window, their last day at hourly resolution, and the fleet's record
        let rows = try conn.query(
            """
            SELECT p.id, p.instance_type, p.region, latest.spot_price::float8, latest.on_demand_price::float8,
                   coalesce((SELECT string_agg(c.spot_price::text, ',' ORDER BY c.time_bucket) FROM pricing_snapshots_clean c
                              WHERE c.pool_id = p.id AND c.time_bucket > now() - interval '24 hours'
                                AND extract(minute FROM c.time_bucket) = 0), ''),
                   coalesce((SELECT avg(c.spot_price)::float8 FROM pricing_snapshots_clean c
                              WHERE c.pool_id = p.id AND c.time_bucket > now() - interval '6 hours' AND c.time_bucket <= now()), latest.spot_price::float8),
                   (SELECT count(*) FROM spot_interruption_events e WHERE e.pool_id = p.id AND e.signal_type = 'termination-notice'
                       AND e.detected_at > now() - interval '30 days')::int,
                   coalesce((SELECT string_agg(extract(hour FROM e.detected_at AT TIME ZONE 'UTC')::int::text, ',') FROM spot_interruption_events e
                              WHERE e.pool_id = p.id AND e.signal_type = 'termination-notice' AND e.detected_at > now() - interval '30 days'), ''),
                   coalesce((SELECT sum(extract(epoch FROM now() - greatest(coalesce(i.installed_at, i.created_at), now() - interval '30 days')))
                              FROM instances i WHERE i.current_pool_id = p.id AND i.is_active), 0)::float8 / 3600,
                   coalesce((SELECT avg(extract(epoch FROM now() - coalesce(i.installed_at, i.created_at)))
                              FROM instances i WHERE i.current_pool_id = p.id AND i.is_active), 0)::float8 / 3600
              FROM spot_pools p
              CROSS JOIN LATERAL (SELECT spot_price, on_demand_price FROM pricing_snapshots_clean c
                                   WHERE c.pool_id = p.id AND c.time_bucket > now() - make_interval(secs => $1) AND c.time_bucket <= now()
                                   ORDER BY c.time_bucket DESC LIMIT 1) latest
            """, [Double(configuration.priceWindow)])
        var pools: [PoolFacts] = []
        for r in rows {
            let (id, type, region) = (try r.decode(String.self, at: 0), try r.decode(String.self, at: 1), try r.decode(String.self, at: 2))
            let hourly = try r.decode(String.self, at: 5).split(separator: ",").compactMap { Double($0) }
            var byHour = Array(repeating: 0, count: 24)
            for h in try r.decode(String.self, at: 8).split(separator: ",").compactMap({ Int($0) }) where (0..<24).contains(h) { byHour[h] += 1 }
            let score = risk.score(.init(
                band: bands[region]?[type], interruptions: try r.decode(Int.self, at: 7), instanceHours: try r.decode(Double.self, at: 9),
                priceVolatility: PoolRiskModel.robustVolatility(hourly), instanceAgeHours: try r.decode(Double.self, at: 10),
                interruptionsByHour: byHour, hourOfDay: hour))
            pools.append(PoolFacts(
                id: id, type: type, region: region, price: try r.decode(Double.self, at: 3), onDemand: try r.decodeIfPresent(Double.self, at: 4),
                hourly: hourly, recentMean: try r.decode(Double.self, at: 6), score: score))
        }
        summary.pools = pools.count
        if !pools.isEmpty {
            _ = try conn.execute(
                """
                INSERT INTO pool_risk_analysis (pool_id, analyzed_at, risk_score, interruption_component, advisor_prior, advisor_band,
                                                age_component, volatility_component, time_of_day_component, interruptions_30d, details)
                SELECT u.pool, $1, u.risk, u.interruption, u.prior, u.band, u.age, u.volatility, u.tod, u.n,
                       jsonb_build_object('monthly_rate', u.rate)
                  FROM unnest($2::text[], $3::float8[], $4::float8[], $5::float8[], $6::int[], $7::float8[], $8::float8[], $9::float8[],
                              $10::int[], $11::float8[]) AS u(pool, risk, interruption, prior, band, age, volatility, tod, n, rate)
                ON CONFLICT (pool_id, analyzed_at) DO NOTHING
                """,
                [
                    now, PGArray(pools.map(\.id)), PGArray(pools.map(\.score.total)), PGArray(pools.map(\.score.interruption)),
                    PGArray(pools.map { p in bands[p.region]?[p.type].map { min(1, $0.monthlyRate / risk.rateScale) } as (any PGEncodable)? }),
                    PGArray(pools.map { p in bands[p.region]?[p.type]?.index as (any PGEncodable)? }),
                    PGArray(pools.map(\.score.age)), PGArray(pools.map(\.score.volatility)), PGArray(pools.map(\.score.timeOfDay)),
                    PGArray(try rows.map { try $0.decode(Int.self, at: 7) }), PGArray(pools.map(\.score.monthlyRate)),
                ])
        }
        let byMarket = Dictionary(grouping: pools) { "\($0.type)|\($0.region)" }

        let agents = try conn.query(
            """
            SELECT a.id, a.client_id, a.instance_type, a.region, a.current_pool_id, a.current_mode, a.decision_engine,
                   a.terminate_wait_seconds, a.auto_terminate_enabled, a.instance_id,
                   (SELECT extract(epoch FROM now() - max(s.initiated_at)) / 3600 FROM switches s WHERE s.agent_id = a.id)::float8,
                   EXISTS (SELECT 1 FROM commands c WHERE c.agent_id = a.id AND c.command_type = 'switch' AND c.status IN ('pending', 'delivered')),
                   (SELECT i.on_demand_price::float8 FROM instances i WHERE i.id = a.instance_id)
              FROM agents a
             WHERE a.auto_switch_enabled AND NOT a.manual_replica_enabled AND a.enabled AND a.status = 'online'
               AND a.instance_type IS NOT NULL AND a.region IS NOT NULL
             ORDER BY a.id
            """)
        for a in agents {
            summary.agents += 1
            let agentId = try a.decode(UUID.self, at: 0)
            let clientId = try a.decode(UUID.self, at: 1)
            let market = byMarket["\(try a.decode(String.self, at: 2))|\(try a.decode(String.self, at: 3))"] ?? []
            let instanceOnDemand = try a.decodeIfPresent(Double.self, at: 12)
            let onDemand = market.compactMap(\.onDemand).max() ?? instanceOnDemand
            guard let onDemand, !market.isEmpty else {
                summary.skippedNoPrice += 1
                continue
            }
            if try a.decode(Bool.self, at: 11) {
                summary.skippedPending += 1
                continue
            }
            let (mode, pool) = (try a.decodeIfPresent(String.self, at: 5), try a.decodeIfPresent(String.self, at: 4))
            let current: Placement = mode == "ondemand" ? .onDemand : pool.map(Placement.spot) ?? .onDemand
            let input = DecisionInput(
                current: current, onDemandPrice: onDemand,
                pools: market.map { PoolState(pool: $0.id, price: $0.price, recentMean: $0.recentMean, risk: $0.score.total) },
                hoursSinceSwitch: try a.decodeIfPresent(Double.self, at: 10) ?? .infinity)
            // one engine is built so far; an agent set to `learned` is decided by the rules and told so
            let asked = try a.decode(String.self, at: 6)
            var decision = rules.decide(input)
            if asked != rules.name { decision.reason += " (engine \(asked) is not available; decided by rules)" }
            guard decision.action != .stay else { continue }
            let wait = try a.decode(Bool.self, at: 8) ? try a.decode(Int.self, at: 7) : nil
            let commandId = try Commands.issue(
                try .init(
                    .switch, clientId: clientId, agentId: agentId, targetInstanceId: try a.decodeIfPresent(String.self, at: 9),
                    payload: SwitchPayload(
                        action: decision.action.rawValue, targetPoolId: decision.target.pool, reason: decision.reason,
                        expectedSavingsPerHour: decision.expectedSavingsPerHour),
                    targetMode: decision.target == .onDemand ? .onDemand : .spot, targetPoolId: decision.target.pool,
                    // a decision is about today's prices: an agent that did not fetch it within two
                    // passes gets a fresh one instead
                    terminateWaitSeconds: wait, issuedBy: "decisions", expiresIn: .seconds(2 * configuration.passInterval)),
                producer: "spotguard-decisions", on: conn)
            let inputs = JSONValue.object([
                "current": .string(current.description), "on_demand_price": .number(onDemand),
                "hours_since_switch": input.hoursSinceSwitch.isFinite ? .number(input.hoursSinceSwitch) : .null,
                "pools": .array(input.pools.map { .object(["pool": .string($0.pool), "price": .number($0.price), "recent_mean": .number($0.recentMean), "risk": .number($0.risk)]) }),
            ])
            _ = try conn.execute(
                """
                INSERT INTO agent_decision_history (agent_id, client_id, engine, decision, current_pool_id, target_pool_id, target_mode,
                                                    inputs, scores, expected_savings_per_hour, reason, command_id)
                VALUES ($1, $2, 'rules', $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9, $10, $11)
                """,
                [
                    agentId, clientId, decision.action.rawValue, current.pool, decision.target.pool,
                    decision.target == .onDemand ? "ondemand" : "spot", inputs.text,
                    JSONValue.object(decision.scores.mapValues(JSONValue.number)).text, decision.expectedSavingsPerHour, decision.reason, commandId,
                ])
            summary.switches += 1
        }
        return summary
    }
}

struct SwitchPayload: Encodable {
    var action: String
    var targetPoolId: String?
    var reason: String
    var expectedSavingsPerHour: Double
}
