import Foundation
import Logging
import SpotBus
import SpotRuntime
import SpotStore
import Synchronization

/// The `ha` run's engines: for the run, the stack's broker as three RabbitMQ nodes (the
/// services' URL naming the node that leads the SEF's queue first, so every connection is on
/// the node that dies) and its database as a primary and a synchronous standby under Patroni;
/// one node of each again afterwards.
struct HAEngines {
    let env: EnvironmentReader
    let store: PostgresStore
    let publisher: BusPublisher

    static func with<T>(
        _ options: ChaosBench.Options, env base: EnvironmentReader, logger: Logger, _ body: (HAEngines) async throws -> T
    ) async throws -> T {
        func stack(_ command: String, _ arguments: String...) async throws -> String {
            try await ChaosBench.stackOutput(options, command, arguments)
        }
        let engines: HAEngines
        do {
            _ = try await stack("broker-cluster")
            let database = try await stack("db-cluster").split(separator: "\n").last.map(String.init) ?? ""
            let leader = try await stack("broker-leader", "spotguard.sef")
            var values = base.values
            values["SPOTGUARD_DATABASE_URL"] = database
            values["SPOTGUARD_AMQP_URL"] = try await stack("broker-url", leader)
            let env = EnvironmentReader(values)
            let (store, publisher) = try ChaosBench.connect(env, logger: logger)
            engines = HAEngines(env: env, store: store, publisher: publisher)
        } catch {
            _ = try? await stack("db-cluster-remove")
            _ = try? await stack("broker-cluster-stop")
            throw error
        }
        // from here on the engines' own shutdown also takes the stack back to one node of each
        do {
            try await Migrator.migrate(engines.store, migrations: try Migration.bundled(), logger: logger)
            let result = try await body(engines)
            await engines.shutdown(options)
            return result
        } catch {
            await engines.shutdown(options)
            throw error
        }
    }

    private func shutdown(_ options: ChaosBench.Options) async {
        await publisher.shutdown()
        await store.shutdown()
        _ = try? await ChaosBench.stackOutput(options, "db-cluster-remove")
        _ = try? await ChaosBench.stackOutput(options, "broker-cluster-stop")
    }
}

/// The run's rows in `pricing_submissions_raw`, counted every 100 ms through the run beside the
/// rows owed by then (those of every message answered 202), so the time the SEF had work and
/// committed nothing can be read off for each fault (a count that fails while the database is
/// away is skipped).
final class CommitWatch: Sendable {
    let store: PostgresStore
    let family: String
    let tally: ChaosTally
    let load: ChaosLoad
    private let state = Mutex((samples: [(at: Double, rows: Int, owed: Int)](), stopped: false))
    /// The rows of the messages accepted so far (messages may share rows), and those messages.
    private let owing = Mutex((rows: Set<UUID>(), messages: Set<Int>()))

    init(store: PostgresStore, family: String, tally: ChaosTally, load: ChaosLoad) {
        self.store = store
        self.family = family
        self.tally = tally
        self.load = load
    }

    private func owed() -> Int {
        let accepted = tally.accepted
        return owing.withLock { o in
            for m in accepted.subtracting(o.messages) { o.rows.formUnion(load.messages[m].rows) }
            o.messages = accepted
            return o.rows.count
        }
    }

    func run() async {
        while !state.withLock({ $0.stopped }) {
            let owed = owed()
            if let rows = try? await ChaosBench.count(store, family: family) {
                let at = tally.now()
                state.withLock { $0.samples.append((at, rows, owed)) }
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    func stop() { state.withLock { $0.stopped = true } }

    /// The longest time in which rows were owed and none was committed (from the later of the
    /// last commit and the moment rows became owed, to the next commit), among those that
    /// overlap `start...end`; 0 when there was none.
    func longestStall(from start: Double, to end: Double) -> Double {
        let samples = state.withLock { $0.samples }
        var longest = 0.0
        var since: Double?
        var rows = samples.first?.rows ?? 0
        for s in samples {
            if s.rows > rows, let from = since, s.at >= start, from <= end { longest = max(longest, s.at - from) }
            if s.rows > rows || s.rows >= s.owed { since = nil }
            if since == nil, s.rows < s.owed { since = s.at }
            rows = max(rows, s.rows)
        }
        return longest
    }
}

extension ChaosBench {
    /// The bench's own connections to the engines `env` names: two to the database, and a
    /// publisher, started.
    static func connect(_ env: EnvironmentReader, logger: Logger) throws -> (PostgresStore, BusPublisher) {
        var config = try env.postgres(applicationName: "spotguard-chaos")
        config.poolSize = 2
        let publisher = BusPublisher(endpoint: try env.amqp(), logger: logger)
        publisher.start()
        return (PostgresStore(configuration: config, logger: logger), publisher)
    }
}
