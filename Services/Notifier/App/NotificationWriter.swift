import Foundation
import NotifierCore
import SpotModels
import SpotStore

/// Writes one event's notification and its webhook deliveries in one transaction, keyed by the
/// bus message id so a redelivered message changes nothing. The same alert again within the
/// collapse window counts up the notification it repeats and sends nothing new.
public struct NotificationWriter: Sendable {
    public enum Outcome: Sendable, Equatable {
        case written(UUID, deliveries: Int)
        case collapsed(into: UUID)
        case alreadyHandled
    }

    let store: PostgresStore
    let collapseWindow: Duration

    public init(store: PostgresStore, collapseWindow: Duration) {
        self.store = store
        self.collapseWindow = collapseWindow
    }

    public func write(_ draft: NotificationDraft, messageId: UUID) async throws -> Outcome {
        let window = Double(collapseWindow.components.seconds)
        return try await store.transaction { conn -> Outcome in
            guard try conn.execute("INSERT INTO notifier_messages (message_id) VALUES ($1) ON CONFLICT DO NOTHING", [messageId]) == 1 else {
                return .alreadyHandled
            }
            let details = JSONValue.object(draft.details.mapValues { .string($0) }).text
            if let key = draft.collapseKey {
                // copies of the notifier serialise on the key, so a burst collapses into one row
                _ = try conn.query("SELECT pg_advisory_xact_lock(hashtext($1))", [key])
                if let row = try conn.query(
                    """
                    UPDATE notifications SET occurrences = occurrences + 1, last_occurred_at = now(), message = $2, details = $3::jsonb
                     WHERE id = (SELECT id FROM notifications WHERE collapse_key = $1 AND last_occurred_at > now() - make_interval(secs => $4)
                                  ORDER BY last_occurred_at DESC LIMIT 1)
                    RETURNING id
                    """, [key, draft.message, details, window]
                ).first {
                    let id = try row.decode(UUID.self, at: 0)
                    _ = try conn.execute("UPDATE notifier_messages SET notification_id = $2 WHERE message_id = $1", [messageId, id])
                    return .collapsed(into: id)
                }
            }
            let subscriptions =
                try draft.clientId.map { client in
                    try conn.query("SELECT id, event_filter::text FROM webhook_subscriptions WHERE client_id = $1 AND is_active", [client])
                        .filter { row in
                            let patterns = (JSONValue.parse(try row.decode(String.self, at: 1)).flatMap(\.array) ?? []).compactMap(\.string)
                            return EventFilter.matches(patterns, draft.eventType)
                        }
                        .map { try $0.decode(UUID.self, at: 0) }
                } ?? []
            let id = try conn.query(
                """
                INSERT INTO notifications (client_id, agent_id, severity, kind, title, message, dedup_key, event_type, collapse_key,
                                           details, delivery_status)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11) RETURNING id
                """,
                [
                    draft.clientId, draft.agentId, draft.severity.rawValue, draft.kind, draft.title, draft.message,
                    "message:\(messageId.uuidString.lowercased())", draft.eventType, draft.collapseKey, details,
                    subscriptions.isEmpty ? "not_applicable" : "pending",
                ])[0].decode(UUID.self, at: 0)
            _ = try conn.execute("UPDATE notifier_messages SET notification_id = $2 WHERE message_id = $1", [messageId, id])
            for subscription in subscriptions {
                _ = try conn.execute("INSERT INTO webhook_deliveries (subscription_id, notification_id) VALUES ($1, $2)", [subscription, id])
            }
            return .written(id, deliveries: subscriptions.count)
        }
    }
}
