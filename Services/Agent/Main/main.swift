import AgentApp
import Foundation
import Logging
import ServiceLifecycle
import SpotCloud
import UnixSignals

/// `spotguard-agent run`: the agent on this instance until SIGTERM or SIGINT.
struct AgentService: Service {
    let agent: Agent

    func run() async throws {
        try await withGracefulShutdownHandler {
            try await cancelWhenGracefulShutdown {
                try await agent.start()
                await agent.run()
            }
        } onGracefulShutdown: {
            // A request cancelled mid-response can hang in Foundation's URLSession on Linux
            // (swift-corelibs-foundation#5412); everything unsent is in the spool, so after five
            // seconds the agent leaves anyway.
            Thread {
                Thread.sleep(forTimeInterval: 5)
                exit(0)
            }.start()
        }
    }
}

let arguments = Array(CommandLine.arguments.dropFirst())
guard arguments.first == "run" else {
    FileHandle.standardError.write(Data("usage: spotguard-agent run   (settings: SPOTGUARD_AGENT_* or SPOTGUARD_AGENT_CONFIG; AWS_REGION, AWS_ENDPOINT_URL_EC2, AWS_EC2_METADATA_SERVICE_ENDPOINT)\n".utf8))
    exit(2)
}
LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = Logger.Level(rawValue: ProcessInfo.processInfo.environment["SPOTGUARD_LOG_LEVEL"] ?? "info") ?? .info
    return handler
}
let logger = Logger(label: "spotguard-agent")
do {
    let env = ProcessInfo.processInfo.environment
    let configuration = try AgentConfiguration(env: env)
    let imds = IMDSClient(env: env)
    // the region comes from IMDS when the environment does not name it
    var region = env["AWS_REGION"] ?? env["AWS_DEFAULT_REGION"]
    if region == nil { region = try await imds.region() }
    let ec2 = try EC2Client.fromEnvironment(env, region: region, imds: imds)
    let api = AgentAPI(server: configuration.server, token: configuration.token)
    let spool = try Spool(directory: configuration.spoolDirectory, api: api, logger: logger)
    let agent = Agent(configuration: configuration, imds: imds, ec2: ec2, api: api, spool: spool, logger: logger)
    let group = ServiceGroup(configuration: .init(services: [AgentService(agent: agent)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
    try await group.run()
} catch let e as AgentConfiguration.Invalid {
    FileHandle.standardError.write(Data("spotguard-agent: configuration error: \(e)\n".utf8))
    exit(2)
} catch {
    FileHandle.standardError.write(Data("spotguard-agent: \(error)\n".utf8))
    exit(1)
}
