import ReplicaCore
import SpotModels
import Testing

@Suite struct LifecycleTests {
    static let legal: Set<[ReplicaStatus]> = [
        [.launching, .syncing], [.launching, .failed], [.launching, .terminated],
        [.syncing, .ready], [.syncing, .failed], [.syncing, .terminated],
        [.ready, .syncing], [.ready, .promoted], [.ready, .failed], [.ready, .terminated],
    ]

    /// Every ordered pair of distinct states: the ten legal moves succeed, the twenty others
    /// are refused with 409 and leave the replica where it was.
    @Test(arguments: ReplicaStatus.allCases)
    func everyMoveFrom(_ from: ReplicaStatus) throws {
        for to in ReplicaStatus.allCases where to != from {
            var replica = ReplicaLifecycle(status: from, instanceId: "i-0123456789abcdef0")
            if Self.legal.contains([from, to]) {
                #expect(try replica.move(to: to), "\(from) -> \(to) should be legal")
                #expect(replica.status == to)
            } else {
                #expect(throws: ReplicaRefusal.illegal(from, to), "\(from) -> \(to) should be refused") { try replica.move(to: to) }
                #expect(replica.status == from)
                #expect(ReplicaRefusal.illegal(from, to).status == 409)
            }
        }
    }

    @Test(arguments: ReplicaStatus.allCases)
    func movingToTheSameStateChangesNothing(_ status: ReplicaStatus) throws {
        var replica = ReplicaLifecycle(status: status)
        #expect(try replica.move(to: status) == false)
        #expect(replica.status == status)
    }

    @Test func onlyActiveStatesAreActive() {
        #expect(ReplicaStatus.allCases.filter(\.isActive) == [.launching, .syncing, .ready])
    }

    @Test func promotionNeedsAnInstance() {
        var replica = ReplicaLifecycle(status: .ready, syncStatus: .synced)
        #expect(throws: ReplicaRefusal.self) { try replica.move(to: .promoted) }
        #expect(replica.status == .ready)
    }

    @Test func syncReportsWalkLaunchingToReady() throws {
        var replica = ReplicaLifecycle()
        try replica.launched(instanceId: "i-0123456789abcdef0")
        try replica.report(sync: .syncing, status: nil)
        #expect(replica.status == .syncing)
        try replica.report(sync: .synced, status: .ready)
        #expect(replica.status == .ready && replica.syncStatus == .synced)
        try replica.report(sync: .synced, status: nil)
        #expect(replica.status == .ready, "a repeated report keeps it ready")
        try replica.report(sync: .outOfSync, status: nil)
        #expect(replica.status == .syncing, "falling out of sync leaves ready")
    }

    @Test func readyNeedsSyncAndInstanceAndAPassThroughSyncing() throws {
        var unsynced = ReplicaLifecycle(status: .syncing, instanceId: "i-0123456789abcdef0")
        #expect(throws: ReplicaRefusal(409, "replica_not_synced", "a replica is ready only when its sync status is synced")) {
            try unsynced.report(sync: .syncing, status: .ready)
        }
        var noInstance = ReplicaLifecycle(status: .syncing)
        #expect(throws: ReplicaRefusal.self) { try noInstance.report(sync: .synced, status: .ready) }
        var launching = ReplicaLifecycle(instanceId: "i-0123456789abcdef0")
        #expect(throws: ReplicaRefusal.illegal(.launching, .ready)) { try launching.report(sync: .synced, status: .ready) }
        var agentSaysFailed = ReplicaLifecycle(status: .syncing)
        #expect(throws: ReplicaRefusal.self) { try agentSaysFailed.report(sync: .synced, status: .failed) }
        #expect(agentSaysFailed.status == .syncing)
    }

    @Test func endedReplicasTakeNoReportsAndKeepTheirInstance() throws {
        var ended = ReplicaLifecycle(status: .terminated, instanceId: "i-0123456789abcdef0")
        #expect(throws: ReplicaRefusal.self) { try ended.report(sync: .synced, status: nil) }
        var running = ReplicaLifecycle(instanceId: "i-0123456789abcdef0")
        #expect(throws: ReplicaRefusal.self) { try running.launched(instanceId: "i-0fedcba9876543210") }
        try running.launched(instanceId: "i-0123456789abcdef0")
        #expect(running.instanceId == "i-0123456789abcdef0")
    }
}

