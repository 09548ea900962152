import Foundation
import Logging
import NotifierCore
import ServiceLifecycle
import SpotFleet
import SpotModels
import SpotRuntime
import SpotStore
import Synchronization

/// Sends due webhook deliveries: claims them with a lease (`FOR UPDATE SKIP LOCKED`, so copies
/// share the work and a dead copy's claims come back after the lease), POSTs each signed body
/// (`WebhookSender`: never to an internal address, one deadline per attempt), and records the
/// answer: 2xx delivered; anything else retried after the backoff, and dead-lettered (status
/// `dead`, with the last answer and a system event) after the last try or at once when the
/// URL is not allowed.
///
/// Every delivery runs on its own, at most `concurrency` at once and at most
/// `clientConcurrency` of one client, so a slow receiver holds only its own client's places
/// and the others' deliveries go on.
public final class WebhookDelivery: Service, Sendable {
    struct Due: Sendable {
        var id: UUID
        var clientId: UUID
        var attempt: Int
        var url: String
        var secret: String
        var format: WebhookPayload.Format
        var notification: WebhookPayload.Notification
    }

    let store: PostgresStore
    let configuration: NotifierConfiguration
    let logger: Logger
    let sender: WebhookSender
    let worker: PeriodicWorker
    /// Deliveries at work in this process, per client.
    private let inFlight = Mutex<[UUID: Int]>([:])

    public init(store: PostgresStore, configuration: NotifierConfiguration, logger: Logger) {
        self.store = store
        self.configuration = configuration
        self.logger = logger
        sender = WebhookSender(allowed: configuration.allowedNetworks, deadline: configuration.timeout)
        worker = PeriodicWorker("webhook-delivery", every: configuration.poll)
    }

    /// Look for due deliveries now (a notification with subscribers was just written).
    public func wake() { worker.wake() }

    public func run() async throws {
        await withDiscardingTaskGroup { group in
            await worker.run {
                do {
                    for due in try await claim() {
                        group.addTask {
                            await self.deliver(due)
                            self.inFlight.withLock { $0[due.clientId, default: 1] -= 1 }
                            self.worker.wake()  // a place is free
                        }
                    }
                } catch {
                    logger.warning("claiming webhook deliveries failed", metadata: ["error": "\(error)"])
                }
            }
            group.cancelAll()
        }
    }

    /// Claims as many due deliveries as there are free places, none of a client whose places
    /// are taken, and counts them in. Deliveries of a removed subscription are not sent: they
    /// end here, dead, with the reason (the console only marks the subscription inactive).
    func claim() async throws -> [Due] {
        let held = inFlight.withLock { counts -> [UUID: Int] in
            counts = counts.filter { $0.value > 0 }
            return counts
        }
        let free = configuration.concurrency - held.values.reduce(0, +)
        guard free > 0 else { return [] }
        let (lease, perClient) = (Double(configuration.lease.components.seconds), configuration.clientConcurrency)
        let batch = try await store.transaction { conn -> [Due] in
            _ = try conn.execute(
                """
                UPDATE webhook_deliveries d SET status = 'dead', last_error = 'subscription removed'
                  FROM webhook_subscriptions s
                 WHERE s.id = d.subscription_id AND NOT s.is_active AND d.status = 'pending'
                """)
            return try conn.query(
                """
                WITH held AS (SELECT * FROM unnest($3::uuid[], $4::int[]) AS h(client_id, n)),
                candidates AS (
                    SELECT id FROM (
                        SELECT d.id, d.next_attempt_at,
                               row_number() OVER (PARTITION BY s.client_id ORDER BY d.next_attempt_at) + coalesce(h.n, 0) AS place
                          FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id
                          LEFT JOIN held h ON h.client_id = s.client_id
                         WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND s.is_active) ranked
                     WHERE place <= $5 ORDER BY next_attempt_at LIMIT 1000),
                due AS (
                    SELECT id FROM webhook_deliveries WHERE id IN (SELECT id FROM candidates) AND status = 'pending'
                     ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
                UPDATE webhook_deliveries d SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
                  FROM due, webhook_subscriptions s, notifications n
                 WHERE d.id = due.id AND s.id = d.subscription_id AND n.id = d.notification_id
                RETURNING d.id, d.attempts, s.url, s.secret, s.payload_format, n.id, n.client_id, n.agent_id, n.event_type, n.kind,
                          n.severity, n.title, n.message, n.occurrences, n.details::text, n.created_at
                """, [free, lease, PGArray(Array(held.keys)), PGArray(Array(held.values)), perClient]
            ).map { r in
                let details =
                    (JSONValue.parse(try r.decode(String.self, at: 14)).flatMap { v -> [String: String]? in
                        guard case .object(let o) = v else { return nil }
                        return o.compactMapValues(\.string)
                    }) ?? [:]
                let client = try r.decode(UUID.self, at: 6)
                return Due(
                    id: try r.decode(UUID.self, at: 0), clientId: client, attempt: try r.decode(Int.self, at: 1), url: try r.decode(String.self, at: 2),
                    secret: try r.decode(String.self, at: 3), format: WebhookPayload.Format(rawValue: try r.decode(String.self, at: 4)) ?? .json,
                    notification: .init(
                        id: try r.decode(UUID.self, at: 5), clientId: client, agentId: try r.decodeIfPresent(UUID.self, at: 7),
                        eventType: try r.decodeIfPresent(String.self, at: 8) ?? "notification", kind: try r.decode(String.self, at: 9),
                        severity: try r.decode(String.self, at: 10), title: try r.decode(String.self, at: 11), message: try r.decode(String.self, at: 12),
                        occurrences: try r.decode(Int.self, at: 13), details: details, createdAt: try r.decode(Date.self, at: 15)))
            }
        }
        inFlight.withLock { counts in for due in batch { counts[due.clientId, default: 0] += 1 } }
        return batch
    }

