import DecisionCore
import Foundation
import SpotMarket
import Testing

@Suite struct CostEngineTests {
    let engine = CostEngine()
    let od = 0.10
    /// The Advisor's top band (> 20 % a month) as the model's hourly rate.
    let wild = InterruptionModel().priorHourly(AdvisorBand(4))

    func pool(_ name: String, _ price: Double, rate: Double = 0, mean: Double? = nil) -> PoolState {
        PoolState(pool: name, price: price, recentMean: mean ?? price, risk: 0, interruptionRate: rate)
    }

    func input(_ current: Placement, _ pools: [PoolState], since: Double = 100, costs: WorkloadCosts = WorkloadCosts()) -> DecisionInput {
        DecisionInput(current: current, onDemandPrice: od, pools: pools, hoursSinceSwitch: since, costs: costs)
    }

    @Test func aRiskyDiscountIsTakenBecauseItsInterruptionsCostLessThanTheFlight() {
        // 70 % off in the top band: 0.25 / 730 × 5 $ ≈ 0.0017 $/h of expected interruptions
        let back = engine.decide(input(.onDemand, [pool("a", 0.03, rate: wild)]))
        #expect(back.action == .toSpot && back.target == .spot("a"))
        #expect(abs(back.expectedSavingsPerHour - (od - 0.03 - wild * 5)) < 1e-6)
        #expect(engine.decide(input(.spot("a"), [pool("a", 0.03, rate: wild)])).action == .stay)
        // the seeds' bands refuse the same pool (risk 0.6 from the band alone)
        let risk = PoolRiskModel().score(.init(band: AdvisorBand(4))).total
        #expect(
            RulesEngine().decide(
                DecisionInput(
                    current: .onDemand, onDemandPrice: od,
                    pools: [
                        PoolState(pool: "a", price: 0.03, recentMean: 0.03, risk: risk)
                    ], hoursSinceSwitch: 100)
            ).action == .stay)
    }

    @Test func aPoolInterruptedOverAndOverLosesToOnDemandAndAReplicaChangesThat() {
        // the fleet saw one interruption every 50 instance-hours: 0.02 × 5 $ = 0.10 $/h on top of 0.03
        let battered = pool("a", 0.03, rate: 0.02)
        let d = engine.decide(input(.spot("a"), [battered], since: 0))
        #expect(d.action == .toOnDemand, "an escape does not wait for the minimum time: \(d.reason)")
        // with a ready replica an interruption is a failover (1/60 of the cost): spot wins again
        let covered = engine.decide(input(.spot("a"), [battered], since: 0, costs: WorkloadCosts(replicaReady: true)))
        #expect(covered.action == .stay)
        // and a workload that prices its downtime low keeps the discount
        #expect(engine.decide(input(.spot("a"), [battered], costs: WorkloadCosts(interruptionCost: 1))).action == .stay)
    }

    @Test func spotCostingOnDemandIsLeftAtOnceForTheCheapestPlace() {
        let toPool = engine.decide(input(.spot("a"), [pool("a", 0.12), pool("b", 0.05)], since: 0))
        #expect(toPool.action == .switchPool && toPool.target == .spot("b"))
        let toOnDemand = engine.decide(input(.spot("a"), [pool("a", 0.12), pool("b", 0.11)], since: 0))
        #expect(toOnDemand.action == .toOnDemand)
    }

    /// Pool to pool: gain × holding hours must beat hysteresis × the switch cost, on the prices
    /// now and on the recent means, and not before the minimum time between switches.
    @Test func poolToPoolOnlyWhenTheGainPaysForTheSwitchTwice() {
        let here = 0.040
        let costs = WorkloadCosts()
        let threshold = engine.hysteresis * costs.switchCost(from: here) / engine.holdingHours
        #expect(engine.decide(input(.spot("a"), [pool("a", here), pool("b", here - threshold * 0.99)])).action == .stay)
        let moved = engine.decide(input(.spot("a"), [pool("a", here), pool("b", here - threshold * 1.01)]))
        #expect(moved.action == .switchPool && moved.target == .spot("b"))
        // a cheap tick in a pool that is usually dearer moves nobody
        #expect(engine.decide(input(.spot("a"), [pool("a", here), pool("b", 0.020, mean: 0.045)])).action == .stay)
        #expect(engine.decide(input(.spot("a"), [pool("a", here), pool("b", 0.020)], since: 5)).action == .stay)
        // the same gain with the interruption rate against it: a pool that looks cheaper but is
        // interrupted more is not a gain
        let riskier = pool("b", here - threshold * 2, rate: threshold * 2 / 5 + 1e-6)
        #expect(engine.decide(input(.spot("a"), [pool("a", here), riskier])).action == .stay)
    }

    @Test func backFromOnDemandOnThePriceNowAfterAnHour() {
        // a market just down from a spike: its recent mean is still high, the price now is not
        let recovered = pool("a", 0.04, mean: 0.15)
        #expect(engine.decide(input(.onDemand, [recovered], since: 0.5)).action == .stay)
        let back = engine.decide(input(.onDemand, [recovered], since: 1))
        #expect(back.action == .toSpot && back.target == .spot("a"))
        // a pool barely under on-demand does not pay for the trip
        #expect(engine.decide(input(.onDemand, [pool("a", 0.0999)])).action == .stay)
    }

    @Test func everyDecisionSaysWhyWithItsCosts() {
        for d in [
            engine.decide(input(.spot("a"), [pool("a", 0.04)])), engine.decide(input(.onDemand, [pool("a", 0.09)])),
            engine.decide(input(.spot("a"), [pool("a", 0.2)])), engine.decide(input(.spot("gone"), [pool("a", 0.04)])),
        ] {
            #expect(!d.reason.isEmpty)
            #expect(d.scores["on_demand_price"] == od && d.scores["interruption_cost"] == 5)
        }
    }
}

