import Foundation
import ReplicaCore
import SpotModels
import Testing

/// The termination-notice decision without a database: which replica is promoted, when a
/// notice means a lost replica, and when an emergency replica is launched.
@Suite struct FailoverPlanTests {
    static let primary = "i-0aaaaaaaaaaaaaaa1"
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func replica(
        _ type: ReplicaType, _ status: ReplicaStatus, instance: String? = "i-0bbbbbbbbbbbbbbb2", readyAgo: TimeInterval? = 60
    ) -> FailoverPlan.Replica {
        .init(id: UUID(), type: type, status: status, instanceId: instance, readyAt: readyAgo.map { now.addingTimeInterval(-$0) })
    }

    static func notice(
        instance: String = primary, recorded: String? = nil, recordedReplica: UUID? = nil, named: UUID? = nil
    ) -> FailoverPlan.Notice {
        .init(instance: instance, primary: primary, recordedAction: recorded, recordedReplica: recordedReplica, named: named)
    }

    @Test func aReadyReplicaIsPromoted() {
        let ready = Self.replica(.automaticRebalance, .ready)
        #expect(FailoverPlan.decide(Self.notice(), active: [Self.replica(.manual, .syncing), ready]) == .promote(ready.id))
    }

    @Test func aManualReplicaGoesFirstThenTheFreshest() {
        let oldAuto = Self.replica(.automaticRebalance, .ready, readyAgo: 600)
        let freshAuto = Self.replica(.automaticRebalance, .ready, readyAgo: 10)
        let oldManual = Self.replica(.manual, .ready, readyAgo: 3600)
        #expect(FailoverPlan.decide(Self.notice(), active: [oldAuto, freshAuto]) == .promote(freshAuto.id))
        #expect(FailoverPlan.decide(Self.notice(), active: [oldAuto, freshAuto, oldManual]) == .promote(oldManual.id))
    }

    @Test func aReadyReplicaWithoutAnInstanceIsNotACandidate() {
        let noInstance = Self.replica(.manual, .ready, instance: nil)
        #expect(FailoverPlan.decide(Self.notice(), active: [noInstance]) == .noReadyReplica(emergency: nil, firstNotice: true))
    }

    @Test func theNamedReplicaIsPromotedOnlyWhenReady() {
        let ready = Self.replica(.automaticRebalance, .ready)
        let syncing = Self.replica(.manual, .syncing)
        let other = UUID()
        #expect(FailoverPlan.decide(Self.notice(named: ready.id), active: [syncing, ready]) == .promote(ready.id))
        #expect(
            FailoverPlan.decide(Self.notice(named: syncing.id), active: [syncing, ready]) == .noReadyReplica(emergency: nil, firstNotice: true),
            "a named replica that is not ready is not swapped for another")
        #expect(FailoverPlan.decide(Self.notice(named: other), active: [syncing, ready]) == .namedReplicaNotActive(other))
    }

    @Test func aRepeatAfterAPromotionChangesNothing() {
        #expect(FailoverPlan.decide(Self.notice(recorded: "replica_promoted"), active: [Self.replica(.manual, .ready)]) == .alreadyPromoted)
    }

    @Test func aNoticeForAReplicasInstanceIsALostReplica() {
        let replica = Self.replica(.manual, .ready, instance: "i-0ccccccccccccccc3")
        #expect(FailoverPlan.decide(Self.notice(instance: "i-0ccccccccccccccc3"), active: [replica]) == .replicaLost(replica.id))
        #expect(FailoverPlan.decide(Self.notice(instance: "i-0ddddddddddddddd4"), active: [replica]) == .notPrimary)
    }

    @Test func withoutAReadyReplicaTheFirstNoticeLaunchesOneAndARepeatDoesNot() {
        #expect(FailoverPlan.decide(Self.notice(), active: []) == .noReadyReplica(emergency: nil, firstNotice: true))
        #expect(FailoverPlan.decide(Self.notice(recorded: "recorded"), active: []) == .noReadyReplica(emergency: nil, firstNotice: true))
        let launched = UUID()
        #expect(
            FailoverPlan.decide(Self.notice(recorded: "emergency_snapshot_required", recordedReplica: launched), active: [])
                == .noReadyReplica(emergency: launched, firstNotice: false))
        let emergency = Self.replica(.automaticTermination, .launching, instance: nil, readyAgo: nil)
        #expect(
            FailoverPlan.decide(Self.notice(recorded: "emergency_snapshot_required"), active: [emergency])
                == .noReadyReplica(emergency: emergency.id, firstNotice: false))
    }
}
