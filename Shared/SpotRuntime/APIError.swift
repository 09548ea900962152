import Crypto
import Foundation
import Hummingbird
import Logging
import SpotBus
import SpotModels
import SpotStore

/// Every error the API answers: `{"error": {"code": "...", "message": "...", "field": "..."}}`
/// with a stable machine-readable code.
public struct APIError: HTTPResponseError, CustomStringConvertible {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String
    public var field: String?
    public var retryAfterSeconds: Int?

    public init(_ status: HTTPResponse.Status, code: String, message: String, field: String? = nil, retryAfterSeconds: Int? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.retryAfterSeconds = retryAfterSeconds
    }

    public var description: String { "\(status.code) \(code): \(message)" }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        let data = try WireJSON.encoder().encode(ErrorBody(code: code, message: message, field: field))
        var headers: HTTPFields = [.contentType: "application/json"]
        if let retryAfterSeconds { headers[.retryAfter] = String(retryAfterSeconds) }
        if status == .unauthorized { headers[.wwwAuthenticate] = "Bearer" }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    public static func validation(_ e: ValidationError) -> APIError {
        APIError(.badRequest, code: e.code, message: e.message, field: e.field)
    }

    public static let unauthorized = APIError(.unauthorized, code: "unauthorized", message: "a valid bearer token is required")
    public static let agentNotFound = APIError(.notFound, code: "agent_not_found", message: "no such agent for this client")

    public static func bodyTooLarge(_ limit: Int) -> APIError {
        APIError(.contentTooLarge, code: "body_too_large", message: "the body is larger than \(limit) bytes")
    }

    public static func publishFailed(_ e: BusError) -> APIError {
        if e.isRetryable {
            return APIError(
                .serviceUnavailable, code: "broker_unavailable",
                message: "the report was not accepted (\(e.code.rawValue)); retry later", retryAfterSeconds: 5)
        }
        return APIError(.internalServerError, code: "unroutable", message: "no consumer queue is bound for this message")
    }

    public static let databaseUnavailable = APIError(
        .serviceUnavailable, code: "database_unavailable", message: "the database is unreachable; retry later", retryAfterSeconds: 5)
    public static let overloaded = APIError(
        .serviceUnavailable, code: "overloaded", message: "the service is at its limit of requests in progress; retry shortly", retryAfterSeconds: 1)
    public static let busy = APIError(
        .serviceUnavailable, code: "busy", message: "too many transfers at once; retry shortly", retryAfterSeconds: 1)
    public static let internalError = APIError(.internalServerError, code: "internal", message: "internal error")

    /// Passes only a request carrying `Authorization: Bearer <admin token>` (compared in
    /// constant time over SHA-256 digests, so neither length nor prefix leaks).
    public static func requireAdmin(_ authorization: String?, token: String) throws {
        guard let given = ClientToken.bearer(authorization),
            ClientToken.constantTimeEquals(Array(SHA256.hash(data: Array(given.utf8))), Array(SHA256.hash(data: Array(token.utf8))))
        else { throw unauthorized }
    }
}

/// Maps any error that is not already an API error to a logged, generic 500, so internals
/// never reach the client; a database that cannot answer now is 503 with a retry hint.
public struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            throw error
        } catch let error as PGError where error.isTransient {
            // unreachable, restarting or out of resources: the caller may retry
            context.logger.warning("request failed: database unavailable", metadata: ["db.error": "\(error)"])
            throw APIError.databaseUnavailable
        } catch let error as HTTPError {
            throw APIError(
                error.status, code: error.status == .notFound ? "not_found" : "http_\(error.status.code)",
                message: error.body ?? error.status.reasonPhrase)
        } catch {
            context.logger.error("request failed", metadata: ["error": "\(String(reflecting: error))"])
            throw APIError.internalError
        }
    }
}