    /// One attempt and its record.
    func deliver(_ due: Due) async {
        let outcome: WebhookSender.Outcome
        do {
            let body = try WebhookPayload.body(due.notification, deliveryId: due.id, format: due.format)
            outcome = await sender.post(
                url: due.url,
                headers: [
                    ("Content-Type", "application/json"), ("User-Agent", "SpotGuard-Notifier/1"),
                    ("X-SpotGuard-Delivery", due.id.uuidString.lowercased()), ("X-SpotGuard-Event", due.notification.eventType),
                    (WebhookSignature.header, WebhookSignature.sign(secret: due.secret, timestamp: Int(Date().timeIntervalSince1970), body: body)),
                ],
                body: Array(body))
        } catch {
            outcome = .refused("the notification could not be encoded")
        }
        do {
            switch outcome {
            case .answered(let code) where (200..<300).contains(code): try await record(due, statusCode: code, problem: nil)
            case .answered(let code): try await record(due, statusCode: code, problem: "HTTP \(code)")
            case .failed(let problem): try await record(due, statusCode: nil, problem: problem)
            case .refused(let problem): try await record(due, statusCode: nil, problem: problem, final: true)
            }
        } catch {
            logger.warning("recording a webhook attempt failed", metadata: ["delivery": "\(due.id)", "error": "\(error)"])
        }
    }

    func record(_ due: Due, statusCode: Int?, problem: String?, final: Bool = false) async throws {
        let retry = problem == nil || final ? nil : configuration.backoff.delay(afterAttempt: due.attempt)
        try await store.transaction { conn in
            // the notification's status is computed from all its deliveries: deliveries of one
            // notification recorded at once take turns, so the last one sees the others
            _ = try conn.query("SELECT 1 FROM notifications WHERE id = $1 FOR UPDATE", [due.notification.id])
            if problem == nil {
                _ = try conn.execute(
                    """
                    UPDATE webhook_deliveries SET status = 'delivered', delivered_at = now(), last_status_code = $2, last_error = NULL
                     WHERE id = $1 AND status = 'pending'
                    """, [due.id, statusCode])
            } else if let retry {
                _ = try conn.execute(
                    """
                    UPDATE webhook_deliveries SET next_attempt_at = now() + make_interval(secs => $2), last_status_code = $3, last_error = $4
                     WHERE id = $1 AND status = 'pending'
                    """, [due.id, Double(retry.components.attoseconds) / 1e18 + Double(retry.components.seconds), statusCode, problem])
            } else {
                _ = try conn.execute(
                    "UPDATE webhook_deliveries SET status = 'dead', last_status_code = $2, last_error = $3 WHERE id = $1 AND status = 'pending'",
                    [due.id, statusCode, problem])
                // never the URL: Slack-style URLs carry a secret
                try SystemEvents.record(
                    .init(
                        "webhook.dead_lettered", severity: "warning", component: "notifier", clientId: due.notification.clientId,
                        message: "webhook delivery dead after \(due.attempt) attempts: \(problem ?? "")",
                        details: .object(["delivery_id": .string(due.id.uuidString.lowercased())])),
                    on: conn)
            }
            // the notification is delivered once every subscriber has it, failed once one gave up
            _ = try conn.execute(
                """
                UPDATE notifications n SET delivery_attempts = delivery_attempts + 1,
                       delivery_status = CASE WHEN bool_or_dead THEN 'failed' WHEN all_delivered THEN 'delivered' ELSE 'pending' END,
                       delivered_at = CASE WHEN all_delivered THEN coalesce(n.delivered_at, now()) END
                  FROM (SELECT bool_or(status = 'dead') AS bool_or_dead, bool_and(status = 'delivered') AS all_delivered
                          FROM webhook_deliveries WHERE notification_id = $1) d
                 WHERE n.id = $1
                """, [due.notification.id])
        }
        if let problem {
            logger.notice(
                "webhook attempt failed",
                metadata: ["delivery": "\(due.id)", "attempt": "\(due.attempt)", "problem": "\(problem)", "retry": "\(retry.map { "\($0)" } ?? "dead")"])
        }
    }
}
