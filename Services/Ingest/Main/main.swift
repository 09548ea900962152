import Foundation
import Hummingbird
import IngestApp
import SpotBus
import SpotFleet
import SpotRuntime
import SpotStore

await ServiceCommand.main(
    executable: "spotguard-ingest",
    serve: { _, env, logger in
        let configuration = try IngestConfiguration(env: env)
        let amqp = try env.amqp()
        try await ServiceCommand.serve(env: env, applicationName: "spotguard-ingest", poolSize: 8, logger: logger) { store in
            [buildIngestApplication(configuration: configuration, store: store, amqp: amqp, logger: logger)]
        }
    },
    extra: [
        "create-client": (
            usage: "--name NAME [--email EMAIL]: create a client and print its token once",
            run: { args, env, logger in
                func option(_ name: String) -> String? { ServiceCommand.option(name, in: args) }
                guard let name = option("--name"), !name.isEmpty, name.count <= 255 else {
                    throw ConfigurationError(variable: "--name", problem: "is required (1 to 255 characters)")
                }
                try await ServiceCommand.withStore(env: env, applicationName: "spotguard-admin", logger: logger) { store in
                    let directory = ClientDirectory(store: store, ttl: .seconds(0))
                    let (id, token) = try await directory.createClient(name: name, email: option("--email"))
                    let out = ["client_id": id.uuidString.lowercased(), "name": name, "token": token.text]
                    let data = try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys])
                    print(String(decoding: data, as: UTF8.self))
                }
            }
        )
    ])
