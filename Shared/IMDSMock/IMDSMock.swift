import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import SpotIdentity
import Synchronization

/// The instance metadata service of one (simulated) instance, IMDSv2 only, as the agent and
/// the simulator meet it (formats and status codes of amazon-ec2-metadata-mock, times of real
/// IMDS):
///
/// - `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds` 1…21600 → a 44-character
///   token (400 for a missing or out-of-range TTL); a non-PUT request there answers 200 empty;
/// - every metadata read needs a live token: missing or unknown → 401, expired (whole seconds
///   since issue ≥ TTL) → 401 and the token is forgotten;
/// - `spot/instance-action` and `spot/termination-time` answer 404 until a notice is armed, then
///   the same action and time on every read (fixed once armed, as real IMDS keeps it);
///   `events/recommendations/rebalance` likewise with its notice time;
/// - identity paths (instance id, type, zone, zone id, region, life cycle, AMI, local IPv4) and
///   an instance profile's credentials when one is set; trailing slashes are ignored;
/// - `/latest/dynamic/instance-identity/document` and, with a signer, its PKCS7 signature
///   `rsa2048`, as AWS signs it (a test key stands in for AWS's regional certificate).
public final class IMDSMock: Sendable {
    public struct Identity: Sendable {
        public var instanceId: String
        public var instanceType: String
        public var availabilityZone: String
        public var availabilityZoneId: String?
        public var lifeCycle: String
        public var amiId: String
        public var localIPv4: String
        public var accountId = "123456789012"
        /// An instance profile: role name and the credentials served for it.
        public var role: (name: String, accessKeyId: String, secretAccessKey: String, token: String, expiration: Date)?

        public init(
            instanceId: String, instanceType: String, availabilityZone: String, availabilityZoneId: String? = nil, lifeCycle: String = "spot",
            amiId: String = "ami-12c6146b", localIPv4: String = "172.16.34.43"
        ) {
            self.instanceId = instanceId
            self.instanceType = instanceType
            self.availabilityZone = availabilityZone
            self.availabilityZoneId = availabilityZoneId
            self.lifeCycle = lifeCycle
            self.amiId = amiId
            self.localIPv4 = localIPv4
        }
    }

    struct State {
        var identity: Identity
        var tokens: [String: (issued: Date, ttl: Int)] = [:]
        var action: (action: String, time: Date)?
        var rebalance: Date?
        var reads: [String: Int] = [:]
        var firstReads: [String: Date] = [:]
    }

    private let state: Mutex<State>
    let now: @Sendable () -> Date
    let signer: IdentitySigner?

    public init(identity: Identity, signer: IdentitySigner? = nil, now: @escaping @Sendable () -> Date = { Date() }) {
        state = Mutex(State(identity: identity))
        self.signer = signer
        self.now = now
    }

    /// The instance identity document IMDS serves (the bytes its signature covers).
    public var identityDocument: [UInt8] {
        let id = identity
        return InstanceIdentity(
            instanceId: id.instanceId, accountId: id.accountId, region: String(id.availabilityZone.dropLast()), availabilityZone: id.availabilityZone,
            instanceType: id.instanceType, imageId: id.amiId, privateIp: id.localIPv4
        ).document
    }

    public var identity: Identity {
        get { state.withLock { $0.identity } }
    }

    public func setIdentity(_ identity: Identity) { state.withLock { $0.identity = identity } }

    /// Gives the interruption notice: `action` at `time` (default two minutes from now), fixed
    /// from here on. Arming again keeps the first notice.
    @discardableResult
    public func armInterruption(action: String = "terminate", at time: Date? = nil) -> Date {
        state.withLock { s in
            if let existing = s.action { return existing.time }
            let at = time ?? now().addingTimeInterval(120)
            s.action = (action, at)
            return at
        }
    }

    /// Gives a rebalance recommendation noticed now (or at `time`), fixed from here on.
    @discardableResult
    public func armRebalance(at time: Date? = nil) -> Date {
        state.withLock { s in
            if let existing = s.rebalance { return existing }
            let at = time ?? now()
            s.rebalance = at
            return at
        }
    }

    /// Withdraws both notices (a new instance behind the same endpoint).
    public func disarm() {
        state.withLock {
            $0.action = nil
            $0.rebalance = nil
            $0.firstReads = [:]
        }
    }

    /// How often a path was read with a valid token.
    public func reads(_ path: String) -> Int { state.withLock { $0.reads[path, default: 0] } }

    /// When a path was first read with an answer (for a notice: when the instance first saw it).
    public func firstRead(_ path: String) -> Date? { state.withLock { $0.firstReads[path] } }

