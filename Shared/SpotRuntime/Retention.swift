import Foundation
import Logging
import ServiceLifecycle
import SpotStore

/// How long one kind of row is kept, and how its owner removes what is older. The removal is
/// written by the table's owner (one owner per table); this type only carries it. The days come
/// from `SPOTGUARD_RETENTION_<TABLE>_DAYS` or the documented default (docs/operations/retention.md).
public struct RetentionRule: Sendable {
    /// The table, as reported in the job's result and named in the variable.
    public let table: String
    public let days: Int
    /// Removes the rows (or partitions) older than the cutoff; returns how many.
    let prune: @Sendable (PGConnection, Date) throws -> Int

    public init(_ table: String, days: Int, prune: @escaping @Sendable (PGConnection, _ cutoff: Date) throws -> Int) {
        self.table = table
        self.days = days
        self.prune = prune
    }

    /// The days `table` keeps: `SPOTGUARD_RETENTION_<TABLE>_DAYS`, at least `minimum`, or the default.
    public static func days(_ table: String, default value: Int, minimum: Int = 1, env: EnvironmentReader) throws -> Int {
        try env.int(variable(table), default: value, range: minimum...36_500)
    }

    public static func variable(_ table: String) -> String { "SPOTGUARD_RETENTION_\(table.uppercased())_DAYS" }
}

/// The retention job of a service: its rules applied once per `interval` however many copies
/// run (a `ScheduledJobs` claim), all in the claiming transaction, under a `lock_timeout` of two
/// seconds, so a removal that needs a table lock (dropping a partition) never holds the
/// service's own writers longer and otherwise tries again at the next look.
public final class RetentionService: Service, Sendable {
    let job: String
    let rules: [RetentionRule]
    let interval: Int
    let worker: String
    let store: PostgresStore
    let logger: Logger
    let loop: PeriodicWorker

    /// How often the job runs: `SPOTGUARD_RETENTION_INTERVAL_SECONDS`, default an hour.
    public static func interval(env: EnvironmentReader) throws -> Int {
        try env.int("SPOTGUARD_RETENTION_INTERVAL_SECONDS", default: 3600, range: 60...86_400)
    }

    public init(job: String, rules: [RetentionRule], interval: Int, worker: String, store: PostgresStore, logger: Logger) {
        self.job = job
        self.rules = rules
        self.interval = interval
        self.worker = worker
        self.store = store
        self.logger = logger
        loop = PeriodicWorker(job, every: .seconds(min(interval, 60)))
    }

    public func run() async throws {
        await loop.run {
            do {
                if let removed = try await apply(force: false), removed.values.contains(where: { $0 > 0 }) {
                    logger.info("retention", metadata: ["job": "\(job)", "removed": "\(removed.filter { $0.value > 0 })"])
                }
            } catch {
                logger.warning("retention failed; tried again at the next look", metadata: ["job": "\(job)", "error": "\(error)"])
            }
        }
    }

    /// Rows (or partitions) removed per table; nil when another copy has the job or it is not due.
    public func apply(force: Bool, now: Date = Date()) async throws -> [String: Int]? {
        let rules = self.rules
        return try await ScheduledJobs.run(job, every: interval, force: force, worker: worker, store: store) { conn in
            _ = try conn.execute("SET LOCAL lock_timeout = '2s'")
            var removed: [String: Int] = [:]
            for rule in rules {
                removed[rule.table] = try rule.prune(conn, now.addingTimeInterval(-Double(rule.days) * 86_400))
            }
            return removed
        }
    }
}
