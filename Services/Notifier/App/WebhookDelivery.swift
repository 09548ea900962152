import Foundation
import Logging
import NotifierCore
import ServiceLifecycle
import SpotModels
import SpotStore

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Sends due webhook deliveries: claims them with a lease (`FOR UPDATE SKIP LOCKED`, so copies
/// share the work and a dead copy's claims come back after the lease), POSTs each signed
/// body, and records the answer: 2xx delivered; anything else retried after the backoff, and
/// dead-lettered (status `dead`, with the last answer and a system event) after the last try.
public final class WebhookDelivery: Service, Sendable {
    struct Due: Sendable {
        var id: UUID
        var attempt: Int
        var url: String
        var secret: String
        var format: WebhookPayload.Format
        var notification: WebhookPayload.Notification
    }

    let store: PostgresStore
    let configuration: NotifierConfiguration
    let logger: Logger
    let session: URLSession
    private let wakeUps: AsyncStream<Void>
    private let wakeUp: AsyncStream<Void>.Continuation

    public init(store: PostgresStore, configuration: NotifierConfiguration, logger: Logger) {
        self.store = store
        self.configuration = configuration
        self.logger = logger
        let c = URLSessionConfiguration.ephemeral
        c.timeoutIntervalForRequest = Double(configuration.timeout.components.seconds) + Double(configuration.timeout.components.attoseconds) / 1e18
        c.httpCookieStorage = nil
        c.urlCache = nil
        session = URLSession(configuration: c)
        (wakeUps, wakeUp) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Look for due deliveries now (a notification with subscribers was just written).
    public func wake() { wakeUp.yield() }

    public func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: self.configuration.poll)
                    self.wakeUp.yield()
                }
            }
            for await _ in wakeUps.cancelOnGracefulShutdown() {
                do {
                    while try await sendDue() > 0 {}
                } catch {
                    logger.warning("webhook delivery pass failed", metadata: ["error": "\(error)"])
                }
            }
            group.cancelAll()
        }
    }

    /// Claims and sends one batch; returns how many it sent.
    func sendDue(limit: Int = 16) async throws -> Int {
        let lease = Double(configuration.lease.components.seconds)
        let batch = try await store.transaction { conn -> [Due] in
            try conn.query(
                """
                UPDATE webhook_deliveries d SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
                  FROM (SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= now()
                         ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) due, webhook_subscriptions s, notifications n
                 WHERE d.id = due.id AND s.id = d.subscription_id AND n.id = d.notification_id
                RETURNING d.id, d.attempts, s.url, s.secret, s.payload_format, n.id, n.client_id, n.agent_id, n.event_type, n.kind,
                          n.severity, n.title, n.message, n.occurrences, n.details::text, n.created_at
                """, [limit, lease]
            ).map { r in
                let details = (JSONValue.parse(try r.decode(String.self, at: 14)).flatMap { v -> [String: String]? in
                    guard case .object(let o) = v else { return nil }
                    return o.compactMapValues(\.string)
                }) ?? [:]
                return Due(
                    id: try r.decode(UUID.self, at: 0), attempt: try r.decode(Int.self, at: 1), url: try r.decode(String.self, at: 2),
                    secret: try r.decode(String.self, at: 3), format: WebhookPayload.Format(rawValue: try r.decode(String.self, at: 4)) ?? .json,
                    notification: .init(
                        id: try r.decode(UUID.self, at: 5), clientId: try r.decode(UUID.self, at: 6), agentId: try r.decodeIfPresent(UUID.self, at: 7),
                        eventType: try r.decodeIfPresent(String.self, at: 8) ?? "notification", kind: try r.decode(String.self, at: 9),
                        severity: try r.decode(String.self, at: 10), title: try r.decode(String.self, at: 11), message: try r.decode(String.self, at: 12),
                        occurrences: try r.decode(Int.self, at: 13), details: details, createdAt: try r.decode(Date.self, at: 15)))
            }
        }
        await withTaskGroup(of: Void.self) { group in
            for due in batch {
                group.addTask {
                    let (code, problem) = await self.post(due)
                    do {
                        try await self.record(due, statusCode: code, problem: problem)
                    } catch {
                        self.logger.warning("recording a webhook attempt failed", metadata: ["delivery": "\(due.id)", "error": "\(error)"])
                    }
                }
            }
        }
        return batch.count
    }

    /// One attempt: the HTTP status, and what went wrong when it was not 2xx.
    func post(_ due: Due) async -> (Int?, String?) {
        do {
            guard let url = URL(string: due.url) else { return (nil, "the URL does not parse") }
            let body = try WebhookPayload.body(due.notification, deliveryId: due.id, format: due.format)
            var request = URLRequest(url: url)
            request.httpMethod = "POST"
            request.httpBody = body
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.setValue("SpotGuard-Notifier/1", forHTTPHeaderField: "User-Agent")
            request.setValue(due.id.uuidString.lowercased(), forHTTPHeaderField: "X-SpotGuard-Delivery")
            request.setValue(due.notification.eventType, forHTTPHeaderField: "X-SpotGuard-Event")
            request.setValue(
                WebhookSignature.sign(secret: due.secret, timestamp: Int(Date().timeIntervalSince1970), body: body),
                forHTTPHeaderField: WebhookSignature.header)
            let (_, response) = try await session.data(for: request)
            let code = (response as? HTTPURLResponse)?.statusCode
            return (200..<300).contains(code ?? 0) ? (code, nil) : (code, "HTTP \(code.map(String.init) ?? "?")")
        } catch {
            return (nil, String("\(error)".prefix(500)))
        }
    }

    func record(_ due: Due, statusCode: Int?, problem: String?) async throws {
        let retry = problem == nil ? nil : configuration.backoff.delay(afterAttempt: due.attempt)
        try await store.transaction { conn in
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
                _ = try conn.execute(
                    """
                    -- never the URL: Slack-style URLs carry a secret
                    INSERT INTO system_events (event_type, severity, component, client_id, message, details)
                    VALUES ('webhook.dead_lettered', 'warning', 'notifier', $1, $2, $3::jsonb)
                    """,
                    [
                        due.notification.clientId, "webhook delivery dead after \(due.attempt) attempts: \(problem ?? "")",
                        JSONValue.object(["delivery_id": .string(due.id.uuidString.lowercased())]).text,
                    ])
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
