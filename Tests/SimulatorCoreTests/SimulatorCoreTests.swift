import Foundation
import SimulatorCore
import SpotMarket
import Testing

/// The shared data folder next to the project (tests read the files there, never copies).
let sharedData = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("shared/data")

@Suite struct MarketTests {
    @Test func syntheticMarketIsFixedBySeedAndLooksLikeSpot() throws {
        let a = try Market.synthetic(seed: 7)
        let b = try Market.synthetic(seed: 7)
        let c = try Market.synthetic(seed: 8)
        #expect(a.pools.count == 24, "4 types × 6 zones")
        #expect(a.zones.map(\.id) == ["use1-az6", "use1-az1", "use1-az2", "use1-az4", "use1-az3", "use1-az5"], "moto's zone ids")
        let pool = "m5.large.us-east-1c"
        #expect((0..<336).map { a.price(pool, hour: $0) } == (0..<336).map { b.price(pool, hour: $0) })
        #expect((0..<336).map { a.price(pool, hour: $0) } != (0..<336).map { c.price(pool, hour: $0) })
        var discounts: [Double] = []
        for p in a.pools {
            let od = try #require(a.type(of: p).flatMap { a.onDemand[$0] })
            for h in 0..<a.history.hours {
                let price = try #require(a.price(p, hour: h))
                #expect(price > 0.1 * od && price <= 1.4 * od + 0.0001, "\(p) hour \(h): \(price) against on-demand \(od)")
                discounts.append(1 - price / od)
            }
            #expect(a.bands[p] != nil)
        }
        let mean = discounts.reduce(0, +) / Double(discounts.count)
        #expect(mean > 0.5 && mean < 0.8, "mean discount \(mean)")
        #expect(discounts.contains { $0 < 0.1 }, "spikes near or above on-demand happen")
    }

    @Test func replayedMarketRepeatsTheRealHistory() throws {
        let csv = try String(contentsOf: sharedData.appendingPathComponent("spot_price_history_us-east-1_2024-01_hourly.csv"), encoding: .utf8)
        let onDemand = try OnDemandPrices.read(sharedData.appendingPathComponent("on_demand_prices.csv").path, region: "us-east-1")
        let market = try Market.replay(csv: csv, region: "us-east-1", onDemand: onDemand, seed: 1)
        #expect(market.instanceTypes == ["c5.large", "m5.large", "r5.large", "t3.medium"])
        #expect(market.pools.count == 20)
        // the file's first m5.large row of us-east-1a is the price of hour 0
        let row = try #require(csv.split(separator: "\n").first { $0.contains(",us-east-1a,m5.large,") })
        let first = try #require(Double(row.split(separator: ",")[5]))
        #expect(market.price("m5.large.us-east-1a", hour: 0) == first)
        let hours = market.history.hours
        #expect(hours >= 24 * 30)
        #expect(market.price("m5.large.us-east-1a", hour: 5 + hours) == market.price("m5.large.us-east-1a", hour: 5), "the month repeats")
        // a change list holds only new prices
        let changes = market.changes("m5.large.us-east-1a", hours: 0..<hours)
        #expect(changes.first?.hour == 0)
        #expect(zip(changes, changes.dropFirst()).allSatisfy { $0.price != $1.price && $0.hour < $1.hour })
    }

    @Test func aMarketNeedsOnDemandPrices() {
        #expect(throws: Market.Invalid.self) { try Market.synthetic(seed: 1, region: "eu-west-3", onDemand: [:]) }
    }
}

