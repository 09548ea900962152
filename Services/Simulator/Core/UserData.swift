import Foundation

/// What an instance's user data script sets up: the `export NAME='value'` lines the agent's
/// own user data writes (see the agent's `userData(agent:replica:)`).
public enum UserData {
    public static func exports(_ script: String) -> [String: String] {
        var out: [String: String] = [:]
        for line in script.split(whereSeparator: \.isNewline) {
            let text = line.trimmingCharacters(in: .whitespaces)
            guard text.hasPrefix("export "), let eq = text.firstIndex(of: "=") else { continue }
            let name = text[text.index(text.startIndex, offsetBy: 7)..<eq].trimmingCharacters(in: .whitespaces)
            var value = String(text[text.index(after: eq)...])
            if value.count >= 2, value.first == "'", value.last == "'" {
                value = String(value.dropFirst().dropLast()).replacingOccurrences(of: "'\\''", with: "'")
            }
            out[name] = value
        }
        return out
    }

    /// A script that starts the agent with these settings, quoted for the shell.
    public static func script(_ settings: [(String, String)]) -> String {
        (["#!/bin/sh"] + settings.map { "export \($0.0)='\($0.1.replacingOccurrences(of: "'", with: "'\\''"))'" } + ["exec spotguard-agent run"])
            .joined(separator: "\n") + "\n"
    }
}
