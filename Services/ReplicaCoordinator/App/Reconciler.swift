import Foundation
import Logging
import Metrics
import ReplicaCore
import ServiceLifecycle
import SpotFleet
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
/// - a primary with a ready replica, silent past `silenceBeforeCheck`, is checked by the
///   replica's agent (`check_primary`); the result fails it over when its instance is gone;
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
        await PeriodicWorker("reconciler", every: configuration.reconcileInterval).run {
            do {
                let leads = await leadership?.renew() ?? true
                if leads != led, let leadership {
                    logger.notice(
                        leads ? "leading the reconciler" : "another copy leads the reconciler",
                        metadata: ["epoch": "\(leadership.current.map(String.init) ?? "-")"])
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
        }
        await leadership?.resign()
    }

    public struct Summary: Sendable, Encodable {
        public var launched = 0
        public var expired = 0
        public var stuck = 0
        public var offline = 0
        public var primariesChecked = 0
        var changed: Bool { launched + expired + stuck + offline + primariesChecked > 0 }
        var metadata: Logger.Metadata {
            ["launched": "\(launched)", "expired": "\(expired)", "stuck": "\(stuck)", "offline": "\(offline)", "checked": "\(primariesChecked)"]
        }
    }

    /// One pass over everything due.
    public func cycle() async throws -> Summary {
        var s = Summary()
        s.stuck = try await failStuckReplicas()
        s.expired = try await expireRebalanceReplicas()
        s.launched = try await launchMissingManualReplicas()
        s.primariesChecked = try await checkSilentPrimaries()
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
                // e.g. no priced pool yet: said once an hour, tried again next cycle
                if try coordinator.replaceManualReplica(agent, on: conn) != nil { launched += 1 }
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
                try Agents.refreshReplicaSummary(agentId, on: conn)
                try coordinator.alert("replica_stuck", agent: agent, replica: replicaId, "replica \(reason)", dedupKey: nil, on: conn)
                try coordinator.replaceManualReplica(agent, on: conn)
            }
            return due.count
        }
    }

    /// A primary that went silent may be gone without a notice (a reclaim the agent never saw,
    /// a hardware failure) — or only cut off from SpotGuard while it still serves. Its ready
    /// replica's agent, which runs elsewhere, is asked to look (`check_primary`: the primary's
    /// instance state by DescribeInstances); the coordinator fails over only when the answer
    /// says the instance is gone (`Coordinator.primaryChecked`). Asked again a third of the
    /// silence after each answer while the primary stays silent.
    func checkSilentPrimaries() async throws -> Int {
        let silence = Double(configuration.silenceBeforeCheck.components.seconds)
        return try await fencedTransaction { conn in
            let due = try conn.query(
                """
                SELECT a.id, a.client_id, a.instance_id, r.id, r.instance_id FROM agents a
                  JOIN LATERAL (SELECT id, instance_id FROM replica_instances
                                 WHERE agent_id = a.id AND status = 'ready' AND instance_id IS NOT NULL
                                 ORDER BY replica_type = 'manual' DESC, ready_at DESC LIMIT 1) r ON true
                 WHERE a.status IN ('online', 'offline') AND a.instance_id IS NOT NULL
                   AND a.last_heartbeat_at < now() - make_interval(secs => $1)
                   -- a primary promoted a moment ago has not had the time to speak yet
                   AND (a.last_failover_at IS NULL OR a.last_failover_at < now() - make_interval(secs => $1))
                   -- one check at a time; after an answer that it still runs, again a third of the silence later
                   AND NOT EXISTS (SELECT 1 FROM commands c WHERE c.agent_id = a.id AND c.command_type = 'check_primary'
                                    AND (c.status IN ('pending', 'delivered') OR c.completed_at > now() - make_interval(secs => $1 / 3)))
                 ORDER BY a.id LIMIT 50 FOR UPDATE OF a SKIP LOCKED
                """, [silence]
            ).map {
                (
                    try $0.decode(UUID.self, at: 0), try $0.decode(UUID.self, at: 1), try $0.decode(String.self, at: 2),
                    try $0.decode(UUID.self, at: 3), try $0.decode(String.self, at: 4)
                )
            }
            for (agent, client, primary, replica, replicaInstance) in due {
                try Commands.issue(
                    try .init(
                        .checkPrimary, clientId: client, agentId: agent, targetInstanceId: replicaInstance, replicaId: replica,
                        payload: ["primary_instance_id": primary, "replica_id": replica.uuidString.lowercased()],
                        issuedBy: "replicas", priority: 10, expiresIn: .seconds(max(60, silence * 2))),
                    producer: Coordinator.producer, on: conn)
            }
            return due.count
        }
    }

    func markSilentAgentsOffline() async throws -> Int {
        let limit = Double(configuration.offlineAfter.components.seconds)
        return try await fencedTransaction { conn in
            let rows = try Agents.markSilentOffline(after: limit, on: conn)
            for (agent, client, last) in rows {
                let message = "no heartbeat since \(Timestamp.format(last))"
                try SystemEvents.record(
                    .init(
                        "agent.offline", severity: "warning", component: "spotguard-replicas", clientId: client, agentId: agent, message: message,
                        dedupKey: "offline:\(agent.uuidString.lowercased()):\(Timestamp.format(last))"),
                    on: conn)
                try Outbox.append(
                    Envelope(
                        type: RoutingKey.agentOffline, producer: Coordinator.producer,
                        payload: AgentAlert(
                            kind: "agent_offline", clientId: client, agentId: agent, replicaId: nil, message: message, since: last)),
                    on: conn)
            }
            return rows.count
        }
    }
}
