import DecisionCore
import Foundation
import SpotMarket
import Testing

@Suite struct RulesEngineTests {
    let engine = RulesEngine()
    let od = 0.10

    func pool(_ name: String, _ price: Double, risk: Double = 0.1, mean: Double? = nil) -> PoolState {
        PoolState(pool: name, price: price, recentMean: mean ?? price, risk: risk)
    }

    func input(_ current: Placement, _ pools: [PoolState], since: Double = 100, qualifying: Double = 0) -> DecisionInput {
        DecisionInput(current: current, onDemandPrice: od, pools: pools, hoursSinceSwitch: since, qualifyingHoursOnDemand: qualifying)
    }

    /// The seeds' bands at each boundary: savings ≥ 30 % below risk 0.2, > 50 % up to 0.5, never above.
    @Test func qualificationBands() {
        #expect(engine.qualifies(pool("a", 0.070, risk: 0.199), onDemand: od))  // 30 % exactly, safe
        #expect(!engine.qualifies(pool("a", 0.0701, risk: 0.199), onDemand: od))  // 29.9 %
        #expect(!engine.qualifies(pool("a", 0.070, risk: 0.2), onDemand: od))  // risky needs > 50 %
        #expect(!engine.qualifies(pool("a", 0.050, risk: 0.2), onDemand: od))  // 50 % is not > 50 %
        #expect(engine.qualifies(pool("a", 0.0499, risk: 0.2), onDemand: od))
        #expect(engine.qualifies(pool("a", 0.0499, risk: 0.5), onDemand: od))
        #expect(!engine.qualifies(pool("a", 0.001, risk: 0.501), onDemand: od))  // above 0.5 never
    }

    @Test func leavesSpotCostingMoreThanOnDemandAtOnce() {
        let d = engine.decide(input(.spot("a"), [pool("a", 0.10)], since: 0))
        #expect(d.action == .toOnDemand && d.target == .onDemand)
        let moved = engine.decide(input(.spot("a"), [pool("a", 0.12), pool("b", 0.05)], since: 0))
        #expect(moved.action == .switchPool && moved.target == .spot("b"), "another pool that qualifies beats on-demand")
        #expect(abs(moved.expectedSavingsPerHour - 0.07) < 1e-9)
    }

    @Test func aPoolThatStopsQualifyingIsLeftOnlyAfterTheMinimumTime() {
        let risky = [pool("a", 0.06, risk: 0.6)]
        #expect(engine.decide(input(.spot("a"), risky, since: 5.9)).action == .stay)
        #expect(engine.decide(input(.spot("a"), risky, since: 6)).action == .toOnDemand)
    }

    @Test func returnsToSpotWithAMarginSoAnEdgeMarketDoesNotFlap() {
        // 32 % savings qualifies (≥ 30 %) but not with the 5-point return margin
        #expect(engine.decide(input(.onDemand, [pool("a", 0.068)])).action == .stay)
        let back = engine.decide(input(.onDemand, [pool("a", 0.065), pool("b", 0.060)]))
        #expect(back.action == .toSpot && back.target == .spot("b"))
        var patient = engine
        patient.recoveryHours = 2
        #expect(patient.decide(input(.onDemand, [pool("a", 0.05)], qualifying: 1.9)).action == .stay)
        #expect(patient.decide(input(.onDemand, [pool("a", 0.05)], qualifying: 2)).action == .toSpot)
    }

