import DecisionCore
import Foundation
import Logging
import SpotFleet
import SpotMarket
import SpotModels
import SpotRuntime
import SpotStore
import Synchronization

/// One decision pass, in one transaction holding the `decisions.pass` claim: every pool with a
/// recent clean price gets its risk (stored in pool_risk_analysis), then every auto-switch agent
/// (never a manual-mode one) is decided by its engine; a decision to move becomes a `switch`
/// command and a ledger row (agent_decision_history) with the inputs, scores and reason.
public struct DecisionPass: Sendable {
    let store: PostgresStore
    let configuration: DecisionConfiguration
    let bands: [String: [String: AdvisorBand]]
    let risk = PoolRiskModel()
    let conservative = RulesEngine()
    let cost = CostEngine()
    let memory: PassMemory

    public init(store: PostgresStore, configuration: DecisionConfiguration, bands: [String: [String: AdvisorBand]], memory: PassMemory = PassMemory()) {
        self.store = store
        self.configuration = configuration
        self.bands = bands
        self.memory = memory
    }

    public struct Summary: Sendable, Codable, Equatable {
        public var pools = 0
        public var agents = 0
        public var switches = 0
        public var skippedPending = 0
        public var skippedNoPrice = 0
        /// The learned engine's model (decision_models id), if one was trained.
        public var model: Int?
        /// Pools whose risk row was written (moved by ≥ `PassMemory.riskStep` or an hour old).
        public var risksWritten = 0
        /// Seconds spent reading pools, writing their risk, and deciding agents (with their writes).
        public var seconds: [String: Double] = [:]

        public init() {}
    }

    /// Runs the pass when it is due (always with `force`); nil when another copy has it.
    public func run(force: Bool) async throws -> Summary? {
        let pass = self
        let written = WrittenRisks()
        let now = Date()
        let summary = try await ScheduledJobs.run(
            "decisions.pass", every: configuration.passInterval, force: force, worker: configuration.workerName, store: store
        ) { conn in try pass.perform(on: conn, now: now, written: written) }
        if summary != nil { memory.recordWritten(written.risks.withLock { $0 }, at: now) }
        return summary
    }

    /// The risks a pass wrote, remembered only once its transaction committed.
    final class WrittenRisks: Sendable {
        let risks = Mutex<[String: Double]>([:])
    }

    struct PoolFacts {
        var id: String
        var type: String
        var region: String
        var price: Double
        var onDemand: Double?
        /// The last day's hourly prices ending with the price now.
        var hourly: [Double]
        var recentMean: Double
        var interruptions: Int
        var score: PoolRiskModel.Score
    }

