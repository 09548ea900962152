import Foundation
import SpotModels

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
        guard let parsed = ServiceURL(url, schemes: ["amqp"]) else { return nil }
        self.init(
            nodes: parsed.servers.map { Node(host: $0.host, port: $0.port ?? 5672) }, user: parsed.user ?? "guest",
            password: parsed.password ?? "guest", vhost: parsed.path.isEmpty ? "/" : parsed.path)
    }

    /// Without the password.
    public var description: String {
        "amqp://\(user)@\(nodes.map(\.description).joined(separator: ","))/\(vhost == "/" ? "" : vhost)"
    }
}