@Suite struct InterruptionModelTests {
    let model = InterruptionModel()

    @Test func theBandIsThePriorAndTheFleetsRecordMovesIt() {
        #expect(abs(model.hourly(band: AdvisorBand(0), evidence: .init()) * 730 - 0.025) < 1e-12)
        #expect(abs(model.hourly(band: nil, evidence: .init()) * 730 - 0.125) < 1e-12, "no band: the middle one")
        // a calm-band pool where the fleet saw 10 interruptions in 7,200 instance-hours
        #expect(model.monthly(band: AdvisorBand(0), evidence: .init(interruptions: 10, exposureHours: 7200)) > 0.9)
        // a wild-band pool the fleet ran for a long time without trouble
        #expect(model.monthly(band: AdvisorBand(4), evidence: .init(interruptions: 0, exposureHours: 100_000)) < 0.01)
    }

    @Test func decayedExposureIsTheIntegralOfTheWeights() {
        let h = model.halfLifeHours
        // an instance running for one half-life until now: ∫0..h 2^(-t/h) dt = h / (2 ln 2)
        #expect(abs(model.exposure(startAgoHours: h, endAgoHours: 0) - h / (2 * M_LN2)) < 1e-9)
        // a very long run tends to the mean life h / ln 2
        #expect(abs(model.exposure(startAgoHours: 100 * h, endAgoHours: 0) - h / M_LN2) < 1e-6)
        #expect(model.exposure(startAgoHours: 10, endAgoHours: 10) == 0)
        #expect(abs(model.aged(.init(interruptions: 1, exposureHours: 8), hours: h).interruptions - 0.5) < 1e-12)
    }

    /// No ratchet: one interruption in a pool nobody runs in any more (so no exposure dilutes
    /// it) bans it under the seeds' bands; with no news for four weeks it qualifies again.
    @Test func aPoolBannedByOneInterruptionQualifiesAgain() {
        let risk = PoolRiskModel()
        let rules = RulesEngine()
        let band = AdvisorBand(2)  // 10–15 %: risk 0.3 from the band, so it needs > 50 % savings
        func qualifies(_ e: InterruptionModel.Evidence) -> Bool {
            let score = risk.score(.init(band: band, evidence: e))
            return rules.qualifies(PoolState(pool: "a", price: 0.04, recentMean: 0.04, risk: score.total), onDemand: 0.10)
        }
        #expect(qualifies(.init()))
        let struck = InterruptionModel.Evidence(interruptions: 1, exposureHours: 20)
        #expect(!qualifies(struck), "one interruption over 20 instance-hours bans it")
        #expect(!qualifies(model.aged(struck, hours: 24 * 7)), "a week later it is still out")
        #expect(qualifies(model.aged(struck, hours: 24 * 28)), "four weeks without news and it is back")
        // and the cost engine, which never bans, prices the same interruption and forgets it too
        let fresh = model.hourly(band: band, evidence: struck)
        let later = model.hourly(band: band, evidence: model.aged(struck, hours: 24 * 28))
        #expect(fresh > 5 * later && later < 2 * model.priorHourly(band))
    }
}

/// The default engine's targets on every region of the shared real prices (the short form of
/// `make backtest`: one seed, no spikes): at least 99 % of the oracle's savings,
/// never below staying in the first pool, at most one switch per workload and day.
@Suite struct RealMarketTests {
    static let data = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("shared/data")

    @Test func theCostEngineMeetsItsTargetsInEveryRegion() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.data.path).filter { $0.hasPrefix("spot_price_") && $0.hasSuffix(".csv") }
        let onDemandCSV = try String(contentsOf: Self.data.appendingPathComponent("on_demand_prices.csv"), encoding: .utf8)
        let bands = try AdvisorBand.table(json: Data(contentsOf: Self.data.appendingPathComponent("spot-advisor-data_2025-06.json")))
        var regions: Set<String> = []
        for file in files.sorted() {
            let history = try PriceHistory.parse(csv: try String(contentsOf: Self.data.appendingPathComponent(file), encoding: .utf8))
            for (region, h) in history.byRegion where regions.insert(region).inserted {
                var s = BacktestSetup(
                    history: h, onDemand: OnDemandPrices.parse(csv: onDemandCSV, region: region), bands: bands[region] ?? [:], workloads: 200, seed: 1)
                s.evaluateFrom = 240
                let oracle = Backtest.run(.oracle, s)
                let cost = Backtest.run(.engine(CostEngine()), s)
                let stay = Backtest.run(.stayInFirstPool, s)
                #expect(cost.share(of: oracle) >= 0.99, "\(region): \(cost.share(of: oracle))")
                #expect(cost.cost <= stay.cost, "\(region): never below staying put")
                #expect(cost.switchesPerWorkloadDay <= 1, "\(region): \(cost.switchesPerWorkloadDay)")
            }
        }
        #expect(regions.count >= 5, "us-east-1 and the four regions of the change-event file: \(regions.sorted())")
    }
}
