import NotifierApp
import SpotRuntime

await ServiceCommand.main(
    executable: "spotguard-notifier", consumes: "spotguard.notifier",
    serve: { _, env, logger in
        let configuration = try NotifierConfiguration(env: env)
        let amqp = try env.amqp()
        try await ServiceCommand.serve(env: env, applicationName: "spotguard-notifier", poolSize: 4, logger: logger) { store in
            let notifier = NotifierService(configuration: configuration, store: store, amqp: amqp, logger: logger)
            return [notifier.application(configuration: configuration, store: store, logger: logger)]
        }
    })
