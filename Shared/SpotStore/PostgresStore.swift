import Foundation
import Logging
import Metrics
import SpotModels
import Synchronization

/// Connection settings, parsed from a `postgresql://user:password@host:port/db` URL. Several
/// servers (a primary and its standbys) are one URL, `postgresql://user@pg-1:5432,pg-2:5432/db`:
/// libpq tries them in order and, unless the URL says otherwise (`?target_session_attrs=`),
/// keeps only a server that accepts writes, so after a failover a new connection reaches the
/// promoted standby. `sslmode` and `sslrootcert` pass through to libpq.
public struct PostgresConfiguration: Sendable {
    public struct Server: Sendable, Equatable {
        public var host: String
        public var port: Int

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
    }

    /// At least one.
    public var servers: [Server]
    public var user: String
    public var password: String?
    public var database: String
    /// libpq's `target_session_attrs`: `read-write` by default when there are several servers.
    public var targetSessionAttributes: String?
    /// Further libpq settings from the URL's query (`sslmode`, `sslrootcert`).
    public var options: [(String, String)] = []
    public var host: String { servers[0].host }
    public var port: Int { servers[0].port }
    /// Connections (and threads) in the pool.
    public var poolSize = 4
    public var connectTimeoutSeconds = 5
    /// Upper bound for any single statement, enforced by the server; the client waits this long
    /// and 5 s more for any answer (see `PGConnection`), so no worker thread blocks forever.
    public var statementTimeoutMs = 30_000
    /// A transaction left idle this long is ended by the server, its locks released (0: never).
    /// A process paused mid-transaction (SIGSTOP, a long stall) or cut off from the server
    /// without a close the server sees (a dead proxy or partition: the server's TCP keepalive
    /// takes two hours) then holds nothing for long. No SpotGuard transaction waits on anything
    /// but the database, so a minute is far beyond any legitimate pause.
    public var idleInTransactionTimeoutMs = 60_000
    /// A connection that moved a message of at least `largeMessageBytes` (a state chunk, a
    /// batch's arrays) is closed once that is this long ago and no job waits, and opened again
    /// when next needed: libpq keeps its buffers at the largest message until the connection
    /// closes (ingest's 8 held ~4 MB each after state chunks went through them).
    public var idleRelease: Duration = .seconds(30)
    public var largeMessageBytes = 1 << 20
    public var applicationName = "spotguard"

    public init?(url: String) {
        guard let parsed = ServiceURL(url, schemes: ["postgresql", "postgres"]) else { return nil }
        servers = parsed.servers.map { Server(host: $0.host, port: $0.port ?? 5432) }
        user = parsed.user ?? "postgres"
        password = parsed.password
        database = parsed.path.isEmpty ? user : parsed.path
        for (key, value) in parsed.query {
            switch key {
            case "target_session_attrs": targetSessionAttributes = value
            case "sslmode", "sslrootcert": options.append((key, value))
            default: return nil  // a setting this build does not pass on is refused, not ignored
            }
        }
        if targetSessionAttributes == nil, servers.count > 1 { targetSessionAttributes = "read-write" }
    }

    var keywords: [(String, String)] {
        var k: [(String, String)] = [
            ("host", servers.map(\.host).joined(separator: ",")), ("port", servers.map { String($0.port) }.joined(separator: ",")),
            ("user", user), ("dbname", database),
            ("connect_timeout", String(connectTimeoutSeconds)), ("application_name", applicationName),
            // JIT compiles every plan above a cost threshold: half a second of LLVM for queries
            // that run in milliseconds (the decision pass: 527 of 823 ms), so it is off
            (
                "options",
                "-c statement_timeout=\(statementTimeoutMs) -c idle_in_transaction_session_timeout=\(idleInTransactionTimeoutMs) -c TimeZone=UTC -c jit=off"
            ),
            ("keepalives", "1"), ("keepalives_idle", "10"), ("keepalives_interval", "5"), ("keepalives_count", "3"),
            ("tcp_user_timeout", "30000"),
        ]
        if let password { k.append(("password", password)) }
        if let targetSessionAttributes { k.append(("target_session_attrs", targetSessionAttributes)) }
        return k + options
    }
}

/// A pool of thread-owned libpq connections.
///
/// Each of `poolSize` worker threads owns one `PGConnection` and runs the synchronous closures
/// callers give it, so blocking libpq calls never occupy Swift's cooperative threads; callers
/// simply `await` the result. A broken connection is reopened before the next job.
public final class PostgresStore: Sendable {
    public enum Isolation: String, Sendable {
        case readCommitted = "READ COMMITTED"
        case repeatableRead = "REPEATABLE READ"
        case serializable = "SERIALIZABLE"
    }

