import Crypto
import Foundation
import Hummingbird
import Logging
import NIOCore
import SpotBus
import SpotFleet
import SpotModels
import SpotRuntime
import SpotStore

/// The agent-facing API (seeds 000 and 004) and the admin bootstrap.
///
/// Agent traffic is validated, authenticated against the cached token directory, published
/// with publisher confirms, and answered 202 only after the broker confirmed; a broker that
/// cannot confirm gives 503 with `Retry-After`, never a silent drop.
struct IngestController: Sendable {
    let directory: ClientDirectory
    let publisher: BusPublisher
    let configuration: IngestConfiguration
    let rejections: RejectionMonitor
    let replicas: ReplicaRelay
    let mailbox: CommandMailbox
    let store: PostgresStore
    let stateTransfers: Admission
    let stateChunks: Admission

    func addRoutes(to router: Router<ServiceRequestContext>) {
        router.get("/openapi.yaml") { _, _ in OpenAPIDocument.response(Bundle.module) }
        router.post("/api/admin/clients", use: createClient)
        router.post("/api/agents/register", use: register)
        // the reports, shed past their limit; interruption calls, commands and state are not
        let reports = router.group().add(
            middleware: AdmissionMiddleware(Admission(limit: configuration.reportConcurrency, maxWait: configuration.reportMaxWait)))
        reports.post("/api/agents/:agentId/heartbeat", use: heartbeat)
        reports.post("/api/agents/:agentId/pricing-report", use: pricingReport)
        reports.post("/api/pricing/submit", use: submitPricing)
        reports.post("/api/agents/:agentId/switch-report", use: switchReport)
        addReplicaRoutes(to: router)
        addEnrollmentRoutes(to: router)
        addStateRoutes(to: router)
    }

    // MARK: admin

    struct CreateClientRequest: Decodable {
        var name: String?
        var email: String?
    }

    struct CreatedClient: Encodable {
        var clientId: UUID
        var name: String
        var token: String
    }

    @Sendable func createClient(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        try APIError.requireAdmin(request.headers[.authorization], token: configuration.adminToken)
        let body = try await decode(CreateClientRequest.self, from: request)
        let (name, email) = try validate { try $0.client(name: body.name, email: body.email) }
        let (id, token) = try await directory.createClient(name: name, email: email)
        return try json(CreatedClient(clientId: id, name: name, token: token.text), status: .created)
    }

    // MARK: agents

    @Sendable func register(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let principal = try await directory.principal(request.headers[.authorization])
        let client = principal.clientId
        let body = try await decode(RegisterRequest.self, from: request, client: client)
        let registration = try validate(client: client) { try body.validated($0) }
        let agent = try await directory.register(client: client, registration, as: principal)
        return try json(agent, status: agent.created ? .created : .ok)
    }

    struct Accepted: Encodable, WireWritable {
        var accepted = true
        var id: UUID
        var count: Int?

        func write(_ w: inout WireWriter) {
            w.beginObject()
            w.key("accepted")
            w.bool(accepted)
            w.member("count", ifPresent: count) { $0.integer($1) }
            w.key("id")
            w.uuid(id)
            w.endObject()
        }
    }

    @Sendable func heartbeat(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (client, agent) = try await authenticateAgent(request, context)
        let body = try await decode(HeartbeatRequest.self, from: request, client: client)
        let fact = try validate(client: client) { try body.validated($0, clientId: client, agentId: agent) }
        try await publish(RoutingKey.heartbeatReceived, id: fact.heartbeatId, fact)
        return try json(Accepted(id: fact.heartbeatId), status: .accepted)
    }

    @Sendable func pricingReport(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (client, agent) = try await authenticateAgent(request, context)
        let body = try await decode(PricingReportRequest.self, from: request, client: client)
        let report = try validate(client: client) { try body.validated($0, clientId: client, agentId: agent) }
        try await publish(PricingReported.report(report), id: report.reportId)
        return try json(Accepted(id: report.reportId, count: report.pools.count), status: .accepted)
    }

