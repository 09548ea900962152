import Foundation
import Logging
import Metrics
import ServiceLifecycle
import SpotBus
import SpotModels
import SpotStore

/// The transactional outbox (DESIGN.md principle 2): a service writes the events it must
/// publish in the same transaction as the state they describe; `OutboxRelay` publishes them
/// with confirms afterwards. A crash between commit and publish delays an event, never
/// loses it; a crash between publish and delete sends it twice (consumers are idempotent).
public enum Outbox {
    /// Adds the envelope to the outbox inside the caller's transaction.
    public static func append<P: Encodable>(_ envelope: Envelope<P>, on conn: PGConnection) throws {
        let body = String(decoding: try WireJSON.encoder().encode(envelope), as: UTF8.self)
        _ = try conn.execute(
            "INSERT INTO outbox (message_id, routing_key, body) VALUES ($1, $2, $3) ON CONFLICT (message_id) DO NOTHING",
            [envelope.id, envelope.type, body])
    }
}

/// Publishes outbox rows. Any number of relays may run: each claims rows under a lease
/// (`FOR UPDATE SKIP LOCKED`), publishes them, and deletes what the broker confirmed; rows of
/// a relay that died are claimed again when the lease ends.
public final class OutboxRelay: Service, Sendable {
    let store: PostgresStore
    let publisher: BusPublisher
    let logger: Logger
    let batchSize: Int
    let lease: Duration
    let name: String
    /// A look at least every poll interval even without notifications: leases expire, other copies commit.
    let worker: PeriodicWorker

    public init(
        store: PostgresStore, publisher: BusPublisher, logger: Logger, name: String, batchSize: Int = 200,
        pollInterval: Duration = .seconds(1), lease: Duration = .seconds(30)
    ) {
        self.store = store
        self.publisher = publisher
        self.logger = logger
        self.name = name
        self.batchSize = batchSize
        self.lease = lease
        worker = PeriodicWorker("outbox-relay", every: pollInterval)
    }

    /// Asks the relay to look now (after a commit that wrote outbox rows).
    public func notify() { worker.wake() }

    public func run() async throws {
        await worker.run { await drain() }
    }

    /// Publishes until the outbox is empty or publishing fails; returns how many were sent.
    @discardableResult
    public func drain() async -> Int {
        var total = 0
        while true {
            do {
                let sent = try await relayOnce()
                total += sent
                if sent < batchSize { return total }
            } catch {
                logger.warning("outbox relay paused", metadata: ["outbox.error": "\(error)"])
                return total
            }
        }
    }

    struct Row: Sendable {
        var id: Int64
        var messageId: String
        var routingKey: String
        var body: String
    }

    func relayOnce() async throws -> Int {
        let (limit, leaseSeconds, name) = (batchSize, Double(lease.components.seconds), self.name)
        let rows = try await store.withConnection { conn in
            try conn.query(
                """
                UPDATE outbox SET claimed_until = now() + make_interval(secs => $2), claimed_by = $3
                 WHERE id IN (SELECT id FROM outbox WHERE claimed_until IS NULL OR claimed_until < now()
                               ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
                RETURNING id, message_id, routing_key, body
                """, [limit, leaseSeconds, name]
            ).map {
                Row(
                    id: try $0.decode(Int64.self, at: 0), messageId: try $0.decode(String.self, at: 1), routingKey: try $0.decode(String.self, at: 2),
                    body: try $0.decode(String.self, at: 3))
            }
        }
        guard !rows.isEmpty else { return 0 }
        let published = await withTaskGroup(of: Int64?.self) { group in
            for row in rows {
                group.addTask {
                    let message = OutgoingMessage(routingKey: row.routingKey, body: Array(row.body.utf8), messageId: row.messageId)
                    do {
                        try await self.publisher.publish(message)
                        return row.id
                    } catch let error as BusError where error.code == .unroutable {
                        // no queue wants it: keep it where operators look, with the reason
                        var dead = message
                        dead.exchange = Topology.deadLetterExchange
                        dead.headers["x-spotguard-error"] = "unroutable: no queue is bound for \(row.routingKey)"
                        guard (try? await self.publisher.publish(dead)) != nil else { return nil }
                        return row.id
                    } catch {
                        self.logger.warning("outbox publish failed", metadata: ["outbox.id": "\(row.id)", "bus.error": "\(error)"])
                        return nil
                    }
                }
            }
            var ids: [Int64] = []
            for await id in group { if let id { ids.append(id) } }
            return ids
        }
        try await store.withConnection { conn in
            // what failed is released for the next attempt instead of waiting out the lease
            _ = try conn.execute(
                """
                WITH gone AS (DELETE FROM outbox WHERE id = ANY($1::bigint[]) RETURNING id)
                UPDATE outbox SET claimed_until = NULL, claimed_by = NULL
                 WHERE id = ANY($2::bigint[]) AND NOT (id = ANY($1::bigint[]))
                """, [PGArray(published), PGArray(rows.map(\.id))])
        }
        Counter(label: "spotguard_outbox_published_total").increment(by: published.count)
        if published.count < rows.count { throw BusError(.notConnected, "\(rows.count - published.count) outbox messages not confirmed") }
        return rows.count
    }
}
