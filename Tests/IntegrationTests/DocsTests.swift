import Foundation
import Testing
import ToolSupport

/// The documentation's runnable examples, run as written against the test stack, so they
/// cannot rot. A fenced block whose info string is `sh runnable` runs with bash (`set -euo
/// pipefail`) in a folder whose `.spotguard/env` points at the test stack and a running ingest,
/// with the executables on PATH. A comment `# => text` expects `text` in what the block printed
/// so far (standard output and error, in order); `...` inside it stands for anything.
@Suite(.serialized) struct DocsTests {
    struct Block: Sendable, CustomTestStringConvertible {
        var file: String
        var line: Int
        var script: String
        var testDescription: String { "\(file):\(line)" }

        /// What the `# => ` lines expect, each as the pieces between its `...`s.
        var expectations: [[String]] {
            script.split(separator: "\n").compactMap { line in
                let text = line.trimmingCharacters(in: .whitespaces)
                guard text.hasPrefix("# => ") else { return nil }
                return text.dropFirst(5).components(separatedBy: "...").filter { !$0.isEmpty }
            }
        }
    }

    static func blocks() throws -> [Block] {
        let root = TestStack.repoRoot
        let docs = try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("docs").path)
            .filter { $0.hasSuffix(".md") }.sorted().map { "docs/\($0)" }
        var blocks: [Block] = []
        for file in ["README.md"] + docs {
            let lines = try String(contentsOf: root.appendingPathComponent(file), encoding: .utf8).components(separatedBy: "\n")
            var i = 0
            while i < lines.count {
                if lines[i].trimmingCharacters(in: .whitespaces) == "```sh runnable" {
                    let start = i + 1
                    var end = start
                    while end < lines.count, lines[end].trimmingCharacters(in: .whitespaces) != "```" { end += 1 }
                    blocks.append(Block(file: file, line: start, script: lines[start..<end].joined(separator: "\n")))
                    i = end
                }
                i += 1
            }
        }
        return blocks
    }

    /// The expectations not met: each one's pieces must appear in order, after what the earlier
    /// ones matched.
    static func unmet(_ expectations: [[String]], in output: String) -> [String] {
        var rest = Substring(output)
        for pieces in expectations {
            for piece in pieces {
                guard let found = rest.range(of: piece) else { return [pieces.joined(separator: "...")] }
                rest = rest[found.upperBound...]
            }
        }
        return []
    }

    @Test func theDocsHaveRunnableBlocks() throws {
        let blocks = try Self.blocks()
        #expect(blocks.count >= 3, "\(blocks.map(\.testDescription))")
        #expect(blocks.contains { $0.file == "README.md" }, "the README's tour is runnable")
        #expect(blocks.allSatisfy { !$0.expectations.isEmpty }, "every runnable block says what it expects")
    }

    @Test func theMatcherRefusesWhatIsNotThere() {
        #expect(Self.unmet([["202"]], in: "x 400\n").count == 1)
        #expect(Self.unmet([["{\"error\":", "400"]], in: "{\"error\":{} 400").isEmpty)
        #expect(Self.unmet([["b"], ["a"]], in: "a b").count == 1, "expectations are met in order")
    }

    @Test(arguments: try DocsTests.blocks())
    func runnableBlockRunsAsWritten(_ block: Block) async throws {
        let ingest = try await ServiceProcess.ingest()
        let sef = try await ServiceProcess.start("spotguard-sef", portVariable: "SPOTGUARD_SEF_PORT")
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("docs-\(UUID())")
        try FileManager.default.createDirectory(at: folder.appendingPathComponent(".spotguard"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let stack = ProcessInfo.processInfo.environment["SPOTGUARD_STACK_DIR"] ?? TestStack.repoRoot.appendingPathComponent(".spotguard/test").path
        var env = try String(contentsOfFile: stack + "/env", encoding: .utf8)
        env += "\nexport SPOTGUARD_INGEST_URL='\(ingest.base)'\nexport PATH='\(try TestStack.binDir):'\"$PATH\"\n"
        try env.write(to: folder.appendingPathComponent(".spotguard/env"), atomically: true, encoding: .utf8)
        let script = folder.appendingPathComponent("block.sh")
        try ("set -euo pipefail\ncd '\(folder.path)'\nsource .spotguard/env\n" + block.script + "\n").write(to: script, atomically: true, encoding: .utf8)
        let output = folder.appendingPathComponent("output.txt").path
        let status = try await ChildProcess("/bin/bash", [script.path], output: output, errors: true).exitStatus()
        _ = await sef.stop()
        _ = await ingest.stop()
        let printed = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        #expect(status == 0, "\(block.testDescription) exited \(status):\n\(printed)")
        let unmet = Self.unmet(block.expectations, in: printed)
        #expect(unmet.isEmpty, "\(block.testDescription) did not print \(unmet):\n\(printed)")
    }
}
