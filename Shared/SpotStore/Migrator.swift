import Foundation
import Logging

/// A versioned SQL migration: `Migrations/NNNN_name.sql`.
public struct Migration: Sendable, Equatable {
    public var version: Int
    public var name: String
    public var sql: String

    public var checksum: String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a 64: detects a migration edited after it ran
        for b in sql.utf8 {
            h ^= UInt64(b)
            h = h &* 0x100_0000_01b3
        }
        return String(h, radix: 16)
    }

    /// The migrations shipped with SpotStore, in version order.
    public static func bundled() throws -> [Migration] {
        guard let dir = Bundle.module.url(forResource: "Migrations", withExtension: nil) else {
            throw PGError(.query, message: "migrations folder missing from the SpotStore bundle")
        }
        let files = try FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil)
        let migrations = try files.filter { $0.pathExtension == "sql" }.map { url -> Migration in
            let base = url.deletingPathExtension().lastPathComponent
            guard let underscore = base.firstIndex(of: "_"), let version = Int(base[..<underscore]) else {
                throw PGError(.query, message: "migration file \(base) is not named NNNN_name.sql")
            }
            return Migration(version: version, name: String(base[base.index(after: underscore)...]), sql: try String(contentsOf: url, encoding: .utf8))
        }.sorted { $0.version < $1.version }
        guard Set(migrations.map(\.version)).count == migrations.count else {
            throw PGError(.query, message: "two migrations share a version")
        }
        return migrations
    }
}

/// Applies migrations in order, each in its own transaction, under a session advisory lock:
/// any number of services may start at once and each migration still runs exactly once.
public enum Migrator {
    /// `hashtext('spotguard.migrations')` would do too; a constant keeps it readable in pg_locks.
    static let lockKey: Int64 = 0x5350_4F54_4755_4152  // "SPOTGUAR"

    @discardableResult
    public static func migrate(_ store: PostgresStore, migrations: [Migration], logger: Logger) async throws -> [Int] {
        try await store.withConnection { conn in
            try conn.execute("SELECT pg_advisory_lock($1)", [lockKey])
            defer { _ = try? conn.execute("SELECT pg_advisory_unlock($1)", [lockKey]) }
            try conn.executeScript(
                """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """)
            var applied: [Int: String] = [:]
            for row in try conn.query("SELECT version, checksum FROM schema_migrations") {
                applied[try row.decode(Int.self, at: 0)] = try row.decode(String.self, at: 1)
            }
            var ran: [Int] = []
            for m in migrations {
                if let checksum = applied[m.version] {
                    guard checksum == m.checksum else {
                        throw PGError(.query, message: "migration \(m.version)_\(m.name) changed after it was applied")
                    }
                    continue
                }
                try conn.execute("BEGIN")
                do {
                    try conn.executeScript(m.sql)
                    try conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", [m.version, m.name, m.checksum])
                    try conn.execute("COMMIT")
                } catch {
                    _ = try? conn.execute("ROLLBACK")
                    throw error
                }
                logger.info("migration applied", metadata: ["db.migration": "\(m.version)_\(m.name)"])
                ran.append(m.version)
            }
            return ran
        }
    }
}