@Suite struct FaultTests {
    /// Interruptions come at the band's monthly frequency spread over 720 hours, times the
    /// scale; rebalance recommendations precede the given share; draws repeat for a seed.
    @Test func interruptionsFollowTheAdvisorBand() throws {
        let band = try #require(AdvisorBand(4))
        let faults = FaultModel(seed: 3, interruptionScale: 10, rebalanceShare: 0.3, capacityShortage: 0.05)
        var notices = 0
        var rebalances = 0
        let trials = 400_000
        for i in 0..<trials {
            switch faults.interruption(instance: i % 1000, hour: i / 1000, band: band) {
            case .notice: notices += 1
            case .rebalanceThenNotice: rebalances += 1
            case nil: break
            }
        }
        let expected = 0.25 * 10 / 720 * Double(trials)  // 1,389
        let total = Double(notices + rebalances)
        #expect(abs(total - expected) / expected < 0.1, "\(total) interruptions, expected about \(expected)")
        #expect(abs(Double(rebalances) / total - 0.3) < 0.05)
        #expect(faults.interruption(instance: 17, hour: 5, band: band) == faults.interruption(instance: 17, hour: 5, band: band))
        let short = (0..<20_000).filter { faults.outOfCapacity(pool: "m5.large.us-east-1a", hour: $0) }.count
        #expect(abs(Double(short) / 20_000 - 0.05) < 0.01)
        #expect(FaultModel(seed: 3, interruptionScale: 0).hourlyChance(band) == 0)
        #expect(FaultModel(seed: 3, interruptionScale: 1).hourlyChance(nil) == 0.125 / 720, "no band: the middle one")
    }

    @Test func theBillComparesWithOnDemand() {
        var bill = Bill()
        bill.charge(pricePerHour: 0.03, hours: 10, spot: true, replica: false)
        bill.charge(pricePerHour: 0.03, hours: 10, spot: true, replica: true)
        bill.charge(pricePerHour: 0.096, hours: 2, spot: false, replica: false)
        bill.baseline = 0.096 * 12
        #expect(abs(bill.total - (0.6 + 0.192)) < 1e-9)
        #expect(abs(bill.replicas - 0.3) < 1e-9)
        #expect(abs(bill.savingsPercent! - (1 - 0.792 / 1.152) * 100) < 1e-9)
        #expect(Bill().savingsPercent == nil)
    }

    @Test func theClockRunsTheMarketFaster() {
        let wall = Date(timeIntervalSince1970: 1_800_000_000)
        let sim = Date(timeIntervalSince1970: 1_704_067_200)
        let clock = SimClock(wallStart: wall, simStart: sim, hourSeconds: 5)
        #expect(clock.speed == 720)
        #expect(clock.hour(wall.addingTimeInterval(12.5)) == 2)
        #expect(clock.sim(wall.addingTimeInterval(5)) == sim.addingTimeInterval(3600))
        #expect(clock.wall(sim.addingTimeInterval(7200)) == wall.addingTimeInterval(10))
        #expect(clock.wallTime(ofHour: 3) == wall.addingTimeInterval(15))
    }
}

@Suite struct WireTests {
    @Test func queryParametersAsEC2SendsThem() {
        let r = EC2Request(
            form: "Action=DescribeInstances&Version=2016-11-15&InstanceId.2=i-b&InstanceId.1=i-a&Filter.1.Name=instance-state-name"
                + "&Filter.1.Value.1=running&Filter.1.Value.2=pending&TagSpecification.1.Tag.1.Key=spotguard%3Aagent"
                + "&TagSpecification.1.Tag.1.Value=a+b&ProductDescription.1=Linux%2FUNIX&InstanceId.10=i-j")
        #expect(r.action == "DescribeInstances")
        #expect(r.list("InstanceId") == ["i-a", "i-b", "i-j"], "numeric order, not text order")
        #expect(r.filters == ["instance-state-name": ["running", "pending"]])
        #expect(r.tags("TagSpecification.1.Tag") == ["spotguard:agent": "a b"])
        #expect(r["ProductDescription.1"] == "Linux/UNIX")
    }

    @Test func answersAreAWSDocuments() {
        let doc = EC2Answer.document(action: "CreateTags", requestId: "r-1", [.text("return", "true")])
        #expect(
            doc.hasSuffix(
                #"<CreateTagsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r-1</requestId><return>true</return></CreateTagsResponse>"#))
        let error = EC2Answer.error(code: "InvalidInstanceID.NotFound", message: "The instance ID 'i-<x>' & more", requestId: "r-2")
        #expect(
            error.contains(
                "<Response><Errors><Error><Code>InvalidInstanceID.NotFound</Code><Message>The instance ID &apos;i-&lt;x&gt;&apos; &amp; more</Message></Error></Errors><RequestID>r-2</RequestID></Response>"
            ))
        #expect(XMLElement.set("s", [[.text("a", "1")], [.text("a", "2")]]).rendered == "<s><item><a>1</a></item><item><a>2</a></item></s>")
    }
}
