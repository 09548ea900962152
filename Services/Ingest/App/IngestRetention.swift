import Foundation
import Logging
import SpotRuntime
import SpotStore

extension RetentionService {
    /// Ingest's retention job `ingest.retention`. An agent's state is pruned to its newest
    /// versions when it ships a new one; this job covers what that never reaches: the state of an
    /// agent silent for longer than `state_versions`' days (its instance and replicas gone, so
    /// nothing will restore it), chunks no version names any more, and state handed to replicas
    /// that no newer transfer replaced.
    public static func ingest(configuration: IngestConfiguration, store: PostgresStore, logger: Logger) -> RetentionService {
        let rules = [
            RetentionRule("state_versions") { conn, cutoff in
                try conn.execute(
                    """
                    DELETE FROM state_versions v USING agents a
                     WHERE a.id = v.agent_id AND coalesce(a.last_heartbeat_at, a.created_at) < $1
                    """, [cutoff])
            },
            // after the versions: the chunks of the agents just pruned go in the same run
            RetentionRule("state_chunks") { conn, cutoff in
                try conn.execute(
                    """
                    DELETE FROM state_chunks c WHERE c.stored_at < $1
                       AND NOT EXISTS (SELECT 1 FROM state_versions v WHERE v.agent_id = c.agent_id AND c.sha256 = ANY (v.chunks))
                    """, [cutoff])
            },
            RetentionRule("replica_state_transfers") { conn, cutoff in
                try conn.execute("DELETE FROM replica_state_transfers WHERE uploaded_at < $1", [cutoff])
            },
        ]
        return RetentionService(
            job: "ingest.retention", rules: rules, policy: configuration.retention, worker: configuration.workerName, store: store, logger: logger)
    }
}
