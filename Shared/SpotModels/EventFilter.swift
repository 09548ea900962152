/// A subscription's event filter: exact event types or `prefix.*` patterns; empty matches all.
public enum EventFilter {
    public static func isValid(_ p: String) -> Bool {
        p.count <= 100 && p.wholeMatch(of: /[a-z_]+(\.[a-z_]+)*(\.\*)?|\*/) != nil
    }

    public static func matches(_ patterns: [String], _ eventType: String) -> Bool {
        patterns.isEmpty
            || patterns.contains { p in
                p == "*" || p == eventType || (p.hasSuffix(".*") && eventType.hasPrefix(String(p.dropLast(1))))
            }
    }
}
