import Foundation
import SEFApp
import SpotMarket
import SpotModels
import SpotRuntime
import SpotStore
import Testing
import ToolSupport

/// One message of the determinism data set.
enum PriceMessage: Sendable {
    case report(id: UUID, prices: [(String, Double)], offset: TimeInterval)
    case submit(id: UUID, az: String, price: Double, source: String, offset: TimeInterval)

    func send(_ fleet: PriceFleet, base: Date) async throws -> Int {
        switch self {
        case .report(let id, let prices, let offset): try await fleet.report(prices, at: base + offset, id: id)
        case .submit(let id, let az, let price, let source, let offset):
            try await fleet.submit(az, price, at: base + offset, source: source, id: id)
        }
    }

    var rows: Int {
        switch self {
        case .report(_, let prices, _): prices.count
        case .submit: 1
        }
    }

    /// The same message with fresh ids, for a second fleet.
    func renewed() -> PriceMessage {
        switch self {
        case .report(_, let p, let o): .report(id: UUID(), prices: p, offset: o)
        case .submit(_, let az, let price, let s, let o): .submit(id: UUID(), az: az, price: price, source: s, offset: o)
        }
    }
}

/// Six hours of four pools with every case the SEF resolves: repeated primary readings,
/// agreeing and disagreeing replicas, replica-only buckets, and gaps of every method
/// (10 and 20 minutes in one pool, 65 minutes with peers, 20 minutes closed by a replica).
func determinismDataSet(seed: UInt64) -> [PriceMessage] {
    var rng = SplitMix64(seed: seed)
    let azs = ["a", "b", "c", "d"]
    var price = ["a": 0.0500, "b": 0.0450, "c": 0.0520, "d": 0.0480]
    let missing: [String: Set<Int>] = [
        "a": Set([10] + Array(20...22) + Array(30...41)),
        "b": Set(50...53),
        "c": Set(60...62),
        "d": [],
    ]
    var messages: [PriceMessage] = []
    for k in 0..<72 {
        for az in azs { price[az] = max(0.01, (price[az]! * Double.random(in: 0.97...1.03, using: &rng) * 10_000).rounded() / 10_000) }
        let t = TimeInterval(k * 300)
        let present = azs.filter { !missing[$0]!.contains(k) }
        messages.append(.report(id: UUID(), prices: present.map { ($0, price[$0]!) }, offset: t + 30))
        if k % 3 == 0 {  // a second reading later in the bucket, one pool moved
            let az = present.randomElement(using: &rng)!
            messages.append(.report(id: UUID(), prices: [(az, price[az]! + 0.0007)], offset: t + 200))
        }
        if k % 4 == 1, let az = present.randomElement(using: &rng) {  // replica: agreeing or 2 % off
            let off = Bool.random(using: &rng) ? 1.0 : 1.02
            messages.append(.submit(id: UUID(), az: az, price: (price[az]! * off * 10_000).rounded() / 10_000, source: "replica-automatic", offset: t + 90))
        }
    }
    // a replica alone inside pool b's gap
    messages.append(.submit(id: UUID(), az: "b", price: 0.0461, source: "replica-manual", offset: TimeInterval(51 * 300 + 45)))
    return messages
}

extension IntegrationTests {
    @Suite struct SEFDeterminismTests {
        /// The clean data is a function of the submissions only: the data set sent in order to
        /// one SEF, and the same submissions shuffled, 40 % of them sent twice, by eight
        /// concurrent senders to three SEF workers, end in identical rows — within the gap
        /// scan's 24-hour window (8 hours old), and beyond it (40 hours old: no scan reconciles
        /// it, so each late point must recompute every fill that leans on it at once).
        @Test(arguments: [8.0, 40.0]) func shuffledDuplicatedAndParallelGivesTheSameCleanData(hoursAgo: Double) async throws {
            let store = try await TestStack.store()
            let base = SEFTests.base(hoursAgo: hoursAgo)
            let reference = determinismDataSet(seed: 42)
            let expectedRows = reference.reduce(0) { $0 + $1.rows }

            func settle(_ fleet: PriceFleet) async throws -> DerivedPrices {
                #expect(
                    try await TestStack.eventually(timeout: .seconds(60)) {
                        try await SEFQuery.rawCount(store, family: fleet.family) == expectedRows
                    })
                _ = try await sefCommand("gap-scan")
                return try await DerivedPrices.read(store, family: fleet.family)
            }

            try await ServiceProcess.withIngest { ingest in
                let inOrder = try await PriceFleet.make(ingest)
                var settled: DerivedPrices?
                try await withSEF(copies: 1) {
                    for m in reference { #expect(try await m.send(inOrder, base: base) == 202) }
                    settled = try await settle(inOrder)
                }
                let expected = try #require(settled)
                #expect(expected.clean.count == 4 * 72)  // every gap in the set is fillable
                #expect(expected.clean.contains { $0.contains("cross-pool") })
                #expect(expected.clean.contains { $0.contains("weighted-average") })
                #expect(expected.clean.contains { $0.contains(" linear ") })
                #expect(expected.clean.contains { $0.contains("averaged_dual_source") })
                #expect(expected.clean.contains { $0.contains("replica-manual") })

                let shuffledFleet = try await PriceFleet.make(ingest)
                var rng = SplitMix64(seed: 7)
                let renewed = reference.map { $0.renewed() }
                var sends = renewed + renewed.filter { _ in Double.random(in: 0..<1, using: &rng) < 0.4 }
                sends.shuffle(using: &rng)
                let lanes = 8
                try await withSEF(copies: 3) {
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for lane in 0..<lanes {
                            let mine = stride(from: lane, to: sends.count, by: lanes).map { sends[$0] }
                            group.addTask {
                                for m in mine {
                                    let status = try await m.send(shuffledFleet, base: base)
                                    #expect(status == 202)
                                }
                            }
                        }
                        try await group.waitForAll()
                    }
                    let actual = try await settle(shuffledFleet)
                    #expect(actual.clean == expected.clean)
                    #expect(actual.raw == expected.raw)
                    #expect(actual.interpolated == expected.interpolated)
                    #expect(actual.gaps == expected.gaps)
                }
            }
            await store.shutdown()
        }
    }
}

