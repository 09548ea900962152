/// One result row in text format, decoded by column position.
public struct PGRow: Sendable {
    public let columns: [String]
    public let values: [String?]

    public var count: Int { values.count }
    public func isNull(_ index: Int) -> Bool { values[index] == nil }

    public func decode<T: PGDecodable>(_ type: T.Type, at index: Int) throws -> T {
        guard index < values.count else { throw PGError(.decoding, message: "no column \(index)") }
        guard let text = values[index] else {
            throw PGError(.decoding, message: "column \(columns[index]) is NULL, expected \(T.self)")
        }
        return try T(pgText: text)
    }

    public func decodeIfPresent<T: PGDecodable>(_ type: T.Type, at index: Int) throws -> T? {
        guard index < values.count else { throw PGError(.decoding, message: "no column \(index)") }
        return try values[index].map { try T(pgText: $0) }
    }
}
