import Foundation
import Logging

/// How every SpotGuard executable writes its log on standard error, from the environment:
/// `SPOTGUARD_LOG_LEVEL` (a swift-log level) and `SPOTGUARD_LOG_FORMAT`, `text` (swift-log's
/// lines, the default) or `json` (one object a line, keys sorted: `time`, `level`, `logger`,
/// `message`, `source`, `error` when there is one, and each metadata key as it is, such as
/// `hb.request.id` on a request's lines; one named like those is kept as `metadata.<key>`).
public enum LogOutput {
    public enum Format: String, CaseIterable, Sendable {
        case text, json
    }

    /// The level and format `environment` asks for; a value that is neither is a usage problem
    /// that names the variable and what it may be.
    public static func settings(_ environment: [String: String], defaultLevel: Logger.Level) throws -> (level: Logger.Level, format: Format) {
        func parsed<T>(_ variable: String, _ make: (String) -> T?, _ allowed: [String], default value: T) throws -> T {
            guard let raw = environment[variable], !raw.isEmpty else { return value }
            guard let parsed = make(raw.lowercased()) else {
                throw UsageProblem("configuration error: \(variable) must be one of \(allowed.joined(separator: ", ")) (it is \"\(raw)\")")
            }
            return parsed
        }
        return (
            try parsed("SPOTGUARD_LOG_LEVEL", Logger.Level.init(rawValue:), Logger.Level.allCases.map(\.rawValue), default: defaultLevel),
            try parsed("SPOTGUARD_LOG_FORMAT", Format.init(rawValue:), Format.allCases.map(\.rawValue), default: .text)
        )
    }

    /// Sets the process's log handler; once, from `main`.
    public static func bootstrap(level: Logger.Level, format: Format) {
        LoggingSystem.bootstrap { label in
            switch format {
            case .text:
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            case .json:
                return JSONLogHandler(label: label, level: level)
            }
        }
    }
}

/// One JSON object a line on standard error (`SPOTGUARD_LOG_FORMAT=json`).
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let label: String
    let write: @Sendable (String) -> Void

    public init(label: String, level: Logger.Level, write: @escaping @Sendable (String) -> Void = JSONLogHandler.standardError) {
        self.label = label
        self.logLevel = level
        self.write = write
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = metadata
        if let provided = metadataProvider?.get() { fields.merge(provided) { _, new in new } }
        if let own = event.metadata { fields.merge(own) { _, new in new } }
        var object: [String: Any] = [:]
        for (key, value) in fields { object[key] = Self.plain(value) }
        var reserved: [String: Any] = [
            "time": Date().formatted(Self.time), "level": event.level.rawValue, "logger": label, "message": event.message.description,
            "source": event.source,
        ]
        if let error = event.error { reserved["error"] = String(describing: error) }
        for (key, value) in reserved {
            if let taken = object.removeValue(forKey: key) { object["metadata.\(key)"] = taken }
            object[key] = value
        }
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else { return }
        write(String(decoding: data, as: UTF8.self) + "\n")
    }

    static let time = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    /// A line to standard error; one that cannot be written (the reader gone) is dropped, as
    /// swift-log's own handler does, instead of trapping as `FileHandle.write(_:)` does.
    public static let standardError: @Sendable (String) -> Void = { line in
        try? FileHandle.standardError.write(contentsOf: Data(line.utf8))
    }

    static func plain(_ value: Logger.Metadata.Value) -> Any {
        switch value {
        case .string(let s): s
        case .stringConvertible(let s): s.description
        case .array(let values): values.map(plain)
        case .dictionary(let d): d.mapValues(plain)
        }
    }
}
