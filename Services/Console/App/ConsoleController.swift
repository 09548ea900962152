import Crypto
import Foundation
import Hummingbird
import Mustache
import SpotBus
import SpotFleet
import SpotModels
import SpotRuntime
import SpotStore

/// The client REST API of seed 001, the admin API, the dashboard and the OpenAPI document.
/// Bearer tokens for the APIs, a session cookie for the dashboard; both end in one client id
/// that bounds every query.
public struct ConsoleController: Sendable {
    let store: PostgresStore
    let directory: ClientDirectory
    let replicas: ReplicaRelay
    let configuration: ConsoleConfiguration
    let templates: MustacheLibrary
    let sessions: Sessions
    let brokerConnected: @Sendable () -> Bool
    var fleet: FleetViews { FleetViews(store: store) }

    func addRoutes(to router: Router<ServiceRequestContext>) {
        router.get("/openapi.yaml") { _, _ in OpenAPIDocument.response(Bundle.module) }
        // the bus contract (docs/asyncapi.yaml) for integrators
        router.get("/asyncapi.yaml") { _, _ in OpenAPIDocument.response(Bundle.module, named: "asyncapi") }
        addClientAPI(to: router)
        addAdminAPI(to: router)
        addDashboard(to: router)
        addWebhookPages(to: router)
    }

    // MARK: API plumbing

    /// The scope a request needs unless its route says more: reading needs `read`, anything
    /// else `operate`.
    static func scope(of request: Request) -> ClientScope { request.method == .get || request.method == .head ? .read : .operate }

    /// The client of the bearer token, which must be the `clientId` in the path; another
    /// client's id is a 404 like a missing one. The token's scope must cover `scope` (default:
    /// by the method) or the answer is 403 `insufficient_scope`.
    func authenticateClient(_ request: Request, _ context: ServiceRequestContext, scope: ClientScope? = nil) async throws -> UUID {
        let client = try await directory.authenticate(request.headers[.authorization], requiring: scope ?? Self.scope(of: request))
        guard let raw = context.parameters.get("clientId"), UUID(uuidString: raw) == client else {
            throw APIError(.notFound, code: "client_not_found", message: "no such client for this token")
        }
        return client
    }

    /// The client of the bearer token and one of its agents (`agentId` in the path).
    func authenticateAgent(
        _ request: Request, _ context: ServiceRequestContext, scope: ClientScope? = nil
    ) async throws -> (UUID, FleetViews.AgentView) {
        let client = try await directory.authenticate(request.headers[.authorization], requiring: scope ?? Self.scope(of: request))
        guard let raw = context.parameters.get("agentId"), let id = UUID(uuidString: raw) else { throw APIError.agentNotFound }
        return (client, try await fleet.agent(id, of: client))
    }

    func decode<T: Decodable>(_ type: T.Type, from request: Request) async throws -> T {
        try await HTTPJSON.decode(type, from: request, limit: configuration.maxBodyBytes)
    }

    /// A UUID path parameter; a malformed one is a 404 like a missing one.
    func pathUUID(_ name: String, _ context: ServiceRequestContext, notFound: String) throws -> UUID {
        guard let raw = context.parameters.get(name), let id = UUID(uuidString: raw) else {
            throw APIError(.notFound, code: notFound, message: "no such \(notFound.replacingOccurrences(of: "_not_found", with: ""))")
        }
        return id
    }

    static func integer(_ request: Request, _ name: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
        guard let raw = request.uri.queryParameters[Substring(name)] else { return value }
        guard let n = Int(String(raw)), range.contains(n) else {
            throw APIError(.badRequest, code: "out_of_range", message: "\(name) must be \(range.lowerBound) to \(range.upperBound)", field: name)
        }
        return n
    }

    static func flag(_ request: Request, _ name: String) throws -> Bool {
        switch request.uri.queryParameters[Substring(name)].map(String.init) {
        case nil, "false", "0": return false
        case "true", "1": return true
        default: throw APIError(.badRequest, code: "invalid_value", message: "\(name) must be true or false", field: name)
        }
    }
}