    func perform(on conn: PGConnection, now: Date, written: WrittenRisks) throws -> Summary {
        var summary = Summary()
        var lap = ContinuousClock.now
        func phase(_ name: String) {
            let now = ContinuousClock.now
            let d = (now - lap).components
            summary.seconds[name] = ((Double(d.seconds) + Double(d.attoseconds) / 1e18) * 1000).rounded() / 1000
            lap = now
        }
        let hour = Calendar(identifier: .gregorian).dateComponents(in: TimeZone(identifier: "UTC")!, from: now).hour ?? 0
        let series = try memory.hourly(at: now, on: conn)
        // pools with a clean price in the window, and the fleet's record in them
        let rows = try conn.query(
            """
            SELECT p.id, p.instance_type, p.region, latest.spot_price::float8, latest.on_demand_price::float8
              FROM spot_pools p
              CROSS JOIN LATERAL (SELECT spot_price, on_demand_price FROM pricing_snapshots_clean c
                                   WHERE c.pool_id = p.id AND c.time_bucket > now() - make_interval(secs => $1) AND c.time_bucket <= now()
                                   ORDER BY c.time_bucket DESC LIMIT 1) latest
            """, [Double(configuration.priceWindow)])
        let records = try PoolEvidence.read(nil, model: risk.interruptions, on: conn)
        var pools: [PoolFacts] = []
        pools.reserveCapacity(rows.count)
        for r in rows {
            let (id, type, region) = (try r.decode(String.self, at: 0), try r.decode(String.self, at: 1), try r.decode(String.self, at: 2))
            let price = try r.decode(Double.self, at: 3)
            let points = series[id] ?? []
            let hourly = points.map(\.1)
            // the learned engine's view: the hours before this one, then the price now
            let currentMark = PassMemory.hourMarks(at: now).last!
            let dayToNow = Array(points.filter { $0.0 < currentMark }.map(\.1).suffix(23)) + [price]
            // what a move is judged on: the mean of the last 6 hourly prices (the price now without them)
            let recent = points.filter { now.timeIntervalSince($0.0) < 6 * 3600 }.map(\.1)
            let record = records[id]
            var byHour = Array(repeating: 0, count: 24)
            for h in record?.terminationHours ?? [] { byHour[h] += 1 }
            let interruptions = record?.terminations ?? 0
            let score = risk.score(
                .init(
                    band: bands[region]?[type], evidence: record?.evidence ?? .init(),
                    priceVolatility: PoolRiskModel.robustVolatility(hourly), instanceAgeHours: record?.runningAgeHours ?? 0,
                    interruptionsByHour: byHour, hourOfDay: hour))
            pools.append(
                PoolFacts(
                    id: id, type: type, region: region, price: price, onDemand: try r.decodeIfPresent(Double.self, at: 4),
                    hourly: dayToNow, recentMean: recent.isEmpty ? price : recent.reduce(0, +) / Double(recent.count), interruptions: interruptions,
                    score: score))
        }
        summary.pools = pools.count
        phase("read_pools")
        let changed = pools.filter { memory.shouldWrite($0.id, risk: $0.score.total, at: now) }
        if !changed.isEmpty {
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
                    now, PGArray(changed.map(\.id)), PGArray(changed.map(\.score.total)), PGArray(changed.map(\.score.interruption)),
                    PGArray(changed.map { p in bands[p.region]?[p.type].map { min(1, $0.monthlyRate / risk.rateScale) } as (any PGEncodable)? }),
                    PGArray(changed.map { p in bands[p.region]?[p.type]?.index as (any PGEncodable)? }),
                    PGArray(changed.map(\.score.age)), PGArray(changed.map(\.score.volatility)), PGArray(changed.map(\.score.timeOfDay)),
                    PGArray(changed.map(\.interruptions)), PGArray(changed.map(\.score.monthlyRate)),
                ])
            written.risks.withLock { $0 = Dictionary(changed.map { ($0.id, $0.score.total) }) { a, _ in a } }
            summary.risksWritten = changed.count
        }
        // a month of risk history is kept
        _ = try conn.execute("DELETE FROM pool_risk_analysis WHERE analyzed_at < $1::timestamptz - interval '30 days'", [now])
        phase("write_risk")
        // by position, not by copy: at 50,000 pools copies of the facts were a fifth of the pass's heap
        let byMarket = Dictionary(grouping: pools.indices) { "\(pools[$0].type)|\(pools[$0].region)" }
        let saved = try ModelStore.latest(on: conn)
        let learned = saved.map { LearnedEngine(model: $0.model, base: cost) }
        summary.model = saved?.id

        let agents = try conn.query(
            """
            SELECT a.id, a.client_id, a.instance_type, a.region, a.current_pool_id, a.current_mode, a.decision_engine,
                   a.terminate_wait_seconds, a.auto_terminate_enabled, a.instance_id,
                   (SELECT extract(epoch FROM now() - max(s.initiated_at)) / 3600 FROM switches s WHERE s.agent_id = a.id)::float8,
                   EXISTS (SELECT 1 FROM commands c WHERE c.agent_id = a.id AND c.command_type = 'switch' AND c.status IN ('pending', 'delivered')),
                   (SELECT i.on_demand_price::float8 FROM instances i WHERE i.id = a.instance_id),
                   array_to_string(a.usable_zones, ','), a.interruption_cost::float8,
                   EXISTS (SELECT 1 FROM replica_instances r WHERE r.agent_id = a.id AND r.is_active AND r.status = 'ready')
              FROM agents a
             WHERE a.auto_switch_enabled AND NOT a.manual_replica_enabled AND a.enabled AND a.status = 'online'
               AND a.instance_type IS NOT NULL AND a.region IS NOT NULL
             ORDER BY a.id
            """)
        // a client's decisions trust its own agents' measurements first: the shared price is
        // what other clients could move (within the SEF's median rule), its own is not
        let own = try ownPrices(clients: Set(try agents.map { try $0.decode(UUID.self, at: 1) }), on: conn)
        for a in agents {
            summary.agents += 1
            let agentId = try a.decode(UUID.self, at: 0)
            let clientId = try a.decode(UUID.self, at: 1)
            let mine = own[clientId] ?? [:]
            let (mode, pool) = (try a.decodeIfPresent(String.self, at: 5), try a.decodeIfPresent(String.self, at: 4))
            // only zones where the workload's VPC has a subnet (as its agent reported them)
            let usable = try a.decodeIfPresent(String.self, at: 13).map { Set($0.split(separator: ",").map(String.init)) }
            let market = (byMarket["\(try a.decode(String.self, at: 2))|\(try a.decode(String.self, at: 3))"] ?? []).map { pools[$0] }.filter { p in
                p.id == pool || usable.map { $0.contains(String(p.id.split(separator: ".").last ?? "")) } ?? true
            }.map { p in
                guard let measured = mine[p.id] else { return p }
                var p = p
                p.price = measured.price
                p.onDemand = measured.onDemand ?? p.onDemand
                return p
            }
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
            let current: Placement = mode == "ondemand" ? .onDemand : pool.map(Placement.spot) ?? .onDemand
            let input = DecisionInput(
                current: current, onDemandPrice: onDemand,
                pools: market.map {
                    PoolState(
                        pool: $0.id, price: $0.price, recentMean: $0.recentMean, risk: $0.score.total, interruptionRate: $0.score.hourlyRate,
                        hourly: $0.hourly)
                },
                hoursSinceSwitch: try a.decodeIfPresent(Double.self, at: 10) ?? .infinity, hourOfDay: hour,
                costs: WorkloadCosts(interruptionCost: try a.decode(Double.self, at: 14), replicaReady: try a.decode(Bool.self, at: 15)))
            // an agent set to `learned` before any model was trained is decided by the cost engine, and told so
            let asked = try a.decode(String.self, at: 6)
            var engine: any DecisionEngine = cost
            if asked == "conservative" { engine = conservative }
            if asked == "learned", let learned { engine = learned }
            var decision = engine.decide(input)
            if asked != engine.name { decision.reason += " (no \(asked) model trained yet; decided by \(engine.name))" }
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
                "interruption_cost": .number(input.costs.interruptionCost), "replica_ready": .bool(input.costs.replicaReady),
                "pools": .array(
                    input.pools.map {
                        .object([
                            "pool": .string($0.pool), "price": .number($0.price), "recent_mean": .number($0.recentMean), "risk": .number($0.risk),
                            "interruption_rate_hourly": .number($0.interruptionRate),
                            "price_source": .string(mine[$0.pool] == nil ? "shared" : "own"),
                        ])
                    }),
            ])
            _ = try conn.execute(
                """
                INSERT INTO agent_decision_history (agent_id, client_id, engine, decision, current_pool_id, target_pool_id, target_mode,
                                                    inputs, scores, expected_savings_per_hour, reason, command_id)
                VALUES ($1, $2, $12, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9, $10, $11)
                """,
                [
                    agentId, clientId, decision.action.rawValue, current.pool, decision.target.pool,
                    decision.target == .onDemand ? "ondemand" : "spot", inputs.text,
                    JSONValue.object(decision.scores.mapValues(JSONValue.number)).text, decision.expectedSavingsPerHour, decision.reason, commandId,
                    engine.name,
                ])
            summary.switches += 1
        }
        phase("decide_agents")
        return summary
    }
}

