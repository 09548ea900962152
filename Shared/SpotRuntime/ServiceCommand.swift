import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import SpotBus
import SpotCLI
import SpotModels
import SpotStore
import UnixSignals

/// A subcommand of a SpotGuard service executable (`spotguard-<name> serve | migrate |
/// dead-letters | …`, parsed by swift-argument-parser): logging set up from the environment,
/// errors printed as one sentence with their exit status (see `CommandLineRunner`): 2 for a
/// configuration a user can fix, 1 for an unreachable database or broker and everything else.
public protocol ServiceSubcommand: AsyncParsableCommand {
    func run(env: EnvironmentReader, logger: Logger) async throws
}

extension ServiceSubcommand {
    public func run() async throws {
        try await CommandLineRunner.run {
            let env = EnvironmentReader()
            OpenFiles.raiseToHardLimit()
            let log = try LogOutput.settings(env.values, defaultLevel: .info)
            Observability.bootstrap(log: log.level, format: log.format)
            do {
                try await run(env: env, logger: Logger(label: CommandLineRunner.executable))
            } catch {
                throw ServiceCommand.userFacing(error)
            }
        }
    }
}

extension CommandConfiguration {
    /// A service's `serve` subcommand, its executable's default.
    public static let serve = CommandConfiguration(commandName: "serve", abstract: "Run the service until SIGTERM or SIGINT (the default).")
}

extension ConfigurationError: UserFacingError {
    public var sentence: String { description }
    public var exitStatus: Int32 { 2 }
}

/// `migrate`: applies every bundled migration (safe to run from many processes at once).
public struct Migrate: ServiceSubcommand {
    public static let configuration = CommandConfiguration(abstract: "Apply database migrations and exit.")
    public init() {}
    public func run(env: EnvironmentReader, logger: Logger) async throws { try await ServiceCommand.migrate(env: env, logger: logger) }
}

/// The queue a consuming service reads, for its `dead-letters` subcommand.
public protocol ConsumingService: Sendable {
    static var queue: String { get }
}

/// `dead-letters list | replay [--id MESSAGE_ID ...]`: a consuming service's dead letters (see
/// `DeadLetters`), one JSON object per line.
public struct DeadLettersCommand<Service: ConsumingService>: ServiceSubcommand {
    public static var configuration: CommandConfiguration {
        CommandConfiguration(
            commandName: "dead-letters",
            abstract: "List this service's dead letters (one JSON object per line), or replay them to \(Service.queue).")
    }
    public enum Action: String, ExpressibleByArgument, CaseIterable, Sendable { case list, replay }

    @Argument(help: "list, or replay (all, or those named with --id)")
    var action: Action
    @Option(name: .customLong("id"), help: "A message to replay (repeatable).")
    var ids: [String] = []

    public init() {}

    public func run(env: EnvironmentReader, logger: Logger) async throws {
        let letters: [DeadLetters.Letter]
        switch action {
        case .list: letters = try await DeadLetters.list(endpoint: try env.amqp(), queue: Service.queue, logger: logger)
        case .replay:
            letters = try await DeadLetters.replay(endpoint: try env.amqp(), queue: Service.queue, ids: ids.isEmpty ? nil : Set(ids), logger: logger)
        }
        for letter in letters { try ServiceCommand.printJSON(letter) }
    }
}

/// What the service executables share around their subcommands: the store, the service group.
public enum ServiceCommand {
    /// Prints a command's result as one JSON line (the wire dialect).
    public static func printJSON<T: Encodable>(_ value: T) throws {
        print(String(decoding: try WireJSON.encoder().encode(value), as: UTF8.self))
    }

    /// An unreachable database or broker as one sentence with the fix; other errors unchanged.
    static func userFacing(_ error: any Error) -> any Error {
        if let error = error as? PGError, error.isOutage {
            let reason = error.message.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
            return Unreachable("cannot reach PostgreSQL (\(reason)); start it (make up) or correct SPOTGUARD_DATABASE_URL")
        }
        if let error = error as? BusError, error.code == .notConnected {
            return Unreachable("cannot reach RabbitMQ (\(error)); start it (make up) or correct SPOTGUARD_AMQP_URL")
        }
        return error
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

    /// Runs services (and the heap trim) until SIGTERM or SIGINT, then shuts them down
    /// gracefully in reverse order.
    public static func run(_ services: [any Service], logger: Logger) async throws {
        var configuration = ServiceGroupConfiguration(
            services: ([HeapTrim()] + services).map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        // below the usual orchestrator grace period (30 s) so in-flight work ends before SIGKILL
        configuration.maximumGracefulShutdownDuration = .seconds(25)
        try await ServiceGroup(configuration: configuration).run()
    }
}
