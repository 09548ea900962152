import Foundation

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// One HTTP exchange; the EC2 and IMDS clients speak through it (URLSession in production, a
/// scripted one in unit tests).
public protocol HTTPTransport: Sendable {
    func send(_ request: URLRequest) async throws -> (status: Int, headers: [String: String], body: Data)
}

public struct URLSessionTransport: HTTPTransport {
    let session: URLSession

    /// `timeout` bounds each request (IMDS answers in milliseconds; EC2 in seconds).
    public init(timeout: TimeInterval = 10) {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = timeout
        configuration.timeoutIntervalForResource = timeout * 3
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        session = URLSession(configuration: configuration)
    }

    public func send(_ request: URLRequest) async throws -> (status: Int, headers: [String: String], body: Data) {
        let (data, response) = try await session.data(for: request)
        guard let http = response as? HTTPURLResponse else { throw URLError(.badServerResponse) }
        var headers: [String: String] = [:]
        for (k, v) in http.allHeaderFields {
            if let k = k as? String, let v = v as? String { headers[k.lowercased()] = v }
        }
        return (http.statusCode, headers, data)
    }
}
