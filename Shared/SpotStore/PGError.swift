import SpotModels

/// A database failure. `description` names the SQLSTATE and the server's primary message but
/// leaves out DETAIL, which may quote row values.
public struct PGError: TransientFailure, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case connection
        case query
        case decoding
        case shutdown
    }

    public var code: Code
    public var sqlState: String?
    public var message: String
    public var detail: String?

    public init(_ code: Code, sqlState: String? = nil, message: String, detail: String? = nil) {
        self.code = code
        self.sqlState = sqlState
        self.message = message
        self.detail = detail
    }

    /// Serialization failure, deadlock, or a broken connection: the whole unit of work may run again.
    public var isRetryable: Bool {
        code == .connection || sqlState == "40001" || sqlState == "40P01" || (sqlState?.hasPrefix("08") ?? false)
    }

    /// The database is unreachable or restarting (as opposed to refusing this statement):
    /// worth waiting for rather than giving up on the work.
    public var isOutage: Bool {
        code == .connection || (sqlState?.hasPrefix("08") ?? false) || ["57P01", "57P02", "57P03"].contains(sqlState ?? "")
    }

    /// Nothing about the statement is wrong; the server could not run it now: unreachable or
    /// restarting, read-only (a standby, or a primary being demoted), out of connections,
    /// memory or disk, or a serialization failure that outlived the transaction's own retries.
    public var isTransient: Bool {
        guard !isOutage, !isRetryable else { return true }
        guard let sqlState else { return false }
        return sqlState == "25006" || sqlState.hasPrefix("53")
    }

    public var description: String {
        "postgres \(code.rawValue) error\(sqlState.map { " [\($0)]" } ?? ""): \(message)"
    }
}
