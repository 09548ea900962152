import SpotModels

/// The exchanges, queues and bindings of SpotGuard. Every connection declares all of it at
/// start: declarations are idempotent only while they are identical everywhere, so this one
/// value is the single source.
public struct Topology: Sendable, Equatable {
    public struct Queue: Sendable, Equatable {
        public var name: String
        /// Routing-key patterns bound on `exchange`.
        public var bindings: [String]
        public var exchange: String
        /// A process's own queue for hints it may lose (wake-ups): classic, not durable,
        /// deleted when its consumer goes and, after a crash, once unused for a minute.
        public var transient: Bool

        public init(name: String, bindings: [String], exchange: String = Topology.eventsExchange, transient: Bool = false) {
            self.name = name
            self.bindings = bindings
            self.exchange = exchange
            self.transient = transient
        }
    }

    public static let eventsExchange = "spotguard.events"
    public static let deadLetterExchange = "spotguard.dlx"
    public static let deadLetterQueue = "spotguard.dead-letters"
    /// Handler failures a consumer tolerates before it dead-letters a message with the reason.
    public static let maxHandlerAttempts = 5
    /// The broker's own limit (quorum `x-delivery-limit`), above the consumer's, so a message
    /// that crashes its consumer every time still ends in the dead-letter queue.
    public static let brokerDeliveryLimit = maxHandlerAttempts + 2

    public var queues: [Queue]

    public init(queues: [Queue]) {
        self.queues = queues
    }

    /// One durable quorum queue per consuming service; copies of a service compete on it.
    public static let standard = Topology(queues: [
        Queue(name: "spotguard.sef", bindings: [RoutingKey.pricingReported, RoutingKey.pricingSubmitted, RoutingKey.heartbeatReceived]),
        // the replica coordinator answers calls relayed by the HTTP services
        Queue(name: "spotguard.replicas", bindings: [ReplicaOperation.routingPrefix + "*"]),
        Queue(
            name: "spotguard.decisions",
            bindings: [
                RoutingKey.pricingCleaned, RoutingKey.switchReported, RoutingKey.interruptionRebalance, RoutingKey.interruptionTermination,
                RoutingKey.configChanged,
            ]),
        Queue(
            name: "spotguard.notifier",
            bindings: [
                RoutingKey.qualityAlert, RoutingKey.failoverCompleted, RoutingKey.failoverFailed, RoutingKey.agentOffline, RoutingKey.replicaPromoted,
                RoutingKey.replicaAlert, RoutingKey.switchReported,
            ]),
    ])

    public func adding(_ queue: Queue) -> Topology {
        Topology(queues: queues + [queue])
    }
}
