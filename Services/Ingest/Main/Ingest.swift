import ArgumentParser
import Foundation
import IngestApp
import Logging
import SpotCLI
import SpotFleet
import SpotRuntime

/// `spotguard-ingest`: the agent API and the clients' tokens.
@main
struct Ingest: AsyncParsableCommand {
    static let configuration = CommandConfiguration.spotguard(
        "spotguard-ingest", abstract: "The agent API: heartbeats, prices, commands and replicas from the agents.",
        subcommands: [Serve.self, Migrate.self, CreateClient.self], defaultSubcommand: Serve.self)

    struct Serve: ServiceSubcommand {
        static let configuration = CommandConfiguration.serve
        func run(env: EnvironmentReader, logger: Logger) async throws {
            let configuration = try IngestConfiguration(env: env)
            let amqp = try env.amqp()
            try await ServiceCommand.serve(env: env, applicationName: "spotguard-ingest", poolSize: 8, logger: logger) { store in
                [buildIngestApplication(configuration: configuration, store: store, amqp: amqp, logger: logger)]
            }
        }
    }

    struct CreateClient: ServiceSubcommand {
        static let configuration = CommandConfiguration(abstract: "Create a client and print its token once.")
        @Option(help: "The client's name (1 to 255 characters).")
        var name: String
        @Option(help: "Where the client's e-mail notifications go.")
        var email: String?

        func validate() throws {
            guard !name.isEmpty, name.count <= 255 else { throw ValidationError("--name must be 1 to 255 characters") }
        }

        func run(env: EnvironmentReader, logger: Logger) async throws {
            try await ServiceCommand.withStore(env: env, applicationName: "spotguard-admin", logger: logger) { store in
                let directory = ClientDirectory(store: store, ttl: .seconds(0))
                let (id, token) = try await directory.createClient(name: name, email: email)
                let out = ["client_id": id.uuidString.lowercased(), "name": name, "token": token.text]
                let data = try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
            }
        }
    }
}
