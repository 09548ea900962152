import Foundation
import SpotModels

/// How current a replica's copy of the workload's state is, judged on each sync report.
///
/// A replica is `synced` only while it holds the newest version the primary shipped. One that
/// holds an older complete version is still a good failover target (it fetches the newest when
/// promoted) as long as what it lacks is younger than `tolerance`: it stays ready with sync
/// status `syncing` and its lag recorded. Beyond the tolerance, or holding no version while
/// there is one, it is out of sync and not ready.
public struct StateFreshness: Sendable, Equatable {
    /// The sync status and requested status to apply to the lifecycle.
    public var sync: SyncStatus
    public var requested: ReplicaStatus?
    /// The replica holds an older version than the newest (its sync status becomes `syncing`).
    public var behind: Bool
    /// Seconds since the oldest version the replica lacks was shipped; 0 when current.
    public var lagSeconds: Double

    public init(sync: SyncStatus, requested: ReplicaStatus?, behind: Bool, lagSeconds: Double) {
        self.sync = sync
        self.requested = requested
        self.behind = behind
        self.lagSeconds = lagSeconds
    }

    public static func judge(
        reported: SyncStatus, requested: ReplicaStatus?, held: Int64?, latest: Int64?, oldestMissingAt: Date?, now: Date, tolerance: Double
    ) -> StateFreshness {
        guard reported == .synced, let latest, (held ?? 0) < latest else {
            return StateFreshness(sync: reported, requested: requested, behind: false, lagSeconds: 0)
        }
        let lag = max(0, oldestMissingAt.map { now.timeIntervalSince($0) } ?? 0)
        if held != nil, lag <= tolerance {
            return StateFreshness(sync: .synced, requested: requested, behind: true, lagSeconds: lag)
        }
        return StateFreshness(sync: .outOfSync, requested: nil, behind: true, lagSeconds: lag)
    }
}
