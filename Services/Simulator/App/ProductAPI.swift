import Foundation
import SpotCloud

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// SpotGuard's HTTP API as the fleet's operator uses it.
struct ProductAPI: Sendable {
    let base: URL
    let transport = HTTPClientTransport(timeout: 30)

    struct Answer: @unchecked Sendable {
        var status: Int
        var json: [String: Any]
    }

    func send(_ method: String, _ path: String, token: String, json body: [String: Any]? = nil) async throws -> Answer {
        var request = URLRequest(url: URL(string: base.absoluteString.trimmingSuffix("/") + path)!)
        request.httpMethod = method
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        if let body {
            request.httpBody = try JSONSerialization.data(withJSONObject: body)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let (status, _, data) = try await transport.send(request)
        return Answer(status: status, json: (try? JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:])
    }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String { hasSuffix(suffix) ? String(dropLast(suffix.count)) : self }
}
