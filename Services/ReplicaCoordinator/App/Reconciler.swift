import Foundation
import Logging
import Metrics
import ReplicaCore
import ServiceLifecycle
import SpotModels
import SpotRuntime
import SpotStore

/// The coordinator's periodic work, safe to run in every copy: each agent or replica is
/// claimed with `FOR UPDATE SKIP LOCKED` (or changed by one atomic UPDATE), so copies share
/// the work instead of doubling it.
///
/// - manual mode: an agent without its manual replica gets one;
/// - rebalance replicas not needed by a termination within the window are terminated;
/// - replicas stuck launching or syncing past the limit fail (and are alerted, and replaced);
/// - agents silent past the limit go offline (`agent.offline`).
///
/// In the service the reconciler runs in the copy that leads (`Leadership`); the others wait
/// and take over when the leader's lease runs out. Every pass's transactions are fenced by the
/// leader's epoch. The `reconcile` command runs one pass without the lead (row locks keep it
/// from doubling a leader's work).
public final class Reconciler: Service, Sendable {
    let coordinator: Coordinator
    let leadership: Leadership?
    let logger: Logger

    public init(coordinator: Coordinator, leadership: Leadership?, logger: Logger) {
        self.coordinator = coordinator
        self.leadership = leadership
        self.logger = logger
    }

    var store: PostgresStore { coordinator.store }
    var configuration: ReplicaConfiguration { coordinator.configuration }

