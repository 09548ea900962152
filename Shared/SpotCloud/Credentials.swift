import Foundation

/// Where SigV4 credentials come from.
public protocol CredentialsSource: Sendable {
    func credentials() async throws -> AWSCredentials
}

public struct StaticCredentials: CredentialsSource {
    let value: AWSCredentials
    public init(_ value: AWSCredentials) { self.value = value }
    public func credentials() async throws -> AWSCredentials { value }
}

public struct CredentialsError: Error, CustomStringConvertible {
    public var description: String
}

/// The standard order: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (/ `AWS_SESSION_TOKEN`)
/// when set, otherwise the instance profile's temporary credentials over IMDS, fetched again
/// five minutes before they expire.
public actor DefaultCredentials: CredentialsSource {
    let environment: AWSCredentials?
    let imds: IMDSClient
    var cached: AWSCredentials?
    public static let refreshBefore: TimeInterval = 300

    public init(env: [String: String] = ProcessInfo.processInfo.environment, imds: IMDSClient) {
        if let id = env["AWS_ACCESS_KEY_ID"], let secret = env["AWS_SECRET_ACCESS_KEY"], !id.isEmpty, !secret.isEmpty {
            environment = AWSCredentials(accessKeyId: id, secretAccessKey: secret, sessionToken: env["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 })
        } else {
            environment = nil
        }
        self.imds = imds
    }

    public func credentials() async throws -> AWSCredentials {
        if let environment { return environment }
        if let cached, let expires = cached.expiration, expires.timeIntervalSinceNow > Self.refreshBefore { return cached }
        let fresh = try await imds.instanceProfileCredentials()
        cached = fresh
        return fresh
    }
}
