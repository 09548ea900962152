import Foundation
import Logging
import SpotCloud
import Synchronization

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// SpotGuard's agent API over HTTP with the agent's bearer token (replaced when the agent
/// enrolls or rotates it); JSON with snake_case keys. Every answer's `Date` header corrects
/// `clock`, the time the agent stamps its reports with (and signs its AWS requests at).
public struct AgentAPI: Sendable {
    let server: URL
    let bearer: Bearer
    let transport: any HTTPTransport
    public let clock: ClockOffset

    public final class Bearer: Sendable {
        let value: Mutex<String>
        init(_ token: String) { value = Mutex(token) }
    }

    public init(
        server: URL, token: String, transport: any HTTPTransport = HTTPClientTransport(timeout: HTTPClientTransport.agentTimeout), clock: ClockOffset = .shared
    ) {
        self.server = server
        bearer = Bearer(token)
        self.transport = transport
        self.clock = clock
    }

    public var token: String { bearer.value.withLock { $0 } }
    func use(_ token: String) { bearer.value.withLock { $0 = token } }

    public struct Answer: Sendable {
        public var status: Int
        public var body: Data

        public func json() -> [String: Any] { ((try? JSONSerialization.jsonObject(with: body)) as? [String: Any]) ?? [:] }
        public var errorCode: String? { (json()["error"] as? [String: Any])?["code"] as? String }
    }

    static func encoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        e.dateEncodingStrategy = .iso8601
        e.outputFormatting = .sortedKeys
        return e
    }

    public func send(_ method: String, _ path: String, json body: Data? = nil) async throws -> Answer {
        try await send(method, path, body: body, contentType: "application/json")
    }

    func send(_ method: String, _ path: String, body: Data?, contentType: String) async throws -> Answer {
        var request = URLRequest(url: URL(string: server.absoluteString.trimmingCharacters(in: CharacterSet(charactersIn: "/")) + path)!)
        request.httpMethod = method
        let token = self.token
        if !token.isEmpty { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let body {
            request.httpBody = body
            request.setValue(contentType, forHTTPHeaderField: "Content-Type")
        }
        let sent = clock.local()
        let (status, headers, data) = try await transport.send(request)
        if clock.observe(header: headers["date"], sent: sent, received: clock.local()) {
            Logger(label: "spotguard-agent").warning(
                "this machine's clock is off the server's; reports are stamped with the server's time", metadata: ["offset_seconds": "\(clock.offset)"])
        }
        return Answer(status: status, body: data)
    }

    public func send<T: Encodable>(_ method: String, _ path: String, _ value: T) async throws -> Answer {
        try await send(method, path, json: try Self.encoder().encode(value))
    }
}

/// Reports that must arrive however long the server or the network is away: each is written
/// to the spool directory before it is sent and removed once the server took it (2xx). The rest
/// stay and are sent again, oldest first, with exponential backoff (1 s to 60 s); a restarted
/// agent sends what the last one left. Reports carry their own ids, so a resend is a no-op.
///
/// Nothing is thrown away on a refusal. A refusal of the agent itself — its token (401, 403:
/// rotated or revoked) or its identity (404 `agent_not_found`) — holds the whole spool until it
/// is fixed, logged as an error on every round. A refusal of one report (another 4xx but 408
/// and 429, which are retried) moves it to `refused/` beside the spool, kept for an operator
/// (the newest `refusedKept`), so one bad report cannot block the rest.
public final class Spool: Sendable {
    let directory: URL
    let api: AgentAPI
    let logger: Logger
    private let sequence = Atomic<Int>(0)
    private let flushing = Mutex<Bool>(false)
    /// Refused reports kept in `refused/`.
    public static let refusedKept = 1000
    var refusedDirectory: URL { directory.appendingPathComponent("refused", isDirectory: true) }

    struct Entry: Codable {
        var method: String
        var path: String
        var body: Data
    }

    public init(directory: String, api: AgentAPI, logger: Logger) throws {
        self.directory = URL(fileURLWithPath: directory)
        self.api = api
        self.logger = logger
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
    }