@Suite struct PlacementTests {
    let type = InstanceType(rawValue: "t3.medium")!
    let az = AvailabilityZone(rawValue: "us-east-1a")!

    func quote(_ pool: String, _ price: Double, interruptions: Int = 0) -> PoolQuote {
        PoolQuote(pool: PoolID(rawValue: pool)!, price: price, confidence: 1, recentInterruptions: interruptions)
    }

    @Test func cheapestPoolOutsideThePrimaryZone() {
        let quotes = [
            quote("t3.medium.us-east-1a", 0.010), quote("t3.medium.us-east-1b", 0.031), quote("t3.medium.us-east-1c", 0.029),
            quote("t3.large.us-east-1d", 0.005), quote("t3.medium.us-west-2a", 0.001),
        ]
        #expect(Placement.choose(from: quotes, instanceType: type, primaryAZ: az)?.pool.rawValue == "t3.medium.us-east-1c")
    }

    @Test func limitsZonesPriceAndSafety() {
        let quotes = [quote("t3.medium.us-east-1b", 0.031), quote("t3.medium.us-east-1c", 0.029, interruptions: 2)]
        #expect(Placement.choose(from: quotes, instanceType: type, primaryAZ: az, excludeZones: ["us-east-1c"])?.pool.az.rawValue == "us-east-1b")
        #expect(Placement.choose(from: quotes, instanceType: type, primaryAZ: az, maxHourlyCost: 0.030)?.pool.az.rawValue == "us-east-1c")
        #expect(Placement.choose(from: quotes, instanceType: type, primaryAZ: az, safe: true)?.pool.az.rawValue == "us-east-1b")
        #expect(Placement.choose(from: quotes, instanceType: type, primaryAZ: az, maxHourlyCost: 0.01) == nil)
        #expect(Placement.choose(from: [quote("t3.medium.us-east-1a", 0.01)], instanceType: type, primaryAZ: az) == nil)
    }

    @Test func tiesGoToTheLowerPoolIdWhateverTheOrder() {
        let quotes = [quote("t3.medium.us-east-1d", 0.03), quote("t3.medium.us-east-1b", 0.03), quote("t3.medium.us-east-1c", 0.03)]
        for shuffled in [quotes, quotes.reversed(), [quotes[2], quotes[0], quotes[1]]] {
            #expect(Placement.choose(from: shuffled, instanceType: type, primaryAZ: az)?.pool.az.rawValue == "us-east-1b")
        }
    }
}

@Suite struct RiskTests {
    let model = RiskModel()

    @Test func weightsAndSaturation() {
        let none = model.score(.init(poolMonthlyRate: 0, instanceAgeHours: 0, priceVolatility: 0))
        #expect(none.total == 0)
        let all = model.score(.init(poolMonthlyRate: 0.9, instanceAgeHours: 1000, priceVolatility: 1))
        #expect(all.total == 1 && all.history == 1 && all.age == 1 && all.volatility == 1)
        // 0.4 × 0.125/0.25 + 0.3 × 84/168 + 0.3 × 0.01/0.05 = 0.2 + 0.15 + 0.06
        let some = model.score(.init(poolMonthlyRate: 0.125, instanceAgeHours: 84, priceVolatility: 0.01))
        #expect(some.total == 0.41)
    }

    @Test func thresholdDecidesAtThirtyPercent() {
        // a fresh instance in a calm pool: the interruption rate alone must reach the threshold
        let middle = model.score(.init(poolMonthlyRate: 0.125, instanceAgeHours: 0, priceVolatility: 0))
        #expect(middle.total == 0.2 && !model.warrantsReplica(middle))
        let troubled = model.score(.init(poolMonthlyRate: 0.25, instanceAgeHours: 0, priceVolatility: 0))
        #expect(troubled.total == 0.4 && model.warrantsReplica(troubled))
        var lenient = model
        lenient.threshold = 0.5
        #expect(!lenient.warrantsReplica(troubled))
    }

    @Test func nonsenseInputsCountAsNoRisk() {
        let s = model.score(.init(poolMonthlyRate: -3, instanceAgeHours: .nan, priceVolatility: -.infinity))
        #expect(s.total == 0)
    }
}