    public func run() async throws {
        var led = false
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                let leads = await leadership?.renew() ?? true
                if leads != led, let leadership {
                    logger.notice(leads ? "leading the reconciler" : "another copy leads the reconciler", metadata: ["epoch": "\(leadership.current.map(String.init) ?? "-")"])
                }
                led = leads
                if leads {
                    let summary = try await cycle()
                    if summary.changed { logger.info("reconciled", metadata: summary.metadata) }
                }
            } catch let stale as Leadership.Stale {
                led = false
                logger.warning("reconcile pass refused: lost the lead", metadata: ["error": "\(stale)"])
            } catch {
                logger.warning("reconcile cycle failed", metadata: ["error": "\(error)"])
            }
            let pause = configuration.reconcileInterval
            _ = try? await cancelWhenGracefulShutdown { try await Task.sleep(for: pause) }
        }
        await leadership?.resign()
    }

    public struct Summary: Sendable, Encodable {
        public var launched = 0
        public var expired = 0
        public var stuck = 0
        public var offline = 0
        var changed: Bool { launched + expired + stuck + offline > 0 }
        var metadata: Logger.Metadata {
            ["launched": "\(launched)", "expired": "\(expired)", "stuck": "\(stuck)", "offline": "\(offline)"]
        }
    }

    /// One pass over everything due.
    public func cycle() async throws -> Summary {
        var s = Summary()
        s.stuck = try await failStuckReplicas()
        s.expired = try await expireRebalanceReplicas()
        s.launched = try await launchMissingManualReplicas()
        s.offline = try await markSilentAgentsOffline()
        coordinator.notify()
        Counter(label: "spotguard_reconcile_cycles_total").increment()
        return s
    }

    /// A transaction that first passes the leader's fence (none for the `reconcile` command).
    func fencedTransaction<T: Sendable>(_ body: @escaping @Sendable (PGConnection) throws -> T) async throws -> T {
        let leadership = self.leadership
        return try await store.transaction { conn in
            try leadership?.fence(on: conn)
            return try body(conn)
        }
    }

    func launchMissingManualReplicas() async throws -> Int {
        let coordinator = self.coordinator
        return try await fencedTransaction { conn in
            let agents = try conn.query(
                """
                SELECT \(AgentRecord.columns) FROM agents a
                 WHERE manual_replica_enabled AND enabled AND status <> 'deleted'
                   AND NOT EXISTS (SELECT 1 FROM replica_instances r WHERE r.agent_id = a.id AND r.replica_type = 'manual' AND r.is_active)
                 ORDER BY id LIMIT 50 FOR UPDATE SKIP LOCKED
                """
            ).map(AgentRecord.init)
            var launched = 0
            for agent in agents {
                do {
                    if try coordinator.ensureManualReplica(agent, on: conn) != nil { launched += 1 }
                } catch let refusal as ReplicaRefusal {
                    // e.g. no priced pool yet: said once an hour, tried again next cycle
                    try coordinator.event(
                        "replica.not_launched", agent: agent, replica: nil, refusal.message, severity: "warning",
                        dedupKey: "not-launched:\(agent.id.uuidString.lowercased()):\(Int(Date().timeIntervalSince1970) / 3600)", on: conn)
                }
            }
            return launched
        }
    }

    func expireRebalanceReplicas() async throws -> Int {
        let (coordinator, window) = (self.coordinator, Double(configuration.rebalanceWindow.components.seconds))
        return try await fencedTransaction { conn in
            let due = try conn.query(
                """
                SELECT r.id, a.id, a.client_id FROM replica_instances r JOIN agents a ON a.id = r.agent_id
                 WHERE r.replica_type = 'automatic-rebalance' AND r.is_active AND r.created_at < now() - make_interval(secs => $1)
                 ORDER BY r.id LIMIT 50 FOR UPDATE OF a SKIP LOCKED
                """, [window]
            ).map { (try $0.decode(UUID.self, at: 0), try $0.decode(UUID.self, at: 1), try $0.decode(UUID.self, at: 2)) }
            for (replicaId, agentId, clientId) in due {
                let agent = try AgentRecord.lock(agentId, client: clientId, on: conn)
                var replica = try ReplicaRecord.lock(replicaId, agent: agentId, on: conn)
                try coordinator.terminate(&replica, agent: agent, reason: "no termination followed the rebalance recommendation", on: conn)
                _ = try conn.execute(
                    "UPDATE spot_interruption_events SET response_action = 'replica_expired' WHERE replica_id = $1 AND signal_type = 'rebalance-recommendation'",
                    [replicaId])
            }
            return due.count
        }
    }

    func failStuckReplicas() async throws -> Int {
        let (coordinator, limit) = (self.coordinator, Double(configuration.stuckAfter.components.seconds))
        return try await fencedTransaction { conn in
            let due = try conn.query(
                """
                SELECT r.id, r.status, a.id, a.client_id FROM replica_instances r JOIN agents a ON a.id = r.agent_id
                 WHERE r.status IN ('launching', 'syncing') AND r.status_changed_at < now() - make_interval(secs => $1)
                 ORDER BY r.id LIMIT 50 FOR UPDATE OF a SKIP LOCKED
                """, [limit]
            ).map { (try $0.decode(UUID.self, at: 0), try $0.decode(String.self, at: 1), try $0.decode(UUID.self, at: 2), try $0.decode(UUID.self, at: 3)) }
            for (replicaId, status, agentId, clientId) in due {
                let agent = try AgentRecord.lock(agentId, client: clientId, on: conn)
                var replica = try ReplicaRecord.lock(replicaId, agent: agentId, on: conn)
                guard try replica.lifecycle.move(to: .failed) else { continue }
                let reason = "stuck in \(status) for more than \(Int(limit)) s"
                try replica.saveLifecycle(on: conn, failureReason: reason)
                try coordinator.stopInstance(of: replica, agent: agent, on: conn)
                try coordinator.refreshSummary(agentId, on: conn)
                try coordinator.alert("replica_stuck", agent: agent, replica: replicaId, "replica \(reason)", dedupKey: nil, on: conn)
                try coordinator.ensureManualReplica(agent, on: conn)
            }
            return due.count
        }
    }

    func markSilentAgentsOffline() async throws -> Int {
        let limit = Double(configuration.offlineAfter.components.seconds)
        return try await fencedTransaction { conn in
            let rows = try conn.query(
                """
                UPDATE agents SET status = 'offline'
                 WHERE status = 'online' AND last_heartbeat_at < now() - make_interval(secs => $1)
                RETURNING id, client_id, last_heartbeat_at
                """, [limit])
            for row in rows {
                let (agent, client, last) = (try row.decode(UUID.self, at: 0), try row.decode(UUID.self, at: 1), try row.decode(Date.self, at: 2))
                let message = "no heartbeat since \(Timestamp.format(last))"
                _ = try conn.execute(
                    """
                    INSERT INTO system_events (event_type, severity, component, client_id, agent_id, message, dedup_key)
                    VALUES ('agent.offline', 'warning', 'spotguard-replicas', $1, $2, $3, $4) ON CONFLICT (dedup_key) DO NOTHING
                    """, [client, agent, message, "offline:\(agent.uuidString.lowercased()):\(Timestamp.format(last))"])
                try Outbox.append(
                    Envelope(type: RoutingKey.agentOffline, producer: Coordinator.producer, payload: AgentAlert(
                        kind: "agent_offline", clientId: client, agentId: agent, replicaId: nil, message: message, since: last)),
                    on: conn)
            }
            return rows.count
        }
    }
}