    private struct Job {
        let run: @Sendable (PGConnection) -> Void
        let fail: @Sendable (PGError) -> Void
    }

    private struct State {
        var jobs: [Job] = []
        var stopping = false
        var live = 0
    }

    private let configuration: PostgresConfiguration
    private let logger: Logger
    private let state = Mutex(State())
    private let signal = DispatchSemaphore(value: 0)

    public init(configuration: PostgresConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        state.withLock { $0.live = configuration.poolSize }
        for i in 0..<configuration.poolSize {
            let t = Thread { [self] in worker() }
            t.name = "pg-\(i)"
            t.start()
        }
    }

    /// Runs `body` on one pooled connection and returns its result.
    public func withConnection<T: Sendable>(_ body: @escaping @Sendable (PGConnection) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<T, any Error>) in
            let job = Job(
                run: { conn in c.resume(with: Result { try body(conn) }) },
                fail: { c.resume(throwing: $0) })
            let accepted = state.withLock { s -> Bool in
                guard !s.stopping else { return false }
                s.jobs.append(job)
                return true
            }
            if accepted { signal.signal() } else { c.resume(throwing: PGError(.shutdown, message: "the store is shutting down")) }
        }
    }

    /// Runs `body` inside a transaction; commits when it returns, rolls back when it throws.
    /// Serialization failures, deadlocks and lost connections run the whole unit again (with
    /// jittered backoff, up to `maxAttempts`), so `body` must be a unit of work that can repeat.
    public func transaction<T: Sendable>(
        isolation: Isolation = .readCommitted, maxAttempts: Int = 5, _ body: @escaping @Sendable (PGConnection) throws -> T
    ) async throws -> T {
        var attempt = 1
        while true {
            do {
                return try await withConnection { conn in
                    try conn.execute("BEGIN ISOLATION LEVEL \(isolation.rawValue)")
                    do {
                        let value = try body(conn)
                        try conn.execute("COMMIT")
                        return value
                    } catch {
                        if conn.isOpen { _ = try? conn.execute("ROLLBACK") }
                        throw error
                    }
                }
            } catch let error as PGError where error.isRetryable && attempt < maxAttempts {
                Counter(label: "spotguard_db_transaction_retries_total", dimensions: [("sqlstate", error.sqlState ?? error.code.rawValue)])
                    .increment()
                logger.debug("retrying transaction", metadata: ["db.error": "\(error)", "db.attempt": "\(attempt)"])
                let base = 0.01 * pow(2, Double(attempt - 1))
                try await Task.sleep(for: .seconds(base * Double.random(in: 0.5...1.5)))
                attempt += 1
            }
        }
    }

    /// True when a trivial query succeeds (readiness).
    public func ping() async -> Bool {
        (try? await withConnection { conn in try conn.query("SELECT 1").count == 1 }) ?? false
    }

    /// Finishes queued jobs, then closes every connection.
    public func shutdown() async {
        state.withLock { $0.stopping = true }
        for _ in 0..<configuration.poolSize { signal.signal() }
        while state.withLock({ $0.live }) > 0 {
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    private func worker() {
        let timeout = configuration.statementTimeoutMs
        let conn = PGConnection(
            settings: configuration.keywords, answerTimeoutMs: timeout > 0 ? timeout + 5_000 : 0, largeMessageBytes: configuration.largeMessageBytes)
        let release = configuration.idleRelease
        // busy pools use every connection every few seconds, so this is checked after each job too
        func releaseIfQuiet() {
            guard let at = conn.largeMessageAt, ContinuousClock.now - at >= release, state.withLock({ $0.jobs.isEmpty }) else { return }
            conn.close()
        }
        defer {
            conn.close()
            state.withLock { $0.live -= 1 }
        }
        while true {
            if signal.wait(timeout: .now() + .nanoseconds(Int(release / .nanoseconds(1)))) == .timedOut {
                releaseIfQuiet()
                continue
            }
            let job = state.withLock { s -> Job? in s.jobs.isEmpty ? nil : s.jobs.removeFirst() }
            guard let job else {
                if state.withLock({ $0.stopping && $0.jobs.isEmpty }) { return }
                continue
            }
            if !conn.isOpen {
                do {
                    try conn.open()
                } catch let error as PGError {
                    logger.warning("database connection failed", metadata: ["db.error": "\(error)"])
                    job.fail(error)
                    continue
                } catch {
                    job.fail(PGError(.connection, message: "\(error)"))
                    continue
                }
            }
            job.run(conn)
            releaseIfQuiet()
        }
    }
}
