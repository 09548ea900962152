import ArgumentParser
import Logging
import ReplicaApp
import SpotCLI
import SpotRuntime

/// `spotguard-replicas`: standby replicas and failover.
@main
struct Replicas: AsyncParsableCommand {
    static let configuration = CommandConfiguration.spotguard(
        "spotguard-replicas", abstract: "The replica coordinator: standby replicas, failover on a termination notice.",
        subcommands: [Serve.self, Migrate.self, DeadLettersCommand<Queue>.self, Reconcile.self], defaultSubcommand: Serve.self)

    enum Queue: ConsumingService { static let queue = "spotguard.replicas" }

    struct Serve: ServiceSubcommand {
        static let configuration = CommandConfiguration.serve
        func run(env: EnvironmentReader, logger: Logger) async throws {
            let configuration = try ReplicaConfiguration(env: env)
            let amqp = try env.amqp()
            try await ServiceCommand.serve(
                env: env, applicationName: "spotguard-replicas", poolSize: configuration.concurrency + 3,
                idleInTransactionTimeout: configuration.leaderLease, logger: logger
            ) { store in
                let service = ReplicaService(configuration: configuration, store: store, amqp: amqp, logger: logger)
                return [service.application(configuration: configuration, store: store, logger: logger)]
            }
        }
    }

    struct Reconcile: ServiceSubcommand {
        static let configuration = CommandConfiguration(
            abstract: "Run one reconcile pass now (manual replicas, expiries, stuck replicas, offline agents).")
        func run(env: EnvironmentReader, logger: Logger) async throws {
            let configuration = try ReplicaConfiguration(env: env)
            try await ServiceCommand.withStore(env: env, applicationName: "spotguard-replicas-reconcile", logger: logger) { store in
                // events it writes go out through the outbox when a coordinator runs
                let coordinator = Coordinator(store: store, configuration: configuration, notify: {})
                try ServiceCommand.printJSON(try await Reconciler(coordinator: coordinator, leadership: nil, logger: logger).cycle())
            }
        }
    }
}
