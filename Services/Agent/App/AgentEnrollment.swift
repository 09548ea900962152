import Foundation
import Logging
import SpotCloud
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The agent's own credentials: an agent token earned by enrolling this instance (its signed
/// identity document and an enrollment secret), kept on its disk and rotated before it expires;
/// and the single-use secret each instance it launches enrolls with, so no token travels in
/// user data.
extension Agent {
    /// The agent token saved on this instance's disk, with the instance it belongs to (an image
    /// of this instance carries the file; a copy started from it must not use it).
    struct SavedToken: Codable {
        var token: String
        var instanceId: String
        var expiresAt: Date
    }

    /// Rotate once less than this share of the token's life is left.
    static let rotateWhenLeft: TimeInterval = 15 * 86_400

    /// Settles the bearer before anything is sent: this instance's saved agent token, else an
    /// enrollment with the secret, else the configured token.
    func settleCredentials(instanceId: String) async throws {
        if let saved = loadToken(), saved.instanceId == instanceId, saved.expiresAt > api.clock.now() {
            api.use(saved.token)
            state.withLock { $0.tokenExpiresAt = saved.expiresAt }
            logger.info("using this instance's agent token", metadata: ["expires_at": "\(saved.expiresAt)"])
            return
        }
        if let secret = configuration.enrollmentSecret {
            try await enroll(secret: secret, instanceId: instanceId)
            return
        }
        guard let token = configuration.token else {
            throw Refused(description: "this instance's agent token is missing or expired and no enrollment secret is configured")
        }
        api.use(token)
    }

    private func enroll(secret: String, instanceId: String) async throws {
        struct Enroll: Encodable { var enrollmentSecret, document, pkcs7: String }
        let body = Enroll(enrollmentSecret: secret, document: try await imds.identityDocument(), pkcs7: try await imds.identitySignature())
        api.use("")
        var delay = 1.0
        while true {
            do {
                let answer = try await api.send("POST", "/api/agents/enroll", body)
                let json = answer.json()
                if answer.status == 201, let token = json["token"] as? String, let expires = (json["expires_at"] as? String).flatMap(Self.parseDate) {
                    do {
                        try saveToken(SavedToken(token: token, instanceId: instanceId, expiresAt: expires))
                    } catch {
                        // the secret is spent: work with the token, and say a restart needs a new secret
                        logger.error(
                            "the agent token could not be saved; after a restart this instance needs a new enrollment secret",
                            metadata: ["token_file": "\(configuration.tokenFile)", "error": "\(error)"])
                    }
                    api.use(token)
                    state.withLock { $0.tokenExpiresAt = expires }
                    logger.info("enrolled", metadata: ["instance_id": "\(instanceId)", "expires_at": "\(expires)"])
                    return
                }
                if answer.status == 503, answer.errorCode == "enrollment_not_configured", let token = configuration.token {
                    logger.warning("the server does not enroll instances; using the configured token")
                    api.use(token)
                    return
                }
                if (400..<500).contains(answer.status), answer.status != 408, answer.status != 429 {
                    throw Refused(description: "enrollment refused: \(answer.status) \(answer.errorCode ?? "")")
                }
                logger.warning("enrollment failed, retrying", metadata: ["status": "\(answer.status)", "error": "\(answer.errorCode ?? "")"])
            } catch let e as Refused {
                throw e
            } catch let cancelled as CancellationError {
                throw cancelled
            } catch {
                logger.warning("enrollment failed, retrying", metadata: ["error": "\(error)"])
            }
            try await Task.sleep(for: .seconds(delay))
            delay = min(60, delay * 2)
        }
    }

    /// A new agent token once less than `rotateWhenLeft` of this one's life is left (called
    /// with each heartbeat; a failure is retried on the next).
    func rotateTokenIfDue(agent: String, instanceId: String) async throws {
        guard let expires = state.withLock({ $0.tokenExpiresAt }), expires.timeIntervalSince(api.clock.now()) < Self.rotateWhenLeft else { return }
        let answer = try await api.send("POST", "/api/agents/\(agent)/token")
        let json = answer.json()
        guard answer.status == 201, let token = json["token"] as? String, let next = (json["expires_at"] as? String).flatMap(Self.parseDate) else {
            throw Refused(description: "token rotation answered \(answer.status) \(answer.errorCode ?? "")")
        }
        // saved before it is used: a crash in between leaves the old one, valid for the grace period
        try saveToken(SavedToken(token: token, instanceId: instanceId, expiresAt: next))
        api.use(token)
        state.withLock { $0.tokenExpiresAt = next }
        logger.info("agent token rotated", metadata: ["expires_at": "\(next)"])
    }

    /// What the user data of an instance this agent launches authenticates with: a single-use
    /// enrollment secret for this agent; where the server does not enroll instances (and only
    /// then), the token this agent itself uses.
    func launchCredential(agent: String) async throws -> (String, String) {
        let answer = try await api.send("POST", "/api/agents/\(agent)/enrollments")
        if answer.status == 201, let secret = answer.json()["enrollment_secret"] as? String {
            return ("SPOTGUARD_AGENT_ENROLLMENT_SECRET", secret)
        }
        if answer.status == 503, answer.errorCode == "enrollment_not_configured" {
            logger.warning("the server does not enroll instances: the launched instance's user data carries this agent's token")
            return ("SPOTGUARD_AGENT_TOKEN", api.token)
        }
        throw Refused(description: "no enrollment secret for the launch: \(answer.status) \(answer.errorCode ?? "")")
    }

    private func loadToken() -> SavedToken? {
        guard let data = FileManager.default.contents(atPath: configuration.tokenFile) else { return nil }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        decoder.dateDecodingStrategy = .iso8601
        return try? decoder.decode(SavedToken.self, from: data)
    }

    /// Written whole (a temporary file renamed over the old one), readable by the agent only.
    private func saveToken(_ saved: SavedToken) throws {
        let encoder = AgentAPI.encoder()
        let url = URL(fileURLWithPath: configuration.tokenFile)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString)")
        guard FileManager.default.createFile(atPath: temporary.path, contents: try encoder.encode(saved), attributes: [.posixPermissions: 0o600]) else {
            throw Refused(description: "cannot write \(temporary.path)")
        }
        guard rename(temporary.path, url.path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: temporary)
            throw Refused(description: "cannot replace \(url.path): \(reason)")
        }
    }

    static func parseDate(_ text: String) -> Date? {
        (try? Date(text, strategy: .iso8601)) ?? (try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
    }
}
