import Foundation
import Logging
import SpotBus
import SpotModels
import ServiceLifecycle
import SpotStore
import UnixSignals

/// The command line every SpotGuard executable shares:
///
///     spotguard-<name> [serve]        run the service until SIGTERM/SIGINT
///     spotguard-<name> migrate        apply database migrations and exit
///     spotguard-<name> dead-letters list|replay [--id MESSAGE_ID ...]
///                                     a consuming service's dead letters (see `DeadLetters`)
///     spotguard-<name> <extra> ...    service-specific commands
///
/// Configuration errors print one line naming the variable and exit with status 2.
public enum ServiceCommand {
    public typealias Command = @Sendable (_ arguments: [String], _ env: EnvironmentReader, _ logger: Logger) async throws -> Void

    /// - Parameter consumes: the service's queue, for `dead-letters`.
    public static func main(
        executable: String, consumes queue: String? = nil, serve: @escaping Command, extra: [String: (usage: String, run: Command)] = [:]
    ) async {
        var extra = extra
        if let queue {
            extra["dead-letters"] = (
                usage: "list | replay [--id MESSAGE_ID ...]: this service's dead letters, one JSON object per line; replay sends them (or those named) back to \(queue)",
                run: { args, env, logger in try await deadLetters(args, queue: queue, env: env, logger: logger) }
            )
        }
        let args = Array(CommandLine.arguments.dropFirst())
        let name = args.first ?? "serve"
        let env = EnvironmentReader()
        do {
            Observability.bootstrap(level: try env.logLevel())
            let logger = Logger(label: executable)
            switch name {
            case "serve": try await serve(Array(args.dropFirst()), env, logger)
            case "migrate": try await migrate(env: env, logger: logger)
            case "help", "--help", "-h": printUsage(executable, extra)
            default:
                guard let command = extra[name] else {
                    printUsage(executable, extra)
                    exit(64)
                }
                try await command.run(Array(args.dropFirst()), env, logger)
            }
        } catch let error as ConfigurationError {
            FileHandle.standardError.write(Data("\(executable): \(error)\n".utf8))
            exit(2)
        } catch {
            FileHandle.standardError.write(Data("\(executable): \(error)\n".utf8))
            exit(1)
        }
    }

    /// The value that follows the option `name` (e.g. `--csv`) in a command's arguments, if any.
    public static func option(_ name: String, in args: [String]) -> String? {
        guard let i = args.firstIndex(of: name), args.index(after: i) < args.endIndex else { return nil }
        return args[args.index(after: i)]
    }

    static func deadLetters(_ args: [String], queue: String, env: EnvironmentReader, logger: Logger) async throws {
        var ids: Set<String> = []
        var rest = args.dropFirst()
        while let option = rest.popFirst() {
            guard option == "--id", let id = rest.popFirst() else {
                throw ConfigurationError(variable: option, problem: "unknown option (dead-letters list | replay [--id MESSAGE_ID ...])")
            }
            ids.insert(id)
        }
        let letters: [DeadLetters.Letter]
        switch args.first {
        case "list": letters = try await DeadLetters.list(endpoint: try env.amqp(), queue: queue, logger: logger)
        case "replay": letters = try await DeadLetters.replay(endpoint: try env.amqp(), queue: queue, ids: ids.isEmpty ? nil : ids, logger: logger)
        default: throw ConfigurationError(variable: "dead-letters", problem: "say list or replay")
        }
        for letter in letters { print(String(decoding: try WireJSON.encoder().encode(letter), as: UTF8.self)) }
    }

    /// Applies every bundled migration (safe to run from many processes at once).
    public static func migrate(env: EnvironmentReader, logger: Logger) async throws {
        try await withStore(env: env, applicationName: "spotguard-migrate", logger: logger) { store in
            let applied = try await Migrator.migrate(store, migrations: try Migration.bundled(), logger: logger)
            logger.info("database is up to date", metadata: ["db.applied": "\(applied)"])
        }
    }

    /// A one-connection store for a command that runs and exits; closed whatever happens.
    public static func withStore<T>(
        env: EnvironmentReader, applicationName: String, logger: Logger, _ body: (PostgresStore) async throws -> T
    ) async throws -> T {
        var config = try env.postgres(applicationName: applicationName)
        config.poolSize = 1
        let store = PostgresStore(configuration: config, logger: logger)
        do {
            let result = try await body(store)
            await store.shutdown()
            return result
        } catch {
            await store.shutdown()
            throw error
        }
    }

    /// Opens the service's store, runs the services `make` builds on it until SIGTERM or
    /// SIGINT, and closes the store whatever happens.
    public static func serve(
        env: EnvironmentReader, applicationName: String, poolSize: Int? = nil, idleInTransactionTimeout: Duration? = nil, logger: Logger,
        _ make: (PostgresStore) throws -> [any Service]
    ) async throws {
        var config = try env.postgres(applicationName: applicationName)
        if let poolSize { config.poolSize = poolSize }
        if let idleInTransactionTimeout { config.idleInTransactionTimeoutMs = Int(idleInTransactionTimeout / .milliseconds(1)) }
        let store = PostgresStore(configuration: config, logger: logger)
        do {
            try await run(try make(store), logger: logger)
        } catch {
            await store.shutdown()
            throw error
        }
        await store.shutdown()
    }

    /// Runs services until SIGTERM or SIGINT, then shuts them down gracefully in reverse order.
    public static func run(_ services: [any Service], logger: Logger) async throws {
        var configuration = ServiceGroupConfiguration(
            services: services.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        // below the usual orchestrator grace period (30 s) so in-flight work ends before SIGKILL
        configuration.maximumGracefulShutdownDuration = .seconds(25)
        try await ServiceGroup(configuration: configuration).run()
    }

    private static func printUsage(_ executable: String, _ extra: [String: (usage: String, run: Command)]) {
        var lines = ["usage: \(executable) [serve | migrate" + extra.keys.sorted().map { " | \($0)" }.joined() + "]"]
        lines.append("  serve      run the service (default)")
        lines.append("  migrate    apply database migrations")
        for (name, c) in extra.sorted(by: { $0.key < $1.key }) { lines.append("  \(name.padding(toLength: 10, withPad: " ", startingAt: 0)) \(c.usage)") }
        print(lines.joined(separator: "\n"))
    }
}