    /// Pool to pool: gain × 24 h must beat twice the switch cost (5 minutes of the current price).
    @Test func poolToPoolOnlyWhenTheGainPaysForTheSwitch() {
        let here = 0.040
        let threshold = 2 * engine.switchCost(from: here) / engine.holdingHours  // $/h
        let justBelow = engine.decide(input(.spot("a"), [pool("a", here), pool("b", here - threshold * 0.99)]))
        #expect(justBelow.action == .stay)
        let above = engine.decide(input(.spot("a"), [pool("a", here), pool("b", here - threshold * 1.01)]))
        #expect(above.action == .switchPool && above.target == .spot("b"))
        // judged on recent means: a cheap tick in a pool that is usually dearer does not move anyone
        let tick = engine.decide(input(.spot("a"), [pool("a", here), pool("b", 0.030, mean: 0.045)]))
        #expect(tick.action == .stay)
        // and not before the minimum time between switches
        let early = engine.decide(input(.spot("a"), [pool("a", here), pool("b", 0.020)], since: 5))
        #expect(early.action == .stay)
    }

    @Test func everyDecisionSaysWhy() {
        for d in [
            engine.decide(input(.spot("a"), [pool("a", 0.04)])), engine.decide(input(.onDemand, [pool("a", 0.09)])),
            engine.decide(input(.spot("a"), [pool("a", 0.2)])),
        ] {
            #expect(!d.reason.isEmpty)
            #expect(d.scores["on_demand_price"] == od)
        }
    }
}

@Suite struct PoolRiskTests {
    let model = PoolRiskModel()

    @Test func advisorBandIsThePriorAndTheFleetRecordOutweighsIt() {
        let calm = model.score(.init(band: AdvisorBand(0)))
        #expect(calm.interruption == 0.1 && calm.total == 0.06)  // 2.5 % a month on a 25 % scale
        let wild = model.score(.init(band: AdvisorBand(4)))
        #expect(wild.interruption == 1 && wild.total == 0.6)
        let unknown = model.score(.init(band: nil))
        #expect(unknown.interruption == 0.5, "no band: the middle band, not zero")
        // a "calm" pool where the fleet saw 10 interruptions in 7,200 instance-hours (about 1 a month each)
        let observed = model.score(.init(band: AdvisorBand(0), evidence: .init(interruptions: 10, exposureHours: 7200)))
        #expect(observed.monthlyRate > 0.9 && observed.interruption == 1)
        // a "wild" pool the fleet ran for a year without trouble
        let quiet = model.score(.init(band: AdvisorBand(4), evidence: .init(interruptions: 0, exposureHours: 8760 * 10)))
        #expect(quiet.interruption < 0.01)
    }

    @Test func volatilityAgeAndTimeOfDay() {
        let s = model.score(.init(band: AdvisorBand(0), priceVolatility: 0.025, instanceAgeHours: 84))
        #expect(s.volatility == 0.5 && s.age == 0.5)
        #expect(s.total == 0.21)  // 0.06 + 0.075 + 0.075
        var hours = Array(repeating: 0, count: 24)
        hours[2] = 4
        hours[3] = 2
        let atThree = model.score(.init(band: AdvisorBand(0), interruptionsByHour: hours, hourOfDay: 3))
        #expect(atThree.timeOfDay == 1)
        let atNoon = model.score(.init(band: AdvisorBand(0), interruptionsByHour: hours, hourOfDay: 12))
        #expect(atNoon.timeOfDay == 0)
        hours[2] = 1
        hours[3] = 1
        #expect(model.score(.init(band: AdvisorBand(0), interruptionsByHour: hours, hourOfDay: 3)).timeOfDay == 0, "fewer than 5 events say nothing")
    }
}

@Suite struct BacktestTests {
    static let snapshots = """
        timestamp,region,az,instance_type,product_description,spot_price,az_id
        2024-01-01T00:00:00Z,us-east-1,us-east-1a,c5.large,Linux/UNIX,0.040,use1-az4
        2024-01-01T00:00:00Z,us-east-1,us-east-1b,c5.large,Linux/UNIX,0.050,use1-az6
        2024-01-01T01:00:00Z,us-east-1,us-east-1a,c5.large,Linux/UNIX,0.041,use1-az4
        2024-01-01T01:00:00Z,us-east-1,us-east-1b,c5.large,Linux/UNIX,-1,use1-az6
        2024-01-01T02:00:00Z,us-east-1,us-east-1a,c5.large,Linux/UNIX,0.042,use1-az4
        2024-01-01T02:00:00Z,us-east-1,us-east-1b,c5.large,Linux/UNIX,0.030,use1-az6
        """

