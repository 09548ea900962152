import Foundation
import ReplicaCore
import SpotModels
import Testing

/// Which sync status a replica's report earns, given the state versions it holds and the
/// newest one shipped.
@Suite struct StateFreshnessTests {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func judge(held: Int64?, latest: Int64?, missingFor seconds: Double?, requested: ReplicaStatus? = .ready) -> StateFreshness {
        StateFreshness.judge(
            reported: .synced, requested: requested, held: held, latest: latest, oldestMissingAt: seconds.map { now.addingTimeInterval(-$0) }, now: now,
            tolerance: 300)
    }

    @Test func holdingTheNewestVersionOrNoStateAtAllIsSynced() {
        #expect(Self.judge(held: 4, latest: 4, missingFor: nil) == StateFreshness(sync: .synced, requested: .ready, behind: false, lagSeconds: 0))
        #expect(Self.judge(held: nil, latest: nil, missingFor: nil) == StateFreshness(sync: .synced, requested: .ready, behind: false, lagSeconds: 0))
    }

    @Test func anOlderVersionWithinTheToleranceStaysUsableButIsNotSynced() {
        let judged = Self.judge(held: 3, latest: 4, missingFor: 20)
        #expect(judged == StateFreshness(sync: .synced, requested: .ready, behind: true, lagSeconds: 20))
        var lifecycle = ReplicaLifecycle(status: .ready, syncStatus: .synced, instanceId: "i-0bbbbbbbbbbbbbbb2")
        try? lifecycle.report(sync: judged.sync, status: judged.requested)
        lifecycle.heldOlderState()
        #expect(lifecycle.status == .ready && lifecycle.syncStatus == .syncing)
    }

    @Test func tooOldOrNothingHeldIsOutOfSync() {
        #expect(Self.judge(held: 3, latest: 9, missingFor: 301) == StateFreshness(sync: .outOfSync, requested: nil, behind: true, lagSeconds: 301))
        #expect(Self.judge(held: nil, latest: 1, missingFor: 5) == StateFreshness(sync: .outOfSync, requested: nil, behind: true, lagSeconds: 5))
        var lifecycle = ReplicaLifecycle(status: .ready, syncStatus: .synced, instanceId: "i-0bbbbbbbbbbbbbbb2")
        let judged = Self.judge(held: nil, latest: 1, missingFor: 5, requested: nil)
        try? lifecycle.report(sync: judged.sync, status: judged.requested)
        #expect(lifecycle.status == .syncing, "a ready replica holding no state falls back")
    }

    @Test func whatTheAgentReportsOtherwiseIsKept() {
        let judged = StateFreshness.judge(reported: .syncing, requested: nil, held: 1, latest: 2, oldestMissingAt: Self.now, now: Self.now, tolerance: 300)
        #expect(judged == StateFreshness(sync: .syncing, requested: nil, behind: false, lagSeconds: 0))
    }
}
