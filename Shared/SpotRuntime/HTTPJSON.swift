import Foundation
import Hummingbird
import NIOCore
import SpotBus
import SpotModels
import SpotStore

/// JSON in and out of the HTTP services, in the one wire dialect.
public enum HTTPJSON {
    public static func response<T: Encodable>(_ value: T, status: HTTPResponse.Status) throws -> Response {
        let bytes = try WireJSON.encode(value)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// The request body, at most `limit` bytes (413 beyond).
    public static func bytes(of request: Request, limit: Int) async throws -> ByteBuffer {
        do {
            return try await request.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw APIError.bodyTooLarge(limit)
        }
    }

    /// The JSON body (nil when empty), at most `limit` bytes; another media type is 415.
    public static func body(of request: Request, limit: Int) async throws -> Data? {
        let buffer = try await bytes(of: request, limit: limit)
        guard buffer.readableBytes > 0 else { return nil }
        let contentType = request.headers[.contentType]?.lowercased() ?? ""
        guard contentType.hasPrefix("application/json") else {
            throw APIError(.unsupportedMediaType, code: "unsupported_media_type", message: "send the body as application/json")
        }
        return Data(buffer.readableBytesView)
    }

    /// The body decoded; an empty body is 400 `empty_body`, a malformed one 400 with the field.
    public static func decode<T: Decodable>(_ type: T.Type, from request: Request, limit: Int) async throws -> T {
        guard let data = try await body(of: request, limit: limit) else {
            throw APIError(.badRequest, code: "empty_body", message: "the body is empty")
        }
        do {
            return try WireJSON.decode(T.self, from: data)
        } catch let e as DecodingError {
            throw APIError.validation(ValidationError(decoding: e))
        }
    }
}

/// Hands a replica call to `spotguard-replicas` over the bus (request/reply) and turns its
/// answer into the HTTP response. No answer within the timeout (no coordinator running,
/// broker down) is 503 with a retry hint; every call is idempotent, so retrying is safe.
public struct ReplicaRelay: Sendable {
    let requester: BusRequester
    let timeout: Duration
    let producer: String

    public init(requester: BusRequester, timeout: Duration, producer: String) {
        self.requester = requester
        self.timeout = timeout
        self.producer = producer
    }

    public func call(_ call: ReplicaRequest) async throws -> APIReply {
        let envelope = Envelope(type: call.operation.routingKey, producer: producer, payload: call)
        let reply: Delivery
        do {
            reply = try await requester.request(
                routingKey: call.operation.routingKey, body: Array(try WireJSON.encoder().encode(envelope)), deadline: timeout)
        } catch let e as BusError {
            throw APIError(
                .serviceUnavailable, code: "coordinator_unavailable",
                message: "the replica coordinator did not answer (\(e.code.rawValue)); retry", retryAfterSeconds: 1)
        }
        return try WireJSON.decoder().decode(APIReply.self, from: Data(reply.body))
    }

    public func respond(_ call: ReplicaRequest) async throws -> Response {
        let answer = try await self.call(call)
        var headers: HTTPFields = [.contentType: "application/json"]
        if answer.status == 503 { headers[.retryAfter] = "1" }
        return Response(status: HTTPResponse.Status(code: answer.status), headers: headers, body: .init(byteBuffer: ByteBuffer(string: answer.body)))
    }
}

extension PostgresStore {
    /// A read for a request: a database that cannot be reached is 503 with a retry hint.
    public func read<T: Sendable>(_ body: @escaping @Sendable (PGConnection) throws -> T) async throws -> T {
        do {
            return try await withConnection(body)
        } catch let e as PGError where e.isRetryable {
            throw APIError.databaseUnavailable
        }
    }

    /// A transaction for a request, retried as `transaction` retries; a database that stays
    /// unreachable is 503 with a retry hint.
    public func write<T: Sendable>(_ body: @escaping @Sendable (PGConnection) throws -> T) async throws -> T {
        do {
            return try await transaction(body)
        } catch let e as PGError where e.isRetryable {
            throw APIError.databaseUnavailable
        }
    }
}

/// A service's OpenAPI document (`openapi.yaml` in its resource bundle), served as it is.
public enum OpenAPIDocument {
    /// A YAML document of the service's bundle (`openapi`, or the console's `asyncapi`).
    public static func response(_ bundle: Bundle, named name: String = "openapi") -> Response {
        guard let url = bundle.url(forResource: name, withExtension: "yaml"), let data = try? Data(contentsOf: url) else {
            return Response(status: .notFound)
        }
        return Response(status: .ok, headers: [.contentType: "application/yaml"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