    @Test func snapshotAndChangeEventFilesGiveTheSameGrid() throws {
        let hourly = try PriceHistory.parse(csv: Self.snapshots)
        #expect(hourly.hours == 3)
        #expect(hourly.prices["c5.large.us-east-1a"]! == [0.040, 0.041, 0.042])
        #expect(hourly.prices["c5.large.us-east-1b"]! == [0.050, 0.050, 0.030], "a missing (-1) price holds the last one")
        let events = try PriceHistory.parse(
            csv: """
                timestamp,az,instance_type,spot_price
                2023-12-31T23:10:00Z,us-east-1b,c5.large,0.050
                2024-01-01T00:00:00Z,us-east-1a,c5.large,0.040
                2024-01-01T00:40:00Z,us-east-1a,c5.large,0.041
                2024-01-01T01:59:00Z,us-east-1b,c5.large,0.030
                2024-01-01T02:00:00Z,us-east-1a,c5.large,0.042
                """)
        #expect(events.start == Date(timeIntervalSince1970: 1_704_063_600))  // 2023-12-31T23:00Z
        #expect(events.prices["c5.large.us-east-1a"]! == [nil, 0.040, 0.041, 0.042])
        #expect(events.prices["c5.large.us-east-1b"]! == [nil, 0.050, 0.050, 0.030])
    }

    func setup(_ csv: String = snapshots, workloads: Int = 8, seed: UInt64 = 7) throws -> BacktestSetup {
        BacktestSetup(
            history: try PriceHistory.parse(csv: csv), onDemand: ["c5.large": 0.085], bands: ["c5.large": AdvisorBand(0)!],
            workloads: workloads, seed: seed)
    }

    @Test func oracleBoundsEveryStrategyAndRunsAreDeterministic() throws {
        let s = try setup()
        let oracle = Backtest.run(.oracle, s)
        for strategy in [Strategy.stayInFirstPool, .greedyCheapest, .engine(CostEngine()), .engine(RulesEngine()), .alwaysOnDemand] {
            let r = Backtest.run(strategy, s)
            #expect(r.cost >= oracle.cost - 1e-9, "\(r.strategy) beat the oracle")
            #expect(r == Backtest.run(strategy, s), "\(r.strategy) is not deterministic")
        }
        // the oracle pays for switches too: 0.012 $/h for one hour does not pay for moving to
        // the 0.030 pool, so it keeps the 0.040, 0.041, 0.042 pool
        #expect(abs(oracle.cost - 8 * (0.040 + 0.041 + 0.042)) < 1e-9)
        #expect(oracle.switches == 0)
        #expect(Backtest.run(.alwaysOnDemand, s).savingsShare == 0)
    }

    func spiky(hours: Int = 48, spike: Range<Int> = 20..<26) -> String {
        var rows = ["timestamp,az,instance_type,spot_price"]
        for h in 0..<hours {
            let t = Date(timeIntervalSince1970: 1_704_067_200 + Double(h) * 3600).formatted(.iso8601)
            let spiked = spike.contains(h)
            rows.append("\(t),us-east-1a,c5.large,\(spiked ? 0.2 : 0.040)")
            rows.append("\(t),us-east-1b,c5.large,\(spiked ? 0.2 : 0.045)")
        }
        return rows.joined(separator: "\n")
    }

