import Foundation

/// Where the broker is: parsed from an `amqp://user:password@host:port/vhost` URL. A cluster
/// is several nodes in one URL, `amqp://user:password@host1:5672,host2:5672,host3:5672/`: a
/// connection goes to any node that answers and, after it is lost, to the next one.
public struct AMQPEndpoint: Sendable, Equatable, CustomStringConvertible {
    public struct Node: Sendable, Equatable, CustomStringConvertible {
        public var host: String
        public var port: Int

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    /// At least one.
    public var nodes: [Node]
    public var user: String
    public var password: String
    public var vhost: String
    /// Heartbeat asked of the broker, in seconds. rabbitmq-c services heartbeats only inside
    /// library calls, so every worker loop wakes at least every 200 ms.
    public var heartbeatSeconds: Int = 30
    public var connectTimeout: Duration = .seconds(5)

    public var host: String { nodes[0].host }
    public var port: Int { nodes[0].port }

    public init(host: String, port: Int, user: String, password: String, vhost: String = "/") {
        self.init(nodes: [Node(host: host, port: port)], user: user, password: password, vhost: vhost)
    }

    public init(nodes: [Node], user: String, password: String, vhost: String = "/") {
        precondition(!nodes.isEmpty, "an endpoint has at least one node")
        self.nodes = nodes
        self.user = user
        self.password = password
        self.vhost = vhost
    }

    public init?(url: String) {
        guard url.hasPrefix("amqp://") else { return nil }
        var rest = Substring(url.dropFirst(7))
        if let query = rest.firstIndex(of: "?") { rest = rest[..<query] }
        let slash = rest.firstIndex(of: "/")
        let authority = slash.map { rest[..<$0] } ?? rest
        let path = slash.map { rest[rest.index(after: $0)...] } ?? ""
        var user = "guest"
        var password = "guest"
        var hosts = authority
        if let at = authority.lastIndex(of: "@") {
            let info = authority[..<at]
            hosts = authority[authority.index(after: at)...]
            let parts = info.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            guard let u = parts[0].removingPercentEncoding else { return nil }
            user = u
            if parts.count == 2 {
                guard let p = parts[1].removingPercentEncoding else { return nil }
                password = p
            }
        }
        var nodes: [Node] = []
        for item in hosts.split(separator: ",", omittingEmptySubsequences: false) {
            guard let node = Self.node(item) else { return nil }
            nodes.append(node)
        }
        guard !nodes.isEmpty, let vhost = path.isEmpty ? "/" : path.removingPercentEncoding else { return nil }
        self.init(nodes: nodes, user: user, password: password, vhost: vhost)
    }

    /// `host`, `host:port`, `[v6]` or `[v6]:port`.
    static func node(_ s: Substring) -> Node? {
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
        if port.isEmpty { return Node(host: String(host), port: 5672) }
        guard let p = Int(port), (1...65_535).contains(p) else { return nil }
        return Node(host: String(host), port: p)
    }

    /// Without the password.
    public var description: String {
        "amqp://\(user)@\(nodes.map(\.description).joined(separator: ","))/\(vhost == "/" ? "" : vhost)"
    }
}