    /// Files waiting, oldest first.
    public var pending: [URL] {
        ((try? FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)) ?? [])
            .filter { $0.pathExtension == "json" }.sorted { $0.lastPathComponent < $1.lastPathComponent }
    }

    /// Durably queues a report and tries to deliver everything waiting. An urgent report (a
    /// command's result: a failover may wait for it) goes before the periodic ones.
    public func submit<T: Encodable>(_ method: String, _ path: String, _ value: T, urgent: Bool = false) async throws {
        let entry = Entry(method: method, path: path, body: try AgentAPI.encoder().encode(value))
        // "0-…" sorts before the plain time-stamped names ("00…")
        let name =
            (urgent ? "0-" : "")
            + String(
                format: "%015.0f-%06d-%@.json", Date().timeIntervalSince1970 * 1000, sequence.add(1, ordering: .relaxed).newValue % 1_000_000, UUID().uuidString
            )
        try JSONEncoder().encode(entry).write(to: directory.appendingPathComponent(name), options: .atomic)
        _ = await flush()
    }

    /// Sends what waits, in order, until one fails; answers whether the spool is empty.
    @discardableResult
    public func flush() async -> Bool {
        guard
            flushing.withLock({ busy in
                if busy { return false }
                busy = true
                return true
            })
        else { return false }
        defer { flushing.withLock { $0 = false } }
        for file in pending {
            guard let data = try? Data(contentsOf: file), let entry = try? JSONDecoder().decode(Entry.self, from: data) else {
                try? FileManager.default.removeItem(at: file)
                continue
            }
            do {
                let answer = try await api.send(entry.method, entry.path, json: entry.body)
                logger.debug("report sent", metadata: ["path": "\(entry.path)", "status": "\(answer.status)"])
                switch answer.status {
                case 200..<300:
                    try? FileManager.default.removeItem(at: file)
                    continue
                case 401, 403,
                    404 where answer.status != 404 || answer.errorCode == "agent_not_found":
                    logger.error(
                        "the server refuses this agent; reports are kept until its token or registration is fixed",
                        metadata: ["status": "\(answer.status)", "code": "\(answer.errorCode ?? "-")", "waiting": "\(pending.count)"])
                    return false
                case 400..<500 where answer.status != 408 && answer.status != 429:
                    logger.error(
                        "report refused; kept in refused/",
                        metadata: ["path": "\(entry.path)", "status": "\(answer.status)", "code": "\(answer.errorCode ?? "-")"])
                    setAside(file)
                    continue
                default:
                    return false
                }
            } catch {
                logger.debug("report not sent", metadata: ["path": "\(entry.path)", "error": "\(error)"])
                return false
            }
        }
        return true
    }

    /// Moves a refused report to `refused/`, keeping the newest `refusedKept`.
    func setAside(_ file: URL) {
        let fm = FileManager.default
        try? fm.createDirectory(at: refusedDirectory, withIntermediateDirectories: true)
        try? fm.moveItem(at: file, to: refusedDirectory.appendingPathComponent(file.lastPathComponent))
        let kept = ((try? fm.contentsOfDirectory(at: refusedDirectory, includingPropertiesForKeys: nil)) ?? [])
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
        for old in kept.dropLast(Self.refusedKept) { try? fm.removeItem(at: old) }
    }

    /// Returns once everything waiting has been delivered (or set aside as refused), retrying with
    /// the same backoff as `run` for as long as it takes: for callers about to lose the disk the
    /// spool lives on.
    public func drain() async {
        var delay = 0.2
        while !Task.isCancelled, !pending.isEmpty, !(await flush()) {
            try? await Task.sleep(for: .seconds(delay))
            delay = min(60, delay * 2)
        }
    }

    /// Retries until cancelled: every second while reports wait, backing off to a minute.
    public func run() async {
        var delay = 1.0
        while !Task.isCancelled {
            let drained = pending.isEmpty ? true : await flush()
            if drained {
                delay = 1
            } else {
                delay = min(60, delay * 2)
            }
            try? await Task.sleep(for: .seconds(delay))
        }
    }
}
