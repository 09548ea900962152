import Foundation

/// An EC2 Query API request's parameters (`Action=…&Version=…&InstanceId.1=…`), from a form
/// body or a query string.
public struct EC2Request: Sendable, Equatable {
    public var parameters: [String: String]

    public init(parameters: [String: String]) { self.parameters = parameters }

    /// `application/x-www-form-urlencoded`: `+` is a space, `%XX` a byte; a key given twice keeps its first value.
    public init(form: String) {
        var out: [String: String] = [:]
        for pair in form.split(separator: "&", omittingEmptySubsequences: true) {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ s: Substring) -> String { s.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(s) }
            let key = decode(kv[0])
            if out[key] == nil { out[key] = kv.count > 1 ? decode(kv[1]) : "" }
        }
        parameters = out
    }

    public subscript(_ key: String) -> String? { parameters[key] }
    public var action: String? { parameters["Action"] }

    /// `prefix.1`, `prefix.2`, … in numeric order.
    public func list(_ prefix: String) -> [String] {
        indices(prefix).compactMap { parameters["\(prefix).\($0)"] }
    }

    /// The numbers N of keys `prefix.N` or `prefix.N.…`, ascending.
    public func indices(_ prefix: String) -> [Int] {
        let head = prefix + "."
        return Set(
            parameters.keys.compactMap { key -> Int? in
                guard key.hasPrefix(head) else { return nil }
                return Int(key.dropFirst(head.count).prefix { $0 != "." })
            }
        ).sorted()
    }

    /// `Filter.N.Name` / `Filter.N.Value.M` as name → values.
    public var filters: [String: [String]] {
        var out: [String: [String]] = [:]
        for i in indices("Filter") {
            guard let name = parameters["Filter.\(i).Name"] else { continue }
            out[name, default: []] += list("Filter.\(i).Value")
        }
        return out
    }

    /// `prefix.N.Key` / `prefix.N.Value` as key → value.
    public func tags(_ prefix: String) -> [String: String] {
        var out: [String: String] = [:]
        for i in indices(prefix) {
            if let key = parameters["\(prefix).\(i).Key"] { out[key] = parameters["\(prefix).\(i).Value"] ?? "" }
        }
        return out
    }
}

/// An XML element of an EC2 answer.
public indirect enum XMLElement: Sendable, Equatable {
    case text(String, String)
    case node(String, [XMLElement])

    /// `<name><item>…</item>…</name>`: EC2's list shape.
    public static func set(_ name: String, _ items: [[XMLElement]]) -> XMLElement { .node(name, items.map { .node("item", $0) }) }

    public var rendered: String {
        switch self {
        case .text(let name, let value): "<\(name)>\(Self.escape(value))</\(name)>"
        case .node(let name, let children): "<\(name)>\(children.map(\.rendered).joined())</\(name)>"
        }
    }

    public static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.count)
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default: out.append(c)
            }
        }
        return out
    }
}

/// EC2's answer documents, as AWS sends them.
public enum EC2Answer {
    public static let namespace = "http://ec2.amazonaws.com/doc/2016-11-15/"

    public static func document(action: String, requestId: String, _ body: [XMLElement]) -> String {
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<\(action)Response xmlns=\"\(namespace)\">"
            + XMLElement.text("requestId", requestId).rendered + body.map(\.rendered).joined() + "</\(action)Response>"
    }

    public static func error(code: String, message: String, requestId: String) -> String {
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>" + XMLElement.text("Code", code).rendered
            + XMLElement.text("Message", message).rendered + "</Error></Errors>" + XMLElement.text("RequestID", requestId).rendered + "</Response>"
    }

    /// EC2's timestamps: UTC with milliseconds.
    public static func time(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    /// An ISO 8601 time with or without fractional seconds (EC2's and SpotGuard's).
    public static func parseTime(_ s: String) -> Date? {
        (try? Date(s, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true))) ?? (try? Date(s, strategy: .iso8601))
    }
}
