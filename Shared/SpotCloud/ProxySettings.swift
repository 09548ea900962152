import Foundation

/// Which requests go through a forward proxy, read from the environment the way curl and the
/// AWS SDKs read it: `HTTPS_PROXY` (or `https_proxy`) for https URLs, `HTTP_PROXY` (or
/// `http_proxy`) for http URLs, and `NO_PROXY` (or `no_proxy`): a comma-separated list of host
/// names (a name also covers its subdomains; a leading `.` or `*.` is allowed), IP addresses,
/// IPv4 CIDR blocks, or `*` for none at all. The instance metadata service is never asked
/// through a proxy: `IMDSClient` uses a direct transport whatever its address.
public struct ProxySettings: Sendable, Equatable {
    public struct Proxy: Sendable, Hashable {
        public var host: String
        public var port: Int
        /// `user:password` from the proxy URL, sent as Basic authorization.
        public var credentials: String?
    }

    public var http: Proxy?
    public var https: Proxy?
    public var noProxy: [String]
    /// The variables set to something that is not an http proxy URL (left out: say so at start).
    public var unreadable: [String] = []

    public init(http: Proxy? = nil, https: Proxy? = nil, noProxy: [String] = []) {
        self.http = http
        self.https = https
        self.noProxy = noProxy
    }

    /// The settings of `environment`; an unreadable proxy URL is left out and named in `unreadable`.
    public init(environment: [String: String]) {
        func value(_ name: String) -> String? {
            (environment[name] ?? environment[name.lowercased()]).flatMap { $0.trimmingCharacters(in: .whitespaces).isEmpty ? nil : $0 }
        }
        var unreadable: [String] = []
        func proxy(_ name: String) -> Proxy? {
            guard let text = value(name) else { return nil }
            guard let proxy = Self.proxy(text) else {
                unreadable.append(name)
                return nil
            }
            return proxy
        }
        http = proxy("HTTP_PROXY")
        https = proxy("HTTPS_PROXY")
        self.unreadable = unreadable
        noProxy = (value("NO_PROXY") ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }.filter { !$0.isEmpty }
    }

    /// `http://[user:password@]host[:port]` (a bare `host:port` is read as http).
    static func proxy(_ text: String) -> Proxy? {
        let withScheme = text.contains("://") ? text : "http://" + text
        guard let url = URLComponents(string: withScheme), url.scheme?.lowercased() == "http", let host = url.host, !host.isEmpty else { return nil }
        let credentials = url.user.map { user in url.password.map { "\(user):\($0)" } ?? user }
        return Proxy(host: host, port: url.port ?? 80, credentials: credentials?.removingPercentEncoding)
    }

    /// The proxy for `url`, or nil to connect directly.
    public func proxy(for url: URL) -> Proxy? {
        guard let host = url.host?.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]")) else { return nil }
        let proxy = url.scheme?.lowercased() == "https" ? https : http
        guard let proxy, !bypasses(host) else { return nil }
        return proxy
    }

    func bypasses(_ host: String) -> Bool {
        noProxy.contains { entry in
            if entry == "*" { return true }
            if entry.contains("/") { return Self.ipv4(host, inside: entry) }
            let name = entry.hasPrefix("*.") ? String(entry.dropFirst(2)) : entry.hasPrefix(".") ? String(entry.dropFirst()) : entry
            let bare = name.split(separator: ":").count == 2 && !name.contains("::") ? String(name.split(separator: ":")[0]) : name
            return host == bare || host.hasSuffix("." + bare)
        }
    }

    /// `host` is an IPv4 address inside the CIDR block `cidr`.
    static func ipv4(_ host: String, inside cidr: String) -> Bool {
        let parts = cidr.split(separator: "/")
        guard parts.count == 2, let bits = Int(parts[1]), (0...32).contains(bits), let network = ipv4(String(parts[0])), let address = ipv4(host) else {
            return false
        }
        let mask: UInt32 = bits == 0 ? 0 : ~UInt32(0) << (32 - bits)
        return network & mask == address & mask
    }

    static func ipv4(_ text: String) -> UInt32? {
        let octets = text.split(separator: ".", omittingEmptySubsequences: false).map { UInt32($0) }
        guard octets.count == 4, octets.allSatisfy({ ($0 ?? 256) < 256 }) else { return nil }
        return octets.reduce(0) { $0 << 8 | $1! }
    }
}
