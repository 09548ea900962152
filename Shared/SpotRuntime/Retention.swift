import Foundation
import Logging
import ServiceLifecycle
import SpotStore

/// How one kind of row older than its days is removed. The removal is written by the table's
/// owner (one owner per table); this type only carries it. The days are the service's
/// `RetentionPolicy`'s.
public struct RetentionRule: Sendable {
    /// The table, as reported in the job's result and named in the variable.
    public let table: String
    /// Removes the rows (or partitions) older than the cutoff; returns how many.
    let prune: @Sendable (PGConnection, Date) throws -> Int

    public init(_ table: String, prune: @escaping @Sendable (PGConnection, _ cutoff: Date) throws -> Int) {
        self.table = table
        self.prune = prune
    }

    public static func variable(_ table: String) -> String { "SPOTGUARD_RETENTION_\(table.uppercased())_DAYS" }
}

/// The days each table of a service keeps and how often its job runs, read once with the
/// service's configuration: `SPOTGUARD_RETENTION_<TABLE>_DAYS` (at least the table's floor) or
/// the documented default (docs/operations/retention.md), and
/// `SPOTGUARD_RETENTION_INTERVAL_SECONDS` (default an hour).
public struct RetentionPolicy: Sendable {
    public struct Table: Sendable {
        public let name: String
        public let days: Int
        public let minimum: Int

        public init(_ name: String, days: Int, minimum: Int = 1) {
            self.name = name
            self.days = days
            self.minimum = minimum
        }
    }

    public let interval: Int
    private let days: [String: Int]

    public init(_ tables: [Table], env: EnvironmentReader) throws {
        interval = try env.int("SPOTGUARD_RETENTION_INTERVAL_SECONDS", default: 3600, range: 60...86_400)
        var days: [String: Int] = [:]
        for table in tables {
            days[table.name] = try env.int(RetentionRule.variable(table.name), default: table.days, range: table.minimum...36_500)
        }
        self.days = days
    }

    /// The days `table` keeps; a table the policy was not given is a programming error.
    public subscript(table: String) -> Int {
        guard let value = days[table] else { preconditionFailure("no retention configured for \(table)") }
        return value
    }
}

/// The retention job of a service: its rules applied once per `interval` however many copies
/// run (a `ScheduledJobs` claim), all in the claiming transaction, under a `lock_timeout` of two
/// seconds, so a removal that needs a table lock (dropping a partition) never holds the
/// service's own writers longer and otherwise tries again at the next look.
public final class RetentionService: Service, Sendable {
    let job: String
    let rules: [RetentionRule]
    let policy: RetentionPolicy
    let worker: String
    let store: PostgresStore
    let logger: Logger
    let loop: PeriodicWorker

    public init(job: String, rules: [RetentionRule], policy: RetentionPolicy, worker: String, store: PostgresStore, logger: Logger) {
        self.job = job
        self.rules = rules
        self.policy = policy
        self.worker = worker
        self.store = store
        self.logger = logger
        for rule in rules { _ = policy[rule.table] }  // every rule has its days
        loop = PeriodicWorker(job, every: .seconds(min(policy.interval, 60)))
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
        let (rules, policy) = (self.rules, self.policy)
        return try await ScheduledJobs.run(job, every: policy.interval, force: force, worker: worker, store: store) { conn in
            _ = try conn.execute("SET LOCAL lock_timeout = '2s'")
            var removed: [String: Int] = [:]
            for rule in rules {
                removed[rule.table] = try rule.prune(conn, now.addingTimeInterval(-Double(policy[rule.table]) * 86_400))
            }
            return removed
        }
    }
}
