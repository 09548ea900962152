import SpotModels

/// Why a bus operation failed. `isRetryable` tells a caller whether the same message may be
/// sent again (consumers are idempotent, so a retry after an in-doubt failure is safe).
public struct BusError: TransientFailure, Equatable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// No connection to the broker right now.
        case notConnected = "not_connected"
        /// The broker refused the message (basic.nack).
        case nacked
        /// No queue is bound for the routing key (mandatory publish returned).
        case unroutable
        /// The broker blocks publishing on this connection (a memory or disk alarm).
        case blocked
        /// No confirm arrived in time: the message may or may not be stored.
        case confirmTimeout = "confirm_timeout"
        /// The connection broke while the message awaited its confirm: in doubt.
        case connectionLost = "connection_lost"
        /// No reply arrived before the request's deadline.
        case replyTimeout = "reply_timeout"
        /// The bus is shutting down.
        case shutdown
        /// A protocol-level failure (declaration refused, login failed, ...).
        case protocolError = "protocol_error"
    }

    public var code: Code
    public var detail: String

    public init(_ code: Code, _ detail: String = "") {
        self.code = code
        self.detail = detail
    }

    public var isRetryable: Bool { code != .unroutable && code != .shutdown }
    /// The broker is out or pushing back: the same message goes through later.
    public var isTransient: Bool { isRetryable }
    public var description: String { detail.isEmpty ? "bus error: \(code.rawValue)" : "bus error: \(code.rawValue): \(detail)" }
}