    @Test func aSpikeAboveOnDemandIsSatOutOnOnDemandAndLeftAtOnce() throws {
        let s = try setup(spiky(), workloads: 4)
        for engine in [CostEngine() as any DecisionEngine, RulesEngine()] {
            let r = Backtest.run(.engine(engine), s)
            #expect(r.onDemandHours == 4 * 6, "\(engine.name): on on-demand exactly while spot costs more")
            #expect((8...12).contains(r.switches), "\(engine.name): out and back, plus at most one move to the cheaper pool, per workload")
            #expect(r.cost < Backtest.run(.stayInFirstPool, s).cost)
        }
    }

    @Test func manualWorkloadsAlwaysHaveTheirReplica() throws {
        var s = try setup(workloads: 50, seed: 3)
        s.manualShare = 1
        s.bands = ["c5.large": AdvisorBand(4)!]
        let r = Backtest.run(.engine(CostEngine()), s)
        #expect(r.interruptionsWithoutReplica == 0)
        #expect(r.replicaHours == 50 * 3)
        #expect(r.replicaCost > 0)
    }

    /// The interruption draws are the same for every strategy, the oracle included: it knows
    /// the prices and each pool's rate, not the luck, and pays for what strikes it like the rest.
    @Test func everyStrategyPaysForItsInterruptionsTheOracleToo() throws {
        var s = try setup(spiky(hours: 400, spike: 0..<0), workloads: 60, seed: 11)
        s.bands = ["c5.large": AdvisorBand(4)!]
        s.poolRateSpread = 1  // both pools at the band's rate
        let results = [Strategy.stayInFirstPool, .greedyCheapest, .engine(CostEngine()), .oracle].map { Backtest.run($0, s) }
        for r in results {
            let count = r.interruptionsWithReplica + r.interruptionsWithoutReplica
            #expect(count > 0, "\(r.strategy): 60 workloads × 400 h at 25 % a month meet interruptions")
            #expect(abs(r.interruptionCost - Double(r.interruptionsWithoutReplica) * s.costs.interruptionCost) < 1e-9)
        }
    }

    /// The point of the cost engine: a type in the Advisor's top band at a 70 % discount stays on
    /// spot and keeps the savings; the conservative profile (the seeds' bands) flees to on-demand.
    @Test func theCostEngineKeepsTheDiscountTheBandsFlee() throws {
        var rows = ["timestamp,az,instance_type,spot_price"]
        for h in 0..<400 {
            let t = Date(timeIntervalSince1970: 1_704_067_200 + Double(h) * 3600).formatted(.iso8601)
            rows.append("\(t),us-east-1a,c5.large,\(0.0255 + (h % 24 == 3 ? 0.0005 : 0))")
            rows.append("\(t),us-east-1b,c5.large,0.027")
        }
        var s = try setup(rows.joined(separator: "\n"), workloads: 40, seed: 5)
        s.bands = ["c5.large": AdvisorBand(4)!]
        s.evaluateFrom = 48
        let oracle = Backtest.run(.oracle, s)
        let cost = Backtest.run(.engine(CostEngine()), s)
        let conservative = Backtest.run(.engine(RulesEngine()), s)
        #expect(cost.share(of: oracle) >= 0.99, "cost engine: \(cost.share(of: oracle))")
        #expect(cost.onDemandHours == 0)
        #expect(conservative.share(of: oracle) < 0.2, "the bands flee: \(conservative.share(of: oracle))")
        #expect(cost.switchesPerWorkloadDay <= 1)
    }
}

@Suite struct VolatilityTests {
    @Test func aShortSpikeDoesNotMakeACalmPoolVolatile() {
        let calm = Array(repeating: 0.040, count: 18) + Array(repeating: 0.2, count: 6)
        #expect(PoolRiskModel.robustVolatility(calm) == 0)
        let noisy = (0..<24).map { 0.040 * (1 + ($0 % 2 == 0 ? 0.05 : -0.05)) }
        #expect(abs(PoolRiskModel.robustVolatility(noisy) - 1.4826 * 0.05) < 1e-9)
        #expect(PoolRiskModel.robustVolatility([0.04]) == 0)
    }
}
