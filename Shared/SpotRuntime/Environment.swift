import Foundation
import SpotBus
import SpotStore

/// A configuration variable that is missing or malformed, named exactly.
public struct ConfigurationError: Error, CustomStringConvertible {
    public var variable: String
    public var problem: String
    public var description: String { "configuration error: \(variable) \(problem)" }

    public init(variable: String, problem: String) {
        self.variable = variable
        self.problem = problem
    }
}

/// Reads `SPOTGUARD_*` settings from the process environment (or a dictionary, in tests).
/// Every accessor names the variable in its error, so a bad start says which one to fix.
public struct EnvironmentReader: Sendable {
    public let values: [String: String]

    public init(_ values: [String: String] = ProcessInfo.processInfo.environment) {
        self.values = values
    }

    public func string(_ name: String) -> String? {
        values[name].flatMap { $0.isEmpty ? nil : $0 }
    }

    public func require(_ name: String) throws -> String {
        guard let v = string(name) else { throw ConfigurationError(variable: name, problem: "is not set") }
        return v
    }

    public func int(_ name: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
        guard let raw = string(name) else { return value }
        guard let v = Int(raw), range.contains(v) else {
            throw ConfigurationError(variable: name, problem: "must be an integer in \(range.lowerBound)...\(range.upperBound), got '\(raw)'")
        }
        return v
    }

    public func secret(_ name: String, minLength: Int) throws -> String {
        let v = try require(name)
        guard v.count >= minLength else { throw ConfigurationError(variable: name, problem: "must be at least \(minLength) characters") }
        return v
    }

    /// `SPOTGUARD_DATABASE_URL` (required), `SPOTGUARD_DB_POOL_SIZE` (default 4) and
    /// `SPOTGUARD_DB_STATEMENT_TIMEOUT_MS` (default 30,000; the client waits 5 s longer for an answer).
    public func postgres(applicationName: String) throws -> PostgresConfiguration {
        let url = try require("SPOTGUARD_DATABASE_URL")
        guard var c = PostgresConfiguration(url: url) else {
            throw ConfigurationError(
                variable: "SPOTGUARD_DATABASE_URL", problem: "must look like postgresql://user@host:port[,host:port…]/database[?sslmode=…]")
        }
        c.poolSize = try int("SPOTGUARD_DB_POOL_SIZE", default: 4, range: 1...64)
        c.statementTimeoutMs = try int("SPOTGUARD_DB_STATEMENT_TIMEOUT_MS", default: c.statementTimeoutMs, range: 100...600_000)
        c.applicationName = applicationName
        return c
    }

    /// `SPOTGUARD_AMQP_URL` (required), e.g. `amqp://user:password@127.0.0.1:5672/`; a cluster's
    /// nodes comma-separated, `amqp://user:password@rabbit-1:5672,rabbit-2:5672,rabbit-3:5672/`.
    public func amqp() throws -> AMQPEndpoint {
        let url = try require("SPOTGUARD_AMQP_URL")
        guard var e = AMQPEndpoint(url: url) else {
            throw ConfigurationError(variable: "SPOTGUARD_AMQP_URL", problem: "must look like amqp://user:password@host:port[,host:port…]/vhost")
        }
        e.heartbeatSeconds = try int("SPOTGUARD_AMQP_HEARTBEAT_SECONDS", default: 30, range: 1...600)
        return e
    }
}
