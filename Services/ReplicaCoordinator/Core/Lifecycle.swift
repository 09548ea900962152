import SpotModels

/// Why the coordinator refuses a request: a stable code, the HTTP status it answers with and
/// a sentence for people.
public struct ReplicaRefusal: Error, Equatable, Sendable, CustomStringConvertible {
    public var status: Int
    public var code: String
    public var message: String
    public var field: String?

    public init(_ status: Int, _ code: String, _ message: String, field: String? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.field = field
    }

    public var description: String { "\(status) \(code): \(message)" }

    public static func illegal(_ from: ReplicaStatus, _ to: ReplicaStatus) -> ReplicaRefusal {
        ReplicaRefusal(409, "illegal_transition", "a replica cannot go from \(from.rawValue) to \(to.rawValue)")
    }
}

/// The replica state machine. Legal moves:
///
///     launching → syncing | failed | terminated
///     syncing   → ready | failed | terminated
///     ready     → syncing (fell out of sync) | promoted | failed | terminated
///     promoted, terminated, failed: final
///
/// Moving to the state a replica is already in changes nothing (repeated reports and retried
/// requests are answered as the first was); every other move is refused with 409.
public struct ReplicaLifecycle: Sendable, Equatable {
    public private(set) var status: ReplicaStatus
    public private(set) var syncStatus: SyncStatus
    public private(set) var instanceId: String?

    public init(status: ReplicaStatus = .launching, syncStatus: SyncStatus = .initializing, instanceId: String? = nil) {
        self.status = status
        self.syncStatus = syncStatus
        self.instanceId = instanceId
    }

    public static func allows(_ from: ReplicaStatus, _ to: ReplicaStatus) -> Bool {
        switch (from, to) {
        case (.launching, .syncing), (.syncing, .ready), (.ready, .syncing), (.ready, .promoted): true
        case (.launching, .failed), (.syncing, .failed), (.ready, .failed): true
        case (.launching, .terminated), (.syncing, .terminated), (.ready, .terminated): true
        default: false
        }
    }

    /// Moves to `next`; returns false when the replica was already there.
    @discardableResult
    public mutating func move(to next: ReplicaStatus) throws(ReplicaRefusal) -> Bool {
        if next == status { return false }
        guard Self.allows(status, next) else { throw .illegal(status, next) }
        if next == .promoted, instanceId == nil {
            throw ReplicaRefusal(409, "replica_instance_unknown", "the replica has no instance yet")
        }
        status = next
        return true
    }

    /// The agent launched the replica's instance. An instance id, once known, never changes.
    public mutating func launched(instanceId id: String) throws(ReplicaRefusal) {
        if let instanceId, instanceId != id {
            throw ReplicaRefusal(409, "instance_mismatch", "the replica already runs on \(instanceId)", field: "instance_id")
        }
        guard status.isActive else { throw ReplicaRefusal(409, "replica_inactive", "the replica is \(status.rawValue)") }
        instanceId = id
    }

    /// A sync report from the replica's agent. Without an explicit status, the first report
    /// moves a launching replica to syncing and falling out of sync moves a ready one back; a
    /// replica becomes ready only when asked and only while synced on a known instance.
    public mutating func report(sync: SyncStatus, status requested: ReplicaStatus?) throws(ReplicaRefusal) {
        guard status.isActive else {
            throw ReplicaRefusal(409, "replica_inactive", "the replica is \(status.rawValue)")
        }
        if let requested, requested != .syncing, requested != .ready {
            throw ReplicaRefusal(400, "invalid_status", "an agent may report status syncing or ready", field: "status")
        }
        var target = requested ?? status
        if requested == nil {
            if status == .launching { target = .syncing }
            if status == .ready, sync == .outOfSync || sync == .syncing { target = .syncing }
        }
        if target == .ready {
            guard sync == .synced else {
                throw ReplicaRefusal(409, "replica_not_synced", "a replica is ready only when its sync status is synced")
            }
            guard instanceId != nil else {
                throw ReplicaRefusal(409, "replica_instance_unknown", "report the replica's instance_id before it is ready")
            }
        }
        if status == .launching, target == .ready { throw .illegal(.launching, .ready) }
        try move(to: target)
        syncStatus = sync
    }

    /// The replica holds a complete but older version of the state (`StateFreshness`): its sync
    /// status says so while its status (ready or syncing) stays.
    public mutating func heldOlderState() {
        guard status.isActive, syncStatus == .synced else { return }
        syncStatus = .syncing
    }
}
