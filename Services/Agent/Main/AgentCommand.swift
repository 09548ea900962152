import AgentApp
import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import SpotCLI
import SpotCloud
import UnixSignals

/// `spotguard-agent run`: the agent on this instance until SIGTERM or SIGINT.
struct AgentService: Service {
    let agent: Agent

    func run() async throws {
        // a graceful shutdown cancels the loops; a long-poll in flight ends with its request
        do {
            try await cancelWhenGracefulShutdown {
                try await agent.start()
                await agent.run()
            }
        } catch is CancellationError {
            // stopped while still registering: a clean stop all the same
        }
    }
}

/// `spotguard-agent`: the agent on a customer's instance.
@main
struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration.spotguard(
        "spotguard-agent", abstract: "The SpotGuard agent on an EC2 instance: heartbeats, spot prices, interruption notices, commands.",
        discussion: """
            Settings come from SPOTGUARD_AGENT_* variables or the JSON file SPOTGUARD_AGENT_CONFIG names; AWS_REGION, \
            AWS_ENDPOINT_URL_EC2 and AWS_EC2_METADATA_SERVICE_ENDPOINT override what the instance metadata says.
            """,
        subcommands: [Run.self, Unit.self])

    struct Unit: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the agent's systemd unit (what the package installs and launched instances' user data writes).")

        func run() throws { print(UserData.unit) }
    }

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run the agent until SIGTERM or SIGINT.")

        func run() async throws {
            try await CommandLineRunner.run {
                let env = ProcessInfo.processInfo.environment
                let log = try LogOutput.settings(env, defaultLevel: .info)
                LogOutput.bootstrap(level: log.level, format: log.format)
                let logger = Logger(label: "spotguard-agent")
                do {
                    let configuration = try AgentConfiguration(env: env)
                    let imds = IMDSClient(env: env)
                    // the region comes from IMDS when the environment does not name it
                    var region = env["AWS_REGION"] ?? env["AWS_DEFAULT_REGION"]
                    if region == nil { region = try await imds.region() }
                    let ec2 = try EC2Client.fromEnvironment(env, region: region, imds: imds)
                    let api = AgentAPI(
                        server: configuration.server, token: configuration.token ?? "",
                        transport: HTTPClientTransport(timeout: HTTPClientTransport.agentTimeout, caBundle: configuration.caBundle))
                    let spool = try Spool(directory: configuration.spoolDirectory, api: api, logger: logger)
                    let agent = Agent(configuration: configuration, imds: imds, ec2: ec2, api: api, spool: spool, logger: logger)
                    let group = ServiceGroup(
                        configuration: .init(services: [AgentService(agent: agent)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
                    try await group.run()
                } catch let error as AgentConfiguration.Invalid {
                    throw UsageProblem("configuration error: \(error)")
                } catch let refused as Agent.Refused {
                    // the server refused this instance's credential or registration: restarting cannot fix it (exit 2)
                    throw UsageProblem("\(refused); fix the agent's settings (docs/agent.md)")
                } catch IMDSError.unreachable(let why) {
                    throw Unreachable(
                        "the instance metadata service does not answer (\(why)); run the agent on an EC2 instance, or set AWS_REGION and AWS_EC2_METADATA_SERVICE_ENDPOINT"
                    )
                }
            }
        }
    }
}
