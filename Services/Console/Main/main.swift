import ConsoleApp
import SpotRuntime

await ServiceCommand.main(
    executable: "spotguard-console",
    serve: { _, env, logger in
        let configuration = try ConsoleConfiguration(env: env)
        let amqp = try env.amqp()
        let templates = try await loadConsoleTemplates()
        try await ServiceCommand.serve(env: env, applicationName: "spotguard-console", poolSize: 4, logger: logger) { store in
            [buildConsoleApplication(configuration: configuration, templates: templates, store: store, amqp: amqp, logger: logger)]
        }
    })
