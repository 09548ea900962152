import Foundation
import ReplicaApp
import SpotModels
import SpotRuntime

await ServiceCommand.main(
    executable: "spotguard-replicas", consumes: "spotguard.replicas",
    serve: { _, env, logger in
        let configuration = try ReplicaConfiguration(env: env)
        let amqp = try env.amqp()
        try await ServiceCommand.serve(
            env: env, applicationName: "spotguard-replicas", poolSize: configuration.concurrency + 3,
            idleInTransactionTimeout: configuration.leaderLease, logger: logger
        ) { store in
            let service = ReplicaService(configuration: configuration, store: store, amqp: amqp, logger: logger)
            return [service.application(configuration: configuration, store: store, logger: logger)]
        }
    },
    extra: [
        "reconcile": (
            usage: "run one reconcile pass now (manual replicas, expiries, stuck replicas, offline agents)",
            run: { _, env, logger in
                let configuration = try ReplicaConfiguration(env: env)
                try await ServiceCommand.withStore(env: env, applicationName: "spotguard-replicas-reconcile", logger: logger) { store in
                    // events it writes go out through the outbox when a coordinator runs
                    let coordinator = Coordinator(store: store, configuration: configuration, notify: {})
                    let summary = try await Reconciler(coordinator: coordinator, leadership: nil, logger: logger).cycle()
                    print(String(decoding: try WireJSON.encoder().encode(summary), as: UTF8.self))
                }
            }
        )
    ])
