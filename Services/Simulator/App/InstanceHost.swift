import Foundation
import IMDSMock
import Logging
import ServiceLifecycle
import Synchronization

/// What makes a simulated instance a machine: its own metadata service on a loopback port and,
/// once booted, its user data running as a process (the real `spotguard-agent`) with the
/// instance's folder as its disk.
final class InstanceHost: Sendable {
    let imds: IMDSMock
    let port: Int
    private let group: ServiceGroup
    private let server: Task<Void, Never>
    private let process = Mutex<Process?>(nil)

    private init(imds: IMDSMock, port: Int, group: ServiceGroup, server: Task<Void, Never>) {
        self.imds = imds
        self.port = port
        self.group = group
        self.server = server
    }

    /// Starts the metadata service of an instance.
    static func start(_ identity: IMDSMock.Identity) async throws -> InstanceHost {
        let imds = IMDSMock(identity: identity)
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

    /// Runs the user data script with `/bin/sh` in `disk`, output appended to `disk/console.log`.
    func boot(script: String, environment: [String: String], disk: URL) throws {
        let scriptFile = disk.appendingPathComponent("user-data")
        // it carries the agent's token: for its owner only
        try Data(script.utf8).writePrivately(to: scriptFile)
        let log = disk.appendingPathComponent("console.log")
        if !FileManager.default.fileExists(atPath: log.path) { _ = FileManager.default.createFile(atPath: log.path, contents: nil) }
        let output = try FileHandle(forWritingTo: log)
        output.seekToEndOfFile()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = [scriptFile.path]
        p.environment = environment
        p.currentDirectoryURL = disk
        p.standardOutput = output
        p.standardError = output
        p.standardInput = FileHandle.nullDevice
        try p.run()
        try? output.close()
        process.withLock { $0 = p }
    }

    var isRunning: Bool { process.withLock { $0?.isRunning ?? false } }

    /// The instance goes away: SIGTERM (the OS shutting down), SIGKILL after `grace`, then its
    /// metadata service stops.
    func shutdown(grace: Duration = .seconds(2)) async {
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
