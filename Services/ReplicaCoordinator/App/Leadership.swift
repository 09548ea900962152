import Foundation
import Metrics
import SpotStore
import Synchronization

/// Which coordinator copy runs the reconciler: the one holding the lease in
/// `coordinator_leadership`, with a fencing epoch that grows at every takeover.
///
/// `renew` takes the lead when nobody holds an unexpired lease (epoch + 1) or extends this
/// copy's own. `fence` runs first in every reconciler transaction: it passes only while this
/// copy's epoch is the current one and its lease runs, and it share-locks the row until the
/// transaction ends, so no takeover commits in between. A copy paused mid-transaction past its
/// lease loses that transaction to the database's idle-in-transaction timeout (set to the lease
/// on the coordinator's connections) and, when it resumes, its next write is refused by the
/// epoch: `Stale` — counted in `spotguard_replicas_fenced_writes_total`.
public final class Leadership: Sendable {
    public struct Stale: Error, CustomStringConvertible {
        public var epoch: Int64?
        public var description: String { "this copy no longer leads (its epoch \(epoch.map(String.init) ?? "none") is not the current one)" }
    }

    public let holder: String
    public let lease: Duration
    private let store: PostgresStore
    private let epoch = Mutex<Int64?>(nil)

    public init(store: PostgresStore, lease: Duration, holder: String) {
        self.store = store
        self.lease = lease
        self.holder = holder
    }

    /// The epoch this copy leads with, nil while it does not lead.
    public var current: Int64? { epoch.withLock { $0 } }

    /// Takes or extends the lead; answers whether this copy leads now.
    public func renew() async -> Bool {
        let mine = current
        let seconds = Double(lease.components.seconds) + Double(lease.components.attoseconds) / 1e18
        let holder = self.holder
        let renewed: Int64?
        do {
            renewed = try await store.withConnection { conn in
                try conn.query(
                    """
                    INSERT INTO coordinator_leadership AS l (id, epoch, holder, expires_at) VALUES (1, 1, $1, now() + make_interval(secs => $2))
                    ON CONFLICT (id) DO UPDATE SET
                        epoch = CASE WHEN l.holder = $1 AND l.epoch = $3 THEN l.epoch ELSE l.epoch + 1 END,
                        acquired_at = CASE WHEN l.holder = $1 AND l.epoch = $3 THEN l.acquired_at ELSE now() END,
                        holder = $1, expires_at = EXCLUDED.expires_at
                     WHERE (l.holder = $1 AND l.epoch = $3 AND l.expires_at > now()) OR l.expires_at <= now()
                    RETURNING epoch
                    """, [holder, seconds, mine ?? 0]
                ).first?.decode(Int64.self, at: 0)
            }
        } catch {
            renewed = nil  // the database cannot say: this copy must not act as leader
        }
        epoch.withLock { $0 = renewed }
        Gauge(label: "spotguard_replicas_leader").record(renewed == nil ? 0 : 1)
        return renewed != nil
    }

    /// Gives the lead up at once (a graceful stop), so another copy need not wait for the lease.
    public func resign() async {
        guard let mine = current else { return }
        epoch.withLock { $0 = nil }
        let holder = self.holder
        _ = try? await store.withConnection { conn in
            try conn.execute("UPDATE coordinator_leadership SET expires_at = now() WHERE id = 1 AND epoch = $1 AND holder = $2", [mine, holder])
        }
    }

    /// The fencing check at the start of a reconciler transaction (see the type's comment).
    public func fence(on conn: PGConnection) throws {
        let mine = current
        let valid =
            try mine.map { epoch in
                try !conn.query(
                    "SELECT 1 FROM coordinator_leadership WHERE id = 1 AND epoch = $1 AND holder = $2 AND expires_at > now() FOR SHARE", [epoch, holder]
                ).isEmpty
            } ?? false
        guard valid else {
            epoch.withLock { $0 = nil }
            Counter(label: "spotguard_replicas_fenced_writes_total").increment()
            throw Stale(epoch: mine)
        }
    }
}
