import Foundation
import SEFApp
import SpotRuntime
import SpotModels
import SpotStore

/// Prints a command's result as one JSON line.
func printJSON<T: Encodable>(_ value: T) throws {
    print(String(decoding: try WireJSON.encoder().encode(value), as: UTF8.self))
}

await ServiceCommand.main(
    executable: "spotguard-sef", consumes: "spotguard.sef",
    serve: { _, env, logger in
        let configuration = try SEFConfiguration(env: env)
        let amqp = try env.amqp()
        try await ServiceCommand.serve(env: env, applicationName: "spotguard-sef", poolSize: configuration.concurrency + 2, logger: logger) { store in
            let sef = SEFService(configuration: configuration, store: store, amqp: amqp, logger: logger)
            return [sef.application(configuration: configuration, store: store, logger: logger)]
        }
    },
    extra: [
        "gap-scan": (
            usage: "scan every pool for gaps now and fill them (claims pools like the service does)",
            run: { _, env, logger in
                try await SEFCommand.run(env: env, logger: logger) { m in try printJSON(try await m.scanDuePools(force: true)) }
            }
        ),
        "refresh-ml": (
            usage: "rebuild the ML dataset now",
            run: { _, env, logger in
                try await SEFCommand.run(env: env, logger: logger) { m in try printJSON(try await m.refreshMLDataset(force: true)) }
            }
        ),
        "check-quality": (
            usage: "run the data-quality check now (interpolated share per agent)",
            run: { _, env, logger in
                try await SEFCommand.run(env: env, logger: logger) { m in try printJSON(try await m.checkQuality(force: true)) }
            }
        ),
        "review": (
            usage: "list what needs review (one JSON object per line): averaged dual-source prices, unfilled and open gaps",
            run: { _, env, logger in
                try await ServiceCommand.withStore(env: env, applicationName: "spotguard-sef-review", logger: logger) { store in
                    for item in try await SEFCommand.review(store) { try printJSON(item) }
                }
            }
        ),
    ])