    // MARK: HTTP

    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.on("/latest/api/token", method: .put) { request, _ in self.issueToken(request) }
        router.get("/latest/api/token") { _, _ in Response(status: .ok) }
        router.get("/latest/meta-data/**") { request, _ in self.metadata(request) }
        router.get("/latest/dynamic/instance-identity/**") { request, _ in self.dynamic(request) }
        return router
    }

    /// An application serving this mock on `host:port` (port 0: any free port, reported to `onRunning`).
    public func application(
        host: String = "127.0.0.1", port: Int = 0, onRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    )
        -> some ApplicationProtocol
    {
        var logger = Logger(label: "spotguard.imds-mock")
        logger.logLevel = .critical  // a test peer: its shutdown chatter is not the product's
        return Application(
            router: router(), configuration: .init(address: .hostname(host, port: port), serverName: "EC2ws"),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? port) }, logger: logger)
    }

    /// Serves the mock on a free loopback port while `body` runs, then shuts it down.
    public func serving<T: Sendable>(_ body: (URL) async throws -> T) async throws -> T {
        let port = Mutex<Int?>(nil)
        let (started, signal) = AsyncStream.makeStream(of: Void.self)
        let app = application(onRunning: { p in
            port.withLock { $0 = p }
            signal.yield()
        })
        let group = ServiceGroup(configuration: .init(services: [app], logger: Logger(label: "spotguard.imds-mock")))
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            for await _ in started { break }
            let result: T
            do {
                result = try await body(URL(string: "http://127.0.0.1:\(port.withLock { $0 ?? 0 })")!)
            } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return result
        }
    }

    static func page(_ status: HTTPResponse.Status, _ title: String) -> Response {
        let body = """
            <?xml version="1.0" encoding="iso-8859-1"?>
            <!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
            <html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en"><head><title>\(title)</title></head><body><h1>\(title)</h1></body></html>
            """
        return Response(status: status, headers: [.contentType: "text/html"], body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    static func text(_ s: String, _ type: String = "text/plain") -> Response {
        Response(status: .ok, headers: [.contentType: type], body: .init(byteBuffer: ByteBuffer(string: s)))
    }

    func issueToken(_ request: Request) -> Response {
        guard let raw = request.headers[HTTPField.Name("X-aws-ec2-metadata-token-ttl-seconds")!], let ttl = Int(raw), (1...21_600).contains(ttl) else {
            return Self.page(.badRequest, "400 - Bad Request")
        }
        let token = Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        state.withLock { $0.tokens[token] = (now(), ttl) }
        var response = Self.text(token)
        response.headers[HTTPField.Name("X-Aws-Ec2-Metadata-Token-Ttl-Seconds")!] = String(ttl)
        return response
    }

    func metadata(_ request: Request) -> Response {
        let at = now()
        var path = String(request.uri.path.dropFirst("/latest/meta-data/".count))
        while path.hasSuffix("/") { path.removeLast() }
        return state.withLock { s -> Response in
            guard Self.authorized(request, at: at, &s) else { return Self.page(.unauthorized, "401 - Unauthorized") }
            let id = s.identity
            let iso = Date.ISO8601FormatStyle()
            var found: Response?
            switch path {
            case "instance-id": found = Self.text(id.instanceId)
            case "instance-type": found = Self.text(id.instanceType)
            case "ami-id": found = Self.text(id.amiId)
            case "local-ipv4": found = Self.text(id.localIPv4)
            case "instance-life-cycle": found = Self.text(id.lifeCycle)
            case "placement/availability-zone": found = Self.text(id.availabilityZone)
            case "placement/availability-zone-id": found = id.availabilityZoneId.map { Self.text($0) }
            case "placement/region": found = Self.text(String(id.availabilityZone.dropLast()))
            case "spot": found = Self.text("instance-action\ntermination-time")
            case "spot/instance-action":
                found = s.action.map { Self.text(#"{"action": "\#($0.action)", "time": "\#($0.time.formatted(iso))"}"#, "application/json") }
            case "spot/termination-time": found = s.action.map { Self.text($0.time.formatted(iso)) }
            case "events/recommendations/rebalance":
                found = s.rebalance.map { Self.text(#"{"noticeTime": "\#($0.formatted(iso))"}"#, "application/json") }
            case "iam/security-credentials": found = id.role.map { Self.text($0.name) }
            default:
                if let role = id.role, path == "iam/security-credentials/\(role.name)" {
                    found = Self.text(
                        """
                        {"Code": "Success", "LastUpdated": "\(at.formatted(iso))", "Type": "AWS-HMAC", "AccessKeyId": "\(role.accessKeyId)",
                         "SecretAccessKey": "\(role.secretAccessKey)", "Token": "\(role.token)", "Expiration": "\(role.expiration.formatted(iso))"}
                        """, "application/json")
                }
            }
            guard let found else { return Self.page(.notFound, "404 - Not Found") }
            s.reads[path, default: 0] += 1
            if s.firstReads[path] == nil { s.firstReads[path] = at }
            return found
        }
    }

    /// A live IMDSv2 token on the request; an expired one is forgotten.
    static func authorized(_ request: Request, at: Date, _ s: inout State) -> Bool {
        guard let token = request.headers[HTTPField.Name("X-aws-ec2-metadata-token")!], let issued = s.tokens[token] else { return false }
        guard Int(at.timeIntervalSince(issued.issued)) < issued.ttl else {
            s.tokens[token] = nil
            return false
        }
        return true
    }

    func dynamic(_ request: Request) -> Response {
        let at = now()
        guard state.withLock({ Self.authorized(request, at: at, &$0) }) else { return Self.page(.unauthorized, "401 - Unauthorized") }
        switch request.uri.path.dropFirst("/latest/dynamic/instance-identity/".count).trimmingCharacters(in: CharacterSet(charactersIn: "/")) {
        case "document": return Self.text(String(decoding: identityDocument, as: UTF8.self), "application/json")
        case "rsa2048":
            guard let signature = try? signer?.pkcs7(identityDocument, signedAt: at) else { return Self.page(.notFound, "404 - Not Found") }
            return Self.text(signature)
        default: return Self.page(.notFound, "404 - Not Found")
        }
    }
}
