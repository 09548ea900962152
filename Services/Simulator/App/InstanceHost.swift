import Foundation
import IMDSMock
import Logging
import ServiceLifecycle
import SpotIdentity
import Synchronization

/// What makes a simulated instance a machine: its own metadata service on a loopback port and,
/// once booted, the agent its user data installs, supervised (the real `spotguard-agent`), with
/// the instance's folder as its disk.
final class InstanceHost: Sendable {
    let imds: IMDSMock
    let port: Int
    private let group: ServiceGroup
    private let server: Task<Void, Never>
    private let process = Mutex<Process?>(nil)
    private let stopping = Atomic<Bool>(false)

    private init(imds: IMDSMock, port: Int, group: ServiceGroup, server: Task<Void, Never>) {
        self.imds = imds
        self.port = port
        self.group = group
        self.server = server
    }

    /// Starts the metadata service of an instance.
    static func start(_ identity: IMDSMock.Identity, signer: IdentitySigner?) async throws -> InstanceHost {
        let imds = IMDSMock(identity: identity, signer: signer)
        let (started, signal) = AsyncStream.makeStream(of: Int.self)
        let app = imds.application(onRunning: { signal.yield($0) })
        var logger = Logger(label: "spotguard.sim.imds")
        logger.logLevel = .critical
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        let server = Task<Void, Never> { try? await group.run() }
        var port = 0
        for await p in started {
            port = p
            break
        }
        guard port > 0 else { throw SimError.internal("the metadata service of \(identity.instanceId) did not start") }
        return InstanceHost(imds: imds, port: port, group: group, server: server)
    }

    var endpoint: String { "http://127.0.0.1:\(port)" }

    /// Boots as an instance whose user data installed the agent's systemd unit (`UserData`):
    /// the agent runs with the unit's settings over the machine's `environment`, in `disk`,
    /// output appended to `disk/console.log`, and is started again 2 s after it exits
    /// (`Restart=always`, `RestartSec=2`) until the instance shuts down. The settings are also
    /// written where the script writes them, `disk/agent.env` under `umask 077` (mode 0600).
    func boot(agent: String, settings: [String: String], environment: [String: String], disk: URL) throws {
        let env = disk.appendingPathComponent("agent.env")
        let lines = settings.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)\n" }.joined()
        guard FileManager.default.createFile(atPath: env.path, contents: Data(lines.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw SimError.internal("could not write \(env.path)")
        }
        let log = disk.appendingPathComponent("console.log")
        if !FileManager.default.fileExists(atPath: log.path) { _ = FileManager.default.createFile(atPath: log.path, contents: nil) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: agent)
        p.arguments = ["run"]
        p.environment = environment.merging(settings) { $1 }
        p.currentDirectoryURL = disk
        let output = try FileHandle(forWritingTo: log)
        output.seekToEndOfFile()
        p.standardOutput = output
        p.standardError = output
        p.standardInput = FileHandle.nullDevice
        p.terminationHandler = { [weak self] _ in
            guard let self, !self.stopping.load(ordering: .relaxed) else { return }
            Task {
                try? await Task.sleep(for: .seconds(2))
                guard !self.stopping.load(ordering: .relaxed) else { return }
                try? self.boot(agent: agent, settings: settings, environment: environment, disk: disk)
            }
        }
        try p.run()
        try? output.close()
        process.withLock { $0 = p }
    }

    var isRunning: Bool { process.withLock { $0?.isRunning ?? false } }

    /// The instance goes away: SIGTERM (the OS shutting down), SIGKILL after `grace`, then its
    /// metadata service stops.
    func shutdown(grace: Duration = .seconds(2)) async {
        stopping.store(true, ordering: .relaxed)
        if let p = process.withLock({ $0 }), p.isRunning {
            kill(p.processIdentifier, SIGTERM)
            let deadline = ContinuousClock.now + grace
            while p.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(50)) }
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
            for _ in 0..<100 where p.isRunning { try? await Task.sleep(for: .milliseconds(20)) }
        }
        await group.triggerGracefulShutdown()
        await server.value
    }
}

enum SimError: Error, CustomStringConvertible {
    case `internal`(String)
    case product(String)

    var description: String {
        switch self {
        case .internal(let s): "simulator: \(s)"
        case .product(let s): "SpotGuard API: \(s)"
        }
    }
}