extension IntegrationTests.SEFDeterminismTests {
    /// The clean rows one undisturbed SEF makes of `messages` for a fleet of its own.
    func referenceClean(_ messages: [PriceMessage], base: Date, ingest: ServiceProcess, store: PostgresStore) async throws -> [String] {
        let reference = try await PriceFleet.make(ingest)
        let expectedRows = messages.reduce(0) { $0 + $1.rows }
        var expected: [String] = []
        try await withSEF {
            for m in messages { #expect(try await m.send(reference, base: base) == 202) }
            #expect(try await TestStack.eventually { try await SEFQuery.rawCount(store, family: reference.family) == expectedRows })
            _ = try await sefCommand("gap-scan")
            expected = try await SEFQuery.clean(store, family: reference.family).map(\.description)
        }
        return expected
    }

    /// PostgreSQL stopped in the middle of the stream and started again: the SEF holds its
    /// batch through the outage, nothing reaches the dead letters, nothing is lost.
    @Test func databaseRestartLosesNothing() async throws {
        let store = try await TestStack.store()
        let base = IntegrationTests.SEFTests.base(hoursAgo: 8)
        let messages = determinismDataSet(seed: 11).map { $0.renewed() }
        let expectedRows = messages.reduce(0) { $0 + $1.rows }
        try await ServiceProcess.withIngest { ingest in
            let expected = try await referenceClean(messages, base: base, ingest: ingest, store: store)
            let fleet = try await PriceFleet.make(ingest)
            let renewed = messages.map { $0.renewed() }
            let sef = try await ServiceProcess.start("spotguard-sef", portVariable: "SPOTGUARD_SEF_PORT")
            try await ServiceProcess.with(sef) { sef in
                let half = renewed.count / 2
                for m in renewed[..<half] { #expect(try await m.send(fleet, base: base) == 202) }
                try await TestStack.stack("db-stop")
                // ingest keeps accepting from its caches; the SEF cannot commit
                for m in renewed[half...] { #expect(try await m.send(fleet, base: base) == 202) }
                // the SEF holds its batch and waits for the database instead of handing it back
                #expect(
                    await TestStack.eventually(timeout: .seconds(15)) {
                        let metrics = try? await sef.send("GET", "/metrics")
                        return String(decoding: metrics?.body ?? Data(), as: UTF8.self).contains("spotguard_bus_outage_retries_total")
                    })
                try await TestStack.stack("db-start")
                #expect(
                    await TestStack.eventually(timeout: .seconds(60)) {
                        ((try? await SEFQuery.rawCount(store, family: fleet.family)) ?? 0) == expectedRows
                    })
                _ = try await sefCommand("gap-scan")
            }
            #expect(try await SEFQuery.clean(store, family: fleet.family).map(\.description) == expected)
        }
        await store.shutdown()
    }

    /// A worker killed (SIGKILL) in the middle of the work loses nothing and doubles nothing:
    /// its unacked batch comes back to the queue and the next worker applies it.
    @Test func killedWorkerLosesAndDoublesNothing() async throws {
        let store = try await TestStack.store()
        let base = IntegrationTests.SEFTests.base(hoursAgo: 8)
        let messages = determinismDataSet(seed: 9)
        let expectedRows = messages.reduce(0) { $0 + $1.rows }
        try await ServiceProcess.withIngest { ingest in
            let expected = try await referenceClean(messages, base: base, ingest: ingest, store: store)

            let fleet = try await PriceFleet.make(ingest)
            // a worker takes the messages as they come and is killed once it committed some
            let victim = try await ServiceProcess.start(
                "spotguard-sef", portVariable: "SPOTGUARD_SEF_PORT", environment: ["SPOTGUARD_SEF_BATCH": "1"])
            let sender = Task {
                for m in messages.map({ $0.renewed() }) {
                    let status = try await m.send(fleet, base: base)
                    #expect(status == 202)
                }
            }
            _ = await TestStack.eventually(timeout: .seconds(10)) {
                ((try? await SEFQuery.rawCount(store, family: fleet.family)) ?? 0) > 0
            }
            victim.process.signal(SIGKILL)
            _ = await victim.process.exitStatus()
            try await sender.value
            let partial = try await SEFQuery.rawCount(store, family: fleet.family)
            try await withSEF {
                #expect(try await TestStack.eventually { try await SEFQuery.rawCount(store, family: fleet.family) == expectedRows })
                _ = try await sefCommand("gap-scan")
            }
            #expect(partial > 0 && partial < expectedRows, "killed after \(partial) of \(expectedRows) points")
            #expect(try await SEFQuery.clean(store, family: fleet.family).map(\.description) == expected)
        }
        await store.shutdown()
    }
}
