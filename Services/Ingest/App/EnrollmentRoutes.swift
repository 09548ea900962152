import Foundation
import Hummingbird
import SpotFleet
import SpotIdentity
import SpotModels
import SpotRuntime

/// Per-instance credentials on the agent API: an instance enrolls with its signed identity
/// document and an enrollment secret and receives a token for one agent; an agent asks for a
/// single-use secret for an instance it is about to launch (a replica, a switch target), so no
/// client token ever goes into user data; an agent rotates its token.
extension IngestController {
    /// A secret an agent asks for its next launch: one instance, within the hour.
    static let launchSecretLifetime: TimeInterval = 3600

    func addEnrollmentRoutes(to router: Router<ServiceRequestContext>) {
        router.post("/api/agents/enroll", use: enroll)
        router.post("/api/agents/:agentId/enrollments", use: launchSecret)
        router.post("/api/agents/:agentId/token", use: rotateToken)
    }

    struct EnrollRequest: Decodable {
        var enrollmentSecret: String?
        /// IMDS `/latest/dynamic/instance-identity/document`, as served.
        var document: String?
        /// IMDS `/latest/dynamic/instance-identity/rsa2048` (base64 PKCS7).
        var pkcs7: String?
    }

    /// Without certificates no identity can be checked: enrollment is refused, never trusted blindly.
    static let notConfigured = APIError(
        .serviceUnavailable, code: "enrollment_not_configured",
        message: "this server has no identity certificates (SPOTGUARD_INGEST_IDENTITY_CERTIFICATES); use a client token")

    @Sendable func enroll(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        guard let verifier = configuration.identity else { throw Self.notConfigured }
        let body = try await HTTPJSON.decode(EnrollRequest.self, from: request, limit: configuration.maxBodyBytes)
        let (secret, document, pkcs7) = try validate { check in
            (
                try check.required(check.text(body.enrollmentSecret, "enrollment_secret", maxLength: 200), "enrollment_secret"),
                try Self.multiline(body.document, "document", maxLength: 8192),
                try Self.multiline(body.pkcs7, "pkcs7", maxLength: 16384)
            )
        }
        let identity: InstanceIdentity
        do {
            identity = try verifier.verify(document: Array(document.utf8), pkcs7: pkcs7)
        } catch let e as IdentityError {
            throw APIError(.unauthorized, code: e.code, message: e.description, field: "pkcs7")
        }
        let enrollment = try await directory.enroll(
            secret: secret, instanceId: identity.instanceId, accountId: identity.accountId, region: identity.region)
        return try json(enrollment, status: .created)
    }

    /// A required field that is a document as IMDS serves it (its line breaks kept).
    static func multiline(_ value: String?, _ field: String, maxLength: Int) throws -> String {
        guard let value, !value.isEmpty else { throw ValidationError.missing(field) }
        guard value.utf8.count <= maxLength else {
            throw ValidationError(code: "string_too_long", field: field, message: "\(field) is longer than \(maxLength) bytes")
        }
        return value
    }

    /// `POST /api/agents/{id}/enrollments`: a single-use secret that enrolls one instance as this
    /// agent within the hour, limited to the caller's AWS account when the caller enrolled.
    @Sendable func launchSecret(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (principal, agent) = try await authorizeAgent(request, context)
        guard configuration.identity != nil else { throw Self.notConfigured }
        let account = try await directory.enrolledAccount(of: principal)
        let secret = try await directory.createEnrollmentSecret(
            client: principal.clientId, agent: agent, account: account, uses: 1, lifetime: Self.launchSecretLifetime,
            createdBy: principal.isAgentToken ? "agent \(agent.uuidString.lowercased())" : "client token")
        return try json(secret, status: .created)
    }

    /// `POST /api/agents/{id}/token`: a new agent token; the one presented works 5 more minutes.
    @Sendable func rotateToken(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (principal, _) = try await authorizeAgent(request, context)
        return try json(try await directory.rotateAgentToken(principal), status: .created)
    }
}
