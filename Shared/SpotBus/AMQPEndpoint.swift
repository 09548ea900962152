import Foundation

/// Where the broker is: parsed from an `amqp://user:password@host:port/vhost` URL.
public struct AMQPEndpoint: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var user: String
    public var password: String
    public var vhost: String
    /// Heartbeat asked of the broker, in seconds. rabbitmq-c services heartbeats only inside
    /// library calls, so every worker loop wakes at least every 200 ms.
    public var heartbeatSeconds: Int = 30
    public var connectTimeout: Duration = .seconds(5)

    public init(host: String, port: Int, user: String, password: String, vhost: String = "/") {
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.vhost = vhost
    }

    public init?(url: String) {
        guard let c = URLComponents(string: url), c.scheme == "amqp", let host = c.host, !host.isEmpty else { return nil }
        var vhost = c.percentEncodedPath.isEmpty || c.percentEncodedPath == "/" ? "/" : String(c.percentEncodedPath.dropFirst())
        vhost = vhost.removingPercentEncoding ?? vhost
        self.init(host: host, port: c.port ?? 5672, user: c.user ?? "guest", password: c.password ?? "guest", vhost: vhost)
    }

    /// Without the password.
    public var description: String { "amqp://\(user)@\(host):\(port)/\(vhost == "/" ? "" : vhost)" }
}
