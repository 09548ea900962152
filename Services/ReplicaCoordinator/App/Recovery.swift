import Foundation
import ReplicaCore
import SpotFleet
import SpotModels
import SpotRuntime
import SpotStore

/// Recovery without a ready replica: a termination notice launched an `automatic-termination`
/// replica (and the dying primary sent it its state); the moment that replica is ready it is
/// promoted as the failover the notice asked for — its agent restores the state, takes the
/// traffic, and the old primary (if it still runs) is fenced. Nothing waits for the primary to
/// fall silent.
extension Coordinator {
    func recover(_ replica: inout ReplicaRecord, agent: inout AgentRecord, on conn: PGConnection) throws {
        guard
            let row = try conn.query(
                """
                SELECT id, instance_id, detected_at, termination_time FROM spot_interruption_events
                 WHERE agent_id = $1 AND replica_id = $2 AND signal_type = 'termination-notice'
                   AND response_action = 'emergency_snapshot_required' AND NOT failover_completed
                 FOR UPDATE
                """, [agent.id, replica.id]
            ).first
        else { return }
        let (eventId, noticed, detectedAt) = (try row.decode(UUID.self, at: 0), try row.decode(String.self, at: 1), try row.decode(Date.self, at: 2))
        // the noticed instance must still be the primary: a switch or another failover since
        // has already replaced it, and this replica stays a replica
        guard agent.instanceId == noticed else { return }
        let ms = max(0, Int(Date().timeIntervalSince(detectedAt) * 1000))
        try promote(
            &replica, agent: &agent, trigger: .failover, initiatedAt: detectedAt, terminateOld: false,
            oldTerminatedAt: try row.decodeIfPresent(Date.self, at: 3) ?? detectedAt.addingTimeInterval(120), eventId: eventId, failoverTimeMs: ms,
            on: conn)
        _ = try conn.execute(
            """
            UPDATE spot_interruption_events SET response_action = 'replica_promoted', new_instance_id = $2, failover_completed = true,
                   failover_completed_at = now(), failover_time_ms = $3, success = true, error_message = NULL
             WHERE id = $1
            """, [eventId, replica.instanceId, ms])
        try event(
            "failover.recovered", agent: agent, replica: replica.id,
            "recovered without a ready replica: \(noticed) -> \(replica.instanceId ?? "?") \(ms) ms after the notice", on: conn)
    }
}
