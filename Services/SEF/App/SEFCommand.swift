import Foundation
import Logging
import SpotModels
import SpotRuntime
import SpotStore

/// The operator commands of `spotguard-sef`. They claim work exactly as the service does,
/// so running one beside live copies never doubles it; the events they write to the outbox
/// are published by a running service's relay.
public enum SEFCommand {
    public static func run(
        env: EnvironmentReader, logger: Logger, _ body: (Maintenance) async throws -> Void
    ) async throws {
        let configuration = try SEFConfiguration(env: env)
        try await ServiceCommand.withStore(env: env, applicationName: "spotguard-sef-admin", logger: logger) { store in
            try await body(Maintenance(store: store, configuration: configuration, logger: logger))
        }
    }

    /// One line per item of the `pricing_quality_review` view, newest first.
    public static func review(_ store: PostgresStore, limit: Int = 200) async throws -> [String] {
        try await store.withConnection { conn in
            try conn.query(
                """
                SELECT kind, pool_id, starts_at, ends_at, spot_price::text, confidence_score::text, details::text
                  FROM pricing_quality_review ORDER BY flagged_at DESC LIMIT $1
                """, [limit]
            ).map { row in
                let fields = try (0..<7).map { try row.decodeIfPresent(String.self, at: $0) ?? "-" }
                return fields.joined(separator: "\t")
            }
        }
    }
}
