import Foundation
import SpotModels
import SpotStore

/// The operator's log of what happened to the fleet (`system_events`): one row per event, at
/// most one per `dedupKey`.
public enum SystemEvents {
    public struct Event: Sendable {
        public var type: String
        public var severity: String
        /// The service that saw it (`spotguard-sef`, `spotguard-replicas`, `notifier`, …).
        public var component: String
        public var clientId: UUID?
        public var agentId: UUID?
        public var message: String
        public var details: JSONValue?
        /// Events with the same key are one: the second is not recorded.
        public var dedupKey: String?

        public init(
            _ type: String, severity: String = "info", component: String, clientId: UUID? = nil, agentId: UUID? = nil, message: String,
            details: JSONValue? = nil, dedupKey: String? = nil
        ) {
            self.type = type
            self.severity = severity
            self.component = component
            self.clientId = clientId
            self.agentId = agentId
            self.message = message
            self.details = details
            self.dedupKey = dedupKey
        }
    }

    /// Records the event in the caller's transaction; false when an event with its key was
    /// recorded before.
    @discardableResult
    public static func record(_ e: Event, on conn: PGConnection) throws -> Bool {
        !(try conn.query(
            """
            INSERT INTO system_events (event_type, severity, component, client_id, agent_id, message, details, dedup_key)
            VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)
            ON CONFLICT (dedup_key) DO NOTHING RETURNING id
            """, [e.type, e.severity, e.component, e.clientId, e.agentId, e.message, e.details?.text, e.dedupKey]
        ).isEmpty)
    }

    /// Whether an event with this key was recorded.
    public static func exists(dedupKey: String, on conn: PGConnection) throws -> Bool {
        try conn.query("SELECT 1 FROM system_events WHERE dedup_key = $1", [dedupKey]).first != nil
    }

    /// Deletes the events recorded before the cutoff (the retention job); returns how many.
    public static func prune(before cutoff: Date, on conn: PGConnection) throws -> Int {
        try conn.execute("DELETE FROM system_events WHERE created_at < $1", [cutoff])
    }
}
