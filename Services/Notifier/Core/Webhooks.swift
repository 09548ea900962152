import Crypto
import Foundation
import SpotModels

/// Webhook signatures: `X-SpotGuard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` over
/// `"<t>.<body>"` with the subscription's secret. The timestamp inside the signed text lets a
/// receiver refuse replays (check it is recent), and `verify` is what a receiver runs.
public enum WebhookSignature {
    public static let header = "X-SpotGuard-Signature"

    public static func sign(secret: String, timestamp: Int, body: Data) -> String {
        "t=\(timestamp),v1=\(hex(mac(secret: secret, timestamp: timestamp, body: body)))"
    }

    /// True when `header` carries a valid signature of `body` made no more than `tolerance`
    /// seconds from `now`.
    public static func verify(header: String, secret: String, body: Data, now: Date, tolerance: TimeInterval = 300) -> Bool {
        var t: Int?
        var v1: String?
        for part in header.split(separator: ",") {
            let kv = part.split(separator: "=", maxSplits: 1)
            guard kv.count == 2 else { continue }
            if kv[0] == "t" { t = Int(kv[1]) }
            if kv[0] == "v1" { v1 = String(kv[1]) }
        }
        guard let t, let v1, abs(now.timeIntervalSince1970 - Double(t)) <= tolerance else { return false }
        let expected = Array(hex(mac(secret: secret, timestamp: t, body: body)).utf8)
        let given = Array(v1.utf8)
        guard expected.count == given.count else { return false }
        return zip(expected, given).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }

    static func mac(secret: String, timestamp: Int, body: Data) -> HashedAuthenticationCode<SHA256> {
        var signed = Data("\(timestamp).".utf8)
        signed.append(body)
        return HMAC<SHA256>.authenticationCode(for: signed, using: SymmetricKey(data: Data(secret.utf8)))
    }

    static func hex(_ mac: HashedAuthenticationCode<SHA256>) -> String {
        mac.map { String(format: "%02x", $0) }.joined()
    }
}

/// When a failed delivery is tried again: `base × 2^(attempt−1)`, at most `cap`, plus up to
/// 10 % jitter so receivers recovering from an outage are not hit by every sender at once.
public struct Backoff: Sendable, Equatable {
    public var base: Duration
    public var cap: Duration
    /// Attempts in all; after the last failed one the delivery is dead.
    public var maxAttempts: Int

    public init(base: Duration, cap: Duration, maxAttempts: Int) {
        self.base = base
        self.cap = cap
        self.maxAttempts = maxAttempts
    }

    /// The wait after failed attempt `attempt` (1-based), or nil when it was the last.
    public func delay(afterAttempt attempt: Int, jitter: Double = Double.random(in: 0..<0.1)) -> Duration? {
        guard attempt < maxAttempts else { return nil }
        let plain = min(base * (1 << min(attempt - 1, 30)), cap)
        return plain + plain * jitter
    }
}

/// The body a subscriber receives for one notification.
public enum WebhookPayload {
    public enum Format: String, Sendable, CaseIterable {
        case json
        /// Slack's incoming-webhook shape (`text` plus blocks), which Mattermost and others read too.
        case slack
    }

    public struct Notification: Sendable {
        public var id: UUID
        public var clientId: UUID
        public var agentId: UUID?
        public var eventType: String
        public var kind: String
        public var severity: String
        public var title: String
        public var message: String
        public var occurrences: Int
        public var details: [String: String]
        public var createdAt: Date

        public init(
            id: UUID, clientId: UUID, agentId: UUID?, eventType: String, kind: String, severity: String, title: String, message: String,
            occurrences: Int, details: [String: String], createdAt: Date
        ) {
            self.id = id
            self.clientId = clientId
            self.agentId = agentId
            self.eventType = eventType
            self.kind = kind
            self.severity = severity
            self.title = title
            self.message = message
            self.occurrences = occurrences
            self.details = details
            self.createdAt = createdAt
        }
    }

    struct JSONBody: Encodable {
        var deliveryId: UUID
        var notificationId: UUID
        var eventType: String
        var kind: String
        var severity: String
        var clientId: UUID
        var agentId: UUID?
        var title: String
        var message: String
        var occurrences: Int
        var details: [String: String]
        var createdAt: Date
    }

    struct SlackBody: Encodable {
        struct Block: Encodable {
            struct Text: Encodable {
                var type = "mrkdwn"
                var text: String
            }
            var type = "section"
            var text: Text
        }
        var text: String
        var blocks: [Block]
    }

    public static func body(_ n: Notification, deliveryId: UUID, format: Format) throws -> Data {
        switch format {
        case .json:
            return try WireJSON.encoder().encode(
                JSONBody(
                    deliveryId: deliveryId, notificationId: n.id, eventType: n.eventType, kind: n.kind, severity: n.severity, clientId: n.clientId,
                    agentId: n.agentId, title: n.title, message: n.message, occurrences: n.occurrences, details: n.details, createdAt: n.createdAt))
        case .slack:
            let icon = ["critical": ":rotating_light:", "warning": ":warning:"][n.severity] ?? ":information_source:"
            let text = "\(icon) *\(slackEscaped(n.title))*: \(slackEscaped(n.message))"
            let context = n.details.sorted { $0.key < $1.key }.map { "\($0.key): `\(slackEscaped($0.value))`" }.joined(separator: "  ")
            var blocks = [SlackBody.Block(text: .init(text: text))]
            if !context.isEmpty { blocks.append(.init(text: .init(text: context))) }
            return try WireJSON.encoder().encode(SlackBody(text: text, blocks: blocks))
        }
    }

    /// Slack's three control characters in message text.
    static func slackEscaped(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