    @Sendable func switchReport(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (client, agent) = try await authenticateAgent(request, context)
        let body = try await decode(SwitchReportRequest.self, from: request, client: client)
        let report = try validate(client: client) { try body.validated($0, clientId: client, agentId: agent) }
        try await publish(RoutingKey.switchReported, id: report.reportId, report)
        return try json(Accepted(id: report.reportId), status: .accepted)
    }

    @Sendable func submitPricing(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let principal = try await directory.principal(request.headers[.authorization])
        let client = principal.clientId
        let body = try await decode(PricingSubmitRequest.self, from: request, client: client)
        let submission = try validate(client: client) { try body.validated($0, clientId: client) }
        try Self.requireScope(principal, for: submission.sourceAgentId)
        try await directory.requireAgent(submission.sourceAgentId, of: client)
        try await publish(PricingReported.submission(submission), id: submission.submissionId)
        return try json(Accepted(id: submission.submissionId), status: .accepted)
    }

    // MARK: helpers

    func authenticateAgent(_ request: Request, _ context: ServiceRequestContext, operatorOnly: Bool = false) async throws -> (UUID, UUID) {
        let (principal, agent) = try await authorizeAgent(request, context, operatorOnly: operatorOnly)
        return (principal.clientId, agent)
    }

    /// The caller and the agent the path names: a client token may act for any agent of its
    /// client; an agent token only for its own agent, and not on `operatorOnly` routes (what
    /// people decide: switches, modes, manual replicas, promotions, deletions).
    func authorizeAgent(_ request: Request, _ context: ServiceRequestContext, operatorOnly: Bool = false) async throws -> (Principal, UUID) {
        let principal = try await directory.principal(request.headers[.authorization])
        guard let raw = context.parameters.get("agentId"), let agent = UUID(uuidString: raw) else { throw APIError.agentNotFound }
        try Self.requireScope(principal, for: agent)
        if operatorOnly && principal.isAgentToken {
            throw APIError(.forbidden, code: "token_scope", message: "an agent token cannot do this; use a client token")
        }
        try await directory.requireAgent(agent, of: principal.clientId)
        return (principal, agent)
    }

    static func requireScope(_ principal: Principal, for agent: UUID) throws {
        guard !principal.isAgentToken || principal.agentId == agent else {
            throw APIError(.forbidden, code: "token_scope", message: "this agent token is for another agent")
        }
    }

    /// Runs the checks; a rejection of an authenticated client's data counts towards its
    /// rejected-burst alert.
    func validate<T>(client: UUID? = nil, _ body: (FieldChecker) throws -> T) throws -> T {
        do {
            return try body(FieldChecker(limits: configuration.limits, now: Date()))
        } catch let e as ValidationError {
            if let client { rejections.reject(client: client, reason: e.code) }
            throw APIError.validation(e)
        }
    }

    private func decode<T: Decodable>(_ type: T.Type, from request: Request, client: UUID? = nil) async throws -> T {
        do {
            return try await decodeBody(type, from: request)
        } catch let e as APIError {
            if let client { rejections.reject(client: client, reason: e.code) }
            throw e
        }
    }

    private func decodeBody<T: Decodable>(_ type: T.Type, from request: Request) async throws -> T {
        try await HTTPJSON.decode(type, from: request, limit: configuration.maxBodyBytes)
    }

    /// The JSON body (nil when empty), at most `maxBodyBytes`.
    func jsonBody(_ request: Request) async throws -> Data? {
        try await HTTPJSON.body(of: request, limit: configuration.maxBodyBytes)
    }

    private func publish<P: VersionedPayload>(_ payload: P, id: UUID) async throws {
        try await publish(payload.routingKey, id: id, payload)
    }

    private func publish<P: Codable & Sendable>(_ routingKey: String, id: UUID, _ payload: P) async throws {
        let envelope = Envelope(id: id, type: routingKey, producer: "spotguard-ingest", payload: payload)
        do {
            try await publisher.publish(envelope)
        } catch let e as BusError {
            throw APIError.publishFailed(e)
        }
    }

    func json<T: Encodable>(_ value: T, status: HTTPResponse.Status) throws -> Response {
        try HTTPJSON.response(value, status: status)
    }
}
