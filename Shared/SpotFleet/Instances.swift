import Foundation
import SpotStore

/// The instances agents run on (`instances`). Rows are created and taken over by
/// `Switches.record`, `ClientDirectory.register` and `Heartbeats.apply`; an instance id belongs
/// to the client that first had it.
public enum Instances {
    /// The instance is gone: the client's row of it is closed (the first termination time kept).
    public static func markTerminated(_ instanceId: String, clientId: UUID, on conn: PGConnection) throws {
        _ = try conn.execute(
            """
            UPDATE instances SET is_active = false, terminated_at = coalesce(terminated_at, now())
             WHERE client_id = $2 AND id = $1
            """, [instanceId, clientId])
    }
}
