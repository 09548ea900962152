import Foundation

/// Bounds that agent input must respect. Defaults suit a production fleet; services may
/// override them from configuration.
public struct IngestLimits: Sendable, Equatable {
    /// The highest believable price in $/hour (the largest EC2 instances cost a few hundred).
    public var maxPrice: Double = 1_000
    /// How far ahead of the server's clock a timestamp may be (clock skew).
    public var maxFutureSkew: TimeInterval = 300
    /// How old a timestamp may be: agents spool reports during outages and replay them later.
    public var maxAge: TimeInterval = 7 * 86_400
    /// Pools in one pricing report.
    public var maxPoolsPerReport = 500

    public init() {}
}

/// Field checks shared by every request type. Each returns the validated value or throws a
/// `ValidationError` naming the field.
public struct FieldChecker: Sendable {
    public var limits: IngestLimits
    public var now: Date

    public init(limits: IngestLimits, now: Date) {
        self.limits = limits
        self.now = now
    }

    public func required<T>(_ value: T?, _ field: String) throws -> T {
        guard let value else { throw ValidationError.missing(field) }
        return value
    }

    /// A free-text field: trimmed of nothing, but bounded and free of control characters.
    public func text(_ value: String?, _ field: String, maxLength: Int) throws -> String? {
        guard let value else { return nil }
        guard !value.isEmpty else {
            throw ValidationError(code: "invalid_value", field: field, message: "\(field) must not be empty")
        }
        // characters as PostgreSQL counts them (code points), not as Swift does (graphemes): a
        // name of combining marks within the one bound could exceed a column's
        guard value.unicodeScalars.count <= maxLength else {
            throw ValidationError(code: "string_too_long", field: field, message: "\(field) is longer than \(maxLength) characters")
        }
        guard !value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw ValidationError(code: "invalid_value", field: field, message: "\(field) contains control characters")
        }
        return value
    }

    /// An identifier-like field: letters, digits and `._:@/-`.
    public func identifier(_ value: String?, _ field: String, maxLength: Int) throws -> String? {
        guard let value = try text(value, field, maxLength: maxLength) else { return nil }
        guard Syntax.isIdentifier(value) else {
            throw ValidationError(
                code: "invalid_value", field: field, message: "\(field) may contain only letters, digits and . _ : @ / -")
        }
        return value
    }

    public func parsed<T: RawRepresentable>(_ value: String?, _ field: String, as type: T.Type, what: String) throws -> T?
    where T.RawValue == String {
        guard let value else { return nil }
        guard let parsed = T(rawValue: value) else {
            throw ValidationError(
                code: "invalid_\(what.replacingOccurrences(of: " ", with: "_"))", field: field,
                message: "\(field) is not a valid \(what): '\(value.prefix(80))'")
        }
        return parsed
    }

    public func oneOf<T: RawRepresentable & CaseIterable>(_ value: String?, _ field: String, _ type: T.Type) throws -> T?
    where T.RawValue == String {
        guard let value else { return nil }
        guard let parsed = T(rawValue: value) else {
            let allowed = T.allCases.map(\.rawValue).joined(separator: ", ")
            throw ValidationError(code: "invalid_enum", field: field, message: "\(field) must be one of: \(allowed)")
        }
        return parsed
    }

    /// The smallest price the tables hold (six decimals): anything smaller would be stored as 0,
    /// which they refuse, so the report would be accepted and then lost.
    public static let minPrice = 0.000001

    /// A price in $/hour: finite, at least `minPrice`, at most `limits.maxPrice`.
    public func price(_ value: Double?, _ field: String) throws -> Double? {
        guard let value else { return nil }
        guard value.isFinite, value >= Self.minPrice, value <= limits.maxPrice else {
            throw ValidationError(
                code: "invalid_price", field: field,
                message: "\(field) must be a price of at least 0.000001 and at most \(Int(limits.maxPrice)) $/hour")
        }
        return value
    }

    /// A timestamp neither in the future beyond clock skew nor older than `limits.maxAge`.
    public func timestamp(_ value: Date?, _ field: String) throws -> Date? {
        guard let value else { return nil }
        if value.timeIntervalSince(now) > limits.maxFutureSkew {
            throw ValidationError(code: "timestamp_in_future", field: field, message: "\(field) is in the future")
        }
        if now.timeIntervalSince(value) > limits.maxAge {
            throw ValidationError(
                code: "timestamp_too_old", field: field,
                message: "\(field) is older than \(Int(limits.maxAge / 86_400)) days")
        }
        return value
    }

    public func uuid(_ value: String?, _ field: String) throws -> UUID? {
        guard let value else { return nil }
        guard let id = UUID(uuidString: value) else {
            throw ValidationError(code: "invalid_uuid", field: field, message: "\(field) must be a UUID")
        }
        return id
    }

    public func ipAddress(_ value: String?, _ field: String) throws -> String? {
        guard let value else { return nil }
        guard Syntax.isIPv4(value) || Syntax.isIPv6(value) else {
            throw ValidationError(code: "invalid_ip", field: field, message: "\(field) must be an IPv4 or IPv6 address")
        }
        return value
    }
}

extension FieldChecker {
    /// A new client's name (1 to 255 characters without control characters, not only spaces,
    /// trimmed of spaces) and e-mail address (`local@domain.tld`, at most 255): as the console's
    /// admin API and ingest's bootstrap route both take them.
    public func client(name: String?, email: String?) throws -> (name: String, email: String?) {
        let name = try required(text(name, "name", maxLength: 255), "name").trimmingCharacters(in: .whitespaces)
        guard !name.isEmpty else { throw ValidationError(code: "invalid_value", field: "name", message: "name must not be only spaces") }
        let email = try text(email, "email", maxLength: 255)
        if let email, email.wholeMatch(of: /[^@\s]+@[^@\s]+\.[^@\s]+/) == nil {
            throw ValidationError(code: "invalid_email", field: "email", message: "email is not an e-mail address")
        }
        return (name, email)
    }
}
