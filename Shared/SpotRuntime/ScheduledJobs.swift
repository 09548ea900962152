import Foundation
import SpotModels
import SpotStore

/// Work that must happen once per period however many copies run (DESIGN principle 4): a row
/// in `scheduled_jobs` is claimed with `FOR UPDATE SKIP LOCKED` when due, the work runs in the
/// claiming transaction, and the next run is scheduled with the result recorded.
public enum ScheduledJobs {
    /// Runs `body` if `name` is due (always with `force`, waiting for a copy that holds it);
    /// nil when another copy has it or it is not due.
    public static func run<T: Sendable & Encodable>(
        _ name: String, every seconds: Int, force: Bool, worker: String, store: PostgresStore,
        _ body: @escaping @Sendable (PGConnection) throws -> T
    ) async throws -> T? {
        try await store.transaction { conn -> T? in
            let claimed = try conn.query(
                force
                    ? "SELECT name FROM scheduled_jobs WHERE name = $1 FOR UPDATE"
                    : "SELECT name FROM scheduled_jobs WHERE name = $1 AND next_run_at <= now() FOR UPDATE SKIP LOCKED",
                [name])
            guard !claimed.isEmpty else { return nil }
            let result = try body(conn)
            let json = String(decoding: try WireJSON.encoder().encode(result), as: UTF8.self)
            _ = try conn.execute(
                """
                UPDATE scheduled_jobs SET next_run_at = now() + make_interval(secs => $2), last_started_at = now(),
                       last_finished_at = clock_timestamp(), last_run_by = $3, last_result = $4::jsonb
                 WHERE name = $1
                """, [name, seconds, worker, json])
            return result
        }
    }
}
