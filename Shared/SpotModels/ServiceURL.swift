import Foundation

/// A connection URL that may name several servers, `scheme://user:password@host1:port1,host2/path?query`
/// (the broker's and the database's): its parts, percent-decoded. `URLComponents` cannot read a
/// host list; this is the one parser both use.
public struct ServiceURL: Sendable {
    public struct Server: Sendable, Equatable {
        public var host: String
        public var port: Int?
    }

    public var user: String?
    public var password: String?
    public var servers: [Server]
    /// After the first `/`, decoded; empty when there is none.
    public var path: String
    /// `key=value` pairs of the query, decoded, in order.
    public var query: [(String, String)]

    /// Nil unless `url` starts with one of `schemes` followed by `://`, names at least one
    /// server, and every part is well formed (ports 1-65535, IPv6 hosts in brackets).
    public init?(_ url: String, schemes: [String]) {
        guard let scheme = schemes.first(where: { url.hasPrefix($0 + "://") }) else { return nil }
        var rest = Substring(url.dropFirst(scheme.count + 3))
        var query: Substring = ""
        if let q = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: q)...]
            rest = rest[..<q]
        }
        let slash = rest.firstIndex(of: "/")
        let authority = slash.map { rest[..<$0] } ?? rest
        var hosts = authority
        if let at = authority.lastIndex(of: "@") {
            hosts = authority[authority.index(after: at)...]
            let info = authority[..<at].split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            guard let user = info[0].removingPercentEncoding else { return nil }
            self.user = user
            if info.count == 2 {
                guard let password = info[1].removingPercentEncoding else { return nil }
                self.password = password
            }
        }
        servers = []
        for item in hosts.split(separator: ",", omittingEmptySubsequences: false) {
            guard let server = Self.server(item) else { return nil }
            servers.append(server)
        }
        guard !servers.isEmpty, let path = (slash.map { rest[rest.index(after: $0)...] } ?? "").removingPercentEncoding else { return nil }
        self.path = path
        self.query = []
        for pair in query.split(separator: "&") where !pair.isEmpty {
            let kv = pair.split(separator: "=", maxSplits: 1)
            guard kv.count == 2, let key = kv[0].removingPercentEncoding, let value = kv[1].removingPercentEncoding else { return nil }
            self.query.append((key, value))
        }
    }

    /// `host`, `host:port`, `[v6]` or `[v6]:port`.
    static func server(_ s: Substring) -> Server? {
        var host = s
        var port: Substring = ""
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { return nil }
            host = s[s.index(after: s.startIndex)..<close]
            let after = s[s.index(after: close)...]
            guard after.isEmpty || after.hasPrefix(":") else { return nil }
            port = after.dropFirst()
        } else if let colon = s.lastIndex(of: ":") {
            host = s[..<colon]
            port = s[s.index(after: colon)...]
        }
        guard !host.isEmpty, !host.contains(where: { $0 == "@" || $0 == "/" || $0.isWhitespace }) else { return nil }
        if port.isEmpty { return Server(host: String(host), port: nil) }
        guard let p = Int(port), (1...65_535).contains(p) else { return nil }
        return Server(host: String(host), port: p)
    }
}
