import ArgumentParser
import Logging
import NotifierApp
import SpotCLI
import SpotRuntime

/// `spotguard-notifier`: notifications in the console, e-mail and signed webhooks.
@main
struct Notifier: AsyncParsableCommand {
    static let configuration = CommandConfiguration.spotguard(
        "spotguard-notifier", abstract: "Notifications: the console's list, e-mail and signed webhooks.",
        subcommands: [Serve.self, Migrate.self, DeadLettersCommand<Queue>.self], defaultSubcommand: Serve.self)

    enum Queue: ConsumingService { static let queue = "spotguard.notifier" }

    struct Serve: ServiceSubcommand {
        static let configuration = CommandConfiguration.serve
        func run(env: EnvironmentReader, logger: Logger) async throws {
            let configuration = try NotifierConfiguration(env: env)
            let amqp = try env.amqp()
            try await ServiceCommand.serve(env: env, applicationName: "spotguard-notifier", poolSize: 4, logger: logger) { store in
                let notifier = NotifierService(configuration: configuration, store: store, amqp: amqp, logger: logger)
                return [notifier.application(configuration: configuration, store: store, logger: logger)]
            }
        }
    }
}
