import Foundation
import SpotModels

/// A message to publish. Persistent JSON by default, with the envelope's id as `message-id`.
public struct OutgoingMessage: Sendable {
    public var exchange: String
    public var routingKey: String
    public var body: [UInt8]
    public var messageId: String
    public var contentType = "application/json"
    public var headers: [String: String] = [:]
    public var replyTo: String?
    public var correlationId: String?
    /// Per-message TTL in milliseconds (requests whose caller will have given up).
    public var expirationMs: Int?
    public var persistent = true
    /// Returned (and the publish failed as `unroutable`) when no queue is bound. Off only for
    /// replies, whose requester may have gone: a reply nobody waits for is simply dropped.
    public var mandatory = true

    public init(exchange: String = Topology.eventsExchange, routingKey: String, body: [UInt8], messageId: String) {
        self.exchange = exchange
        self.routingKey = routingKey
        self.body = body
        self.messageId = messageId
    }

    /// An envelope encoded in the wire JSON, published under its own type as routing key.
    public init<P>(envelope: Envelope<P>) throws {
        self.init(routingKey: envelope.type, body: try WireJSON.encode(envelope), messageId: envelope.id.lowercased)
    }
}

/// Headers of a dead letter sent back to its queue by `DeadLetters.replay`: it is published
/// to its queue directly (so only the service that failed it sees it again), and the consumer
/// restores the exchange and routing key it first came with.
enum ReplayHeader {
    static let routingKey = "x-spotguard-replay-routing-key"
    static let exchange = "x-spotguard-replay-exchange"
}

/// A message received from a queue. `deliveryCount` is how many earlier deliveries of this
/// message were given back (quorum queues count them in `x-delivery-count`).
public struct Delivery: Sendable {
    public var body: [UInt8]
    public var exchange: String
    public var routingKey: String
    public var messageId: String?
    public var correlationId: String?
    public var replyTo: String?
    public var headers: [String: String]
    public var redelivered: Bool
    public var deliveryCount: Int
    let deliveryTag: UInt64
    let generation: UInt64

    /// The envelope, whose `type` must be the routing key it came with (a consumer dispatches
    /// on the routing key, so a message saying otherwise is refused, not guessed at).
    public func decode<P>(_ type: P.Type) throws -> Envelope<P> {
        try WireJSON.decode(Envelope<P>.self, from: body, routingKey: routingKey)
    }
}
