import ArgumentParser
import Foundation

/// An error a user can cause and fix (a missing setting, a file that is not there, a server that
/// does not answer): printed as one sentence that names the fix, with its own exit status.
public protocol UserFacingError: Error {
    /// One sentence, the fix included.
    var sentence: String { get }
    /// 2 for configuration, 1 for everything else.
    var exitStatus: Int32 { get }
}

/// A problem with what the user gave a command (a file, a value) found after parsing.
public struct UsageProblem: UserFacingError, CustomStringConvertible {
    public var sentence: String
    public var exitStatus: Int32 { 2 }
    public var description: String { sentence }
    public init(_ sentence: String) { self.sentence = sentence }
}

/// A server or service the command needs does not answer: what, and how to make it answer.
public struct Unreachable: UserFacingError, CustomStringConvertible {
    public var sentence: String
    public var exitStatus: Int32 { 1 }
    public var description: String { sentence }
    public init(_ sentence: String) { self.sentence = sentence }
}

/// How every SpotGuard executable ends a command: errors become one line on stderr,
/// `<executable>: <sentence>`, and an exit status — never a stack of framework text.
/// Parsing itself (unknown options, `--help`, `--version`) is swift-argument-parser's: exit 64
/// with the usage for a bad invocation, 0 for help.
public enum CommandLineRunner {
    /// The running executable's name, as the user typed it.
    public static var executable: String { URL(fileURLWithPath: CommandLine.arguments.first ?? "spotguard").lastPathComponent }

    /// Runs `body`; an error prints one line and exits with its status (see `sentence(for:)`).
    public static func run(_ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let exit as ExitCode {
            throw exit
        } catch {
            let (sentence, status) = describe(error)
            FileHandle.standardError.write(Data("\(executable): \(sentence)\n".utf8))
            throw ExitCode(status)
        }
    }

    /// The line and exit status for an error: its own sentence when it is a `UserFacingError`;
    /// for files, one sentence naming the path; otherwise its description, status 1.
    public static func describe(_ error: any Error) -> (String, Int32) {
        if let error = error as? any UserFacingError { return (error.sentence, error.exitStatus) }
        if let error = error as? CocoaError {
            let path = error.filePath ?? (error.userInfo[NSFilePathErrorKey] as? String) ?? error.url?.path ?? "the file"
            switch error.code {
            case .fileReadNoSuchFile, .fileNoSuchFile:
                return ("cannot read \(path): no such file; check the path", 2)
            case .fileReadNoPermission, .fileWriteNoPermission:
                return ("cannot open \(path): permission denied; check its owner and mode", 2)
            case .fileReadCorruptFile, .fileReadInapplicableStringEncoding:
                return ("cannot read \(path): it is not UTF-8 text in the expected format", 2)
            default:
                return ("cannot use \(path): \(error.localizedDescription)", 1)
            }
        }
        if let error = error as? DecodingError {
            return ("bad input format: \(decodingSummary(error))", 2)
        }
        return ("\(error)", 1)
    }

    private static func decodingSummary(_ error: DecodingError) -> String {
        switch error {
        case .dataCorrupted(let c), .keyNotFound(_, let c), .typeMismatch(_, let c), .valueNotFound(_, let c):
            let path = c.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? c.debugDescription : "\(path): \(c.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }
}

extension CommandConfiguration {
    /// A SpotGuard command: `--version` prints the git revision it was built from.
    public static func spotguard(
        _ name: String, abstract: String, discussion: String = "", subcommands: [any ParsableCommand.Type] = [],
        defaultSubcommand: (any ParsableCommand.Type)? = nil
    ) -> CommandConfiguration {
        CommandConfiguration(
            commandName: name, abstract: abstract, discussion: discussion, version: "\(name) \(Revision.text)",
            subcommands: subcommands, defaultSubcommand: defaultSubcommand)
    }
}
