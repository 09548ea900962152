import Foundation

/// Why a request or message was refused: a stable machine-readable `code`, the offending
/// `field` (snake_case path, e.g. `pools[2].price`) and a sentence for people.
public struct ValidationError: Error, Equatable, Sendable, CustomStringConvertible {
    public var code: String
    public var field: String?
    public var message: String

    public init(code: String, field: String?, message: String) {
        self.code = code
        self.field = field
        self.message = message
    }

    public var description: String { "\(code) (\(field ?? "-")): \(message)" }

    public static func missing(_ field: String) -> Self {
        .init(code: "missing_field", field: field, message: "\(field) is required")
    }

    /// Maps a JSON decoding failure to the field it concerns.
    public init(decoding error: DecodingError) {
        switch error {
        case .keyNotFound(let key, let ctx):
            let field = Self.path(ctx.codingPath + [key])
            self.init(code: "missing_field", field: field, message: "\(field) is required")
        case .typeMismatch(let type, let ctx):
            let field = Self.path(ctx.codingPath)
            self.init(code: "invalid_type", field: field, message: "\(field) must be of type \(Self.jsonType(type))")
        case .valueNotFound(let type, let ctx):
            let field = Self.path(ctx.codingPath)
            self.init(code: "invalid_type", field: field, message: "\(field) must be of type \(Self.jsonType(type)), not null")
        case .dataCorrupted(let ctx) where ctx.codingPath.isEmpty:
            self.init(code: "invalid_json", field: nil, message: "the body is not valid JSON")
        case .dataCorrupted(let ctx):
            let field = Self.path(ctx.codingPath)
            self.init(code: "invalid_value", field: field, message: "\(field): \(ctx.debugDescription)")
        @unknown default:
            self.init(code: "invalid_json", field: nil, message: "the body could not be decoded")
        }
    }

    static func path(_ keys: [any CodingKey]) -> String {
        var out = ""
        for key in keys {
            if let i = key.intValue {
                out += "[\(i)]"
            } else {
                if !out.isEmpty { out += "." }
                out += snakeCase(key.stringValue)
            }
        }
        return out.isEmpty ? "body" : out
    }

    static func snakeCase(_ s: String) -> String {
        var out = ""
        for ch in s {
            if ch.isUppercase {
                out += "_" + ch.lowercased()
            } else {
                out.append(ch)
            }
        }
        return out
    }

    static func jsonType(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "string"
        case is Double.Type, is Int.Type, is Float.Type: "number"
        case is Bool.Type: "boolean"
        default: "\(type)".hasPrefix("Array") ? "array" : "object"
        }
    }
}
