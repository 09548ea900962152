import ArgumentParser
import ConsoleApp
import Logging
import SpotCLI
import SpotRuntime

/// `spotguard-console`: the dashboard and the client API.
@main
struct Console: AsyncParsableCommand {
    static let configuration = CommandConfiguration.spotguard(
        "spotguard-console", abstract: "The dashboard and the client API.", subcommands: [Serve.self, Migrate.self], defaultSubcommand: Serve.self)

    struct Serve: ServiceSubcommand {
        static let configuration = CommandConfiguration.serve
        func run(env: EnvironmentReader, logger: Logger) async throws {
            let configuration = try ConsoleConfiguration(env: env)
            let amqp = try env.amqp()
            let templates = try await loadConsoleTemplates()
            try await ServiceCommand.serve(env: env, applicationName: "spotguard-console", poolSize: 4, logger: logger) { store in
                [buildConsoleApplication(configuration: configuration, templates: templates, store: store, amqp: amqp, logger: logger)]
            }
        }
    }
}