extension DecisionPass {
    /// Each client's latest own price per pool within the price window (its agents measured it).
    func ownPrices(clients: Set<UUID>, on conn: PGConnection) throws -> [UUID: [String: (price: Double, onDemand: Double?)]] {
        guard !clients.isEmpty else { return [:] }
        var out: [UUID: [String: (price: Double, onDemand: Double?)]] = [:]
        for row in try conn.query(
            """
            SELECT DISTINCT ON (b.client_id, b.pool_id) b.client_id, b.pool_id, b.spot_price::float8, b.on_demand_price::float8
              FROM pricing_client_buckets b
             WHERE b.client_id = ANY($1::uuid[]) AND b.time_bucket > now() - make_interval(secs => $2) AND b.time_bucket <= now()
             ORDER BY b.client_id, b.pool_id, b.time_bucket DESC
            """, [PGArray(Array(clients)), Double(configuration.priceWindow)])
        {
            out[try row.decode(UUID.self, at: 0), default: [:]][try row.decode(String.self, at: 1)] =
                (try row.decode(Double.self, at: 2), try row.decodeIfPresent(Double.self, at: 3))
        }
        return out
    }
}

struct SwitchPayload: Encodable {
    var action: String
    var targetPoolId: String?
    var reason: String
    var expectedSavingsPerHour: Double
}
