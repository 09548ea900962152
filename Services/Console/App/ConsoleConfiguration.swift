import SpotRuntime

/// Settings of `spotguard-console`, from the environment:
/// - `SPOTGUARD_CONSOLE_HOST` (default `127.0.0.1`) and `SPOTGUARD_CONSOLE_PORT` (default 8087)
/// - `SPOTGUARD_ADMIN_TOKEN` (secret, required, at least 16 characters): guards `/api/admin/*`
/// - `SPOTGUARD_CONSOLE_MAX_BODY_BYTES` (default 65536)
/// - `SPOTGUARD_CONSOLE_SESSION_HOURS` (default 12): how long a dashboard login lasts
/// - `SPOTGUARD_CONSOLE_SECURE_COOKIES` (`true`/`false`, default `true`): the session cookie's
///   `Secure` flag; browsers keep it on `http://localhost` and `127.0.0.1` too, so turn it off
///   only behind a plain-HTTP name other than those
/// - `SPOTGUARD_RELAY_TIMEOUT_MS` (default 10000): how long a replica call waits for the coordinator
/// - `SPOTGUARD_TOKEN_CACHE_SECONDS` (default 60)
public struct ConsoleConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// Its HTTP server's time limits and failed-authentication limit.
    public var http: HTTPSettings
    public var adminToken: String
    public var maxBodyBytes: Int
    public var sessionLifetime: Duration
    public var secureCookies: Bool
    public var relayTimeout: Duration
    public var tokenCacheTTL: Duration

    public init(env: EnvironmentReader) throws {
        host = env.string("SPOTGUARD_CONSOLE_HOST") ?? "127.0.0.1"
        port = try env.int("SPOTGUARD_CONSOLE_PORT", default: 8087, range: 0...65535)
        http = try HTTPSettings(env: env)
        adminToken = try env.secret("SPOTGUARD_ADMIN_TOKEN", minLength: 16)
        maxBodyBytes = try env.int("SPOTGUARD_CONSOLE_MAX_BODY_BYTES", default: 65_536, range: 1024...(16 << 20))
        sessionLifetime = .seconds(3600 * (try env.int("SPOTGUARD_CONSOLE_SESSION_HOURS", default: 12, range: 1...720)))
        switch env.string("SPOTGUARD_CONSOLE_SECURE_COOKIES")?.lowercased() {
        case nil, "true", "1", "yes": secureCookies = true
        case "false", "0", "no": secureCookies = false
        case let other?: throw ConfigurationError(variable: "SPOTGUARD_CONSOLE_SECURE_COOKIES", problem: "must be true or false, got '\(other)'")
        }
        relayTimeout = .milliseconds(try env.int("SPOTGUARD_RELAY_TIMEOUT_MS", default: 10_000, range: 100...120_000))
        tokenCacheTTL = .seconds(try env.int("SPOTGUARD_TOKEN_CACHE_SECONDS", default: 60, range: 0...3600))
    }
}
