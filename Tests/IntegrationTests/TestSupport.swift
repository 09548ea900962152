import Foundation
import Logging
import SpotBus
import SpotIdentity
import SpotRuntime
import SpotStore
import Synchronization
import Testing
import ToolSupport

/// The private stack `make test` starts (deploy/stack.sh infra test) and writes to
/// `.spotguard/test/env`; the test command exports those variables.
enum TestStack {
    static let env = EnvironmentReader()

    /// The test stack's identity key (`deploy/stack.sh`), which its ingest trusts: metadata
    /// mocks that sign with it let agents enroll.
    static func identitySigner() throws -> IdentitySigner {
        try IdentitySigner(
            keyPEM: try String(contentsOfFile: try env.require("SPOTGUARD_SIM_IDENTITY_KEY"), encoding: .utf8),
            certificatePEM: try String(contentsOfFile: try env.require("SPOTGUARD_SIM_IDENTITY_CERTIFICATE"), encoding: .utf8))
    }
    static let logger: Logger = {
        var l = Logger(label: "spotguard-tests")
        l.logLevel = .warning
        return l
    }()

    static var amqp: AMQPEndpoint {
        get throws { try env.amqp() }
    }

    static var postgres: PostgresConfiguration {
        get throws { try env.postgres(applicationName: "spotguard-tests") }
    }

    /// The folder holding the built executables (`swift build --show-bin-path`).
    static var binDir: String {
        get throws { try env.require("SPOTGUARD_BIN_DIR") }
    }

    static var repoRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// A migrated store on the test database.
    static func store(poolSize: Int = 4) async throws -> PostgresStore {
        var config = try postgres
        config.poolSize = poolSize
        let store = PostgresStore(configuration: config, logger: logger)
        try await Migrator.migrate(store, migrations: try Migration.bundled(), logger: logger)
        return store
    }

    /// The private stack the tests run against (`test` under `make test`): the folder of
    /// `SPOTGUARD_STACK_DIR`.
    static var stackName: String {
        ProcessInfo.processInfo.environment["SPOTGUARD_STACK_DIR"].map { URL(fileURLWithPath: $0).lastPathComponent } ?? "test"
    }

    /// Runs `deploy/stack.sh <command> <stack> [arguments]` (broker-stop, broker-start, broker-restart, …).
    static func stack(_ command: String, _ arguments: String...) async throws {
        _ = try await stackOutput(command, arguments)
    }

    /// `deploy/stack.sh <command> <stack> [arguments]`, its standard output trimmed.
    @discardableResult
    static func stackOutput(_ command: String, _ arguments: [String] = []) async throws -> String {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("stack-\(UUID()).txt").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        let status = try await ChildProcess(repoRoot.appendingPathComponent("deploy/stack.sh").path, [command, stackName] + arguments, output: out)
            .exitStatus()
        #expect(status == 0, "deploy/stack.sh \(command) \(stackName) exited \(status)")
        return ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Stops the broker for the duration of `body` and starts it again whatever happens.
    static func withBrokerStopped(_ body: () async throws -> Void) async throws {
        try await stack("broker-stop")
        do {
            try await body()
        } catch {
            try await stack("broker-start")
            throw error
        }
        try await stack("broker-start")
    }

    /// Polls `condition` every 50 ms until it holds or `timeout` passes; returns whether it held.
    static func eventually(timeout: Duration = .seconds(30), _ condition: () async throws -> Bool) async rethrows -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return try await condition()
    }

    /// Messages in a queue, ready or delivered and not yet acked (`deploy/stack.sh queues <stack>`).
    static func queueDepth(_ queue: String) async throws -> Int {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("queues-\(UUID()).txt").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        _ = try await ChildProcess(repoRoot.appendingPathComponent("deploy/stack.sh").path, ["queues", stackName], output: out).exitStatus()
        let line = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n").map { $0.split(whereSeparator: \.isWhitespace) }
            .first { $0.first.map(String.init) == queue }
        guard let line, line.count >= 4 else { return -1 }
        return (Int(line[2]) ?? 0) + (Int(line[3]) ?? 0)
    }

    static func uniqueName(_ prefix: String) -> String {
        "\(prefix).\(UUID().uuidString.lowercased().prefix(8))"
    }
}

/// Collects what a test consumer receives.
final class Inbox: Sendable {
    private let items = Mutex<[Delivery]>([])

    func append(_ d: Delivery) { items.withLock { $0.append(d) } }
    var all: [Delivery] { items.withLock { $0 } }
    var count: Int { items.withLock { $0.count } }
    func messageIds() -> Set<String> { Set(all.compactMap(\.messageId)) }
}

/// Remembers which numbers were seen, from concurrent code.
final class Marks: Sendable {
    private let seen = Mutex<Set<Int>>([])

    /// True the first time `n` is marked.
    func markOnce(_ n: Int) -> Bool { seen.withLock { $0.insert(n).inserted } }
}

/// Counts calls from concurrent code.
final class Counter: Sendable {
    private let value = Mutex(0)
    @discardableResult
    func increment() -> Int {
        value.withLock {
            $0 += 1; return $0
        }
    }
    var current: Int { value.withLock { $0 } }
}

/// A publisher started for a test and shut down after it.
func withPublisher<T>(topology: Topology, _ body: (BusPublisher) async throws -> T) async throws -> T {
    let publisher = BusPublisher(endpoint: try TestStack.amqp, topology: topology, confirmTimeout: .seconds(10), logger: TestStack.logger)
    publisher.start()
    let connected = await TestStack.eventually { publisher.isConnected }
    try #require(connected, "publisher did not connect to the test broker")
    do {
        let result = try await body(publisher)
        await publisher.shutdown()
        return result
    } catch {
        await publisher.shutdown()
        throw error
    }
}

/// Runs a consumer service in the background for the duration of `body`.
func withConsumer<T>(_ consumer: BusConsumer, _ body: () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await consumer.run() }
        let connected = await TestStack.eventually { consumer.isConnected }
        try #require(connected, "consumer did not connect")
        do {
            let result = try await body()
            group.cancelAll()
            return result
        } catch {
            group.cancelAll()
            throw error
        }
    }
}

/// Collects, for the duration of `body`, what is published under `bindings` (a queue of the
/// test's own).
func withInbox(_ bindings: [String], _ body: (Inbox) async throws -> Void) async throws {
    let inbox = Inbox()
    let queue = TestStack.uniqueName("spotguard.inbox-test")
    let topology = Topology.standard.adding(.init(name: queue, bindings: bindings))
    try await withPublisher(topology: topology) { publisher in
        let consumer = BusConsumer(
            endpoint: try TestStack.amqp, topology: topology, configuration: .init(queue: queue), deadLetters: publisher,
            logger: TestStack.logger
        ) { inbox.append($0) }
        try await withConsumer(consumer) { try await body(inbox) }
    }
}

/// Runs a one-shot subcommand of a SpotGuard executable against the test stack; returns its
/// exit status and its standard output's lines.
func runCommand(_ executable: String, _ arguments: [String]) async throws -> (status: Int32, lines: [String]) {
    let output = FileManager.default.temporaryDirectory.appendingPathComponent("\(executable)-\(UUID()).out").path
    defer { try? FileManager.default.removeItem(atPath: output) }
    let status = try await ChildProcess(try TestStack.binDir + "/" + executable, arguments, output: output).exitStatus()
    let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
    return (status, text.split(separator: "\n").map(String.init))
}
