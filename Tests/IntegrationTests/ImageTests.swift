import Foundation
import Testing
import ToolSupport

extension IntegrationTests {
    /// deploy/Dockerfile's runtime image can run what it ships. No Docker engine runs here, so
    /// the check reads the image's recipe: each executable the build stage copies, built here for
    /// the same Debian release, needs (by `ldd`) system libraries whose packages the runtime
    /// stage installs or that come with them or with the base image's apt. Swift's own runtime is
    /// linked in (`--static-swift-stdlib`), so the libraries it needs count and it does not.
    @Suite struct ImageTests {
        @Test func everyExecutableInTheImageFindsItsLibraries() async throws {
            let recipe = try String(contentsOf: TestStack.repoRoot.appendingPathComponent("deploy/Dockerfile"), encoding: .utf8)
            let stages = recipe.components(separatedBy: "\nFROM ")
            let shipped = try #require(
                recipe.firstMatch(of: /for product in ([a-z ]+); do/).map { $0.1.split(separator: " ").map { "spotguard-\($0)" } })
            #expect(!shipped.contains("spotguard-bench") && !shipped.contains("spotguard-sim"), "no bench or fault tooling in the image")
            #expect(stages.first?.hasPrefix("# ") == true && recipe.contains("FROM swift:6.3-"), "built with the Swift release of development")
            let runtime = try #require(stages.last)
            #expect(runtime.hasPrefix("debian:bookworm-slim"), "the release the tests build for")
            let installed = try #require(runtime.firstMatch(of: /apt-get install -y --no-install-recommends ([a-z0-9. +-]+?) *\\?\n? *&&/))
                .1.split(separator: " ").map(String.init)
            let available = Self.closure(of: installed + ["apt", "libc6"], in: try await Self.dependencies())
            var needs: [String: [String]] = [:]
            for executable in shipped { needs[executable] = try await Self.systemLibraries(of: try TestStack.binDir + "/" + executable) }
            let owners = try await Self.packages(owning: Set(needs.values.joined()))
            for (executable, libraries) in needs.sorted(by: { $0.key < $1.key }) {
                let missing = libraries.filter { !available.contains(owners[$0] ?? "?") }.map { "\($0) (\(owners[$0] ?? "no package"))" }
                #expect(missing.isEmpty, "\(executable) needs what the image does not install: \(missing)")
            }
        }

        /// Output of a tool, or a failure naming it.
        static func output(_ tool: String, _ arguments: [String]) async throws -> String {
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("image-\(UUID()).txt").path
            defer { try? FileManager.default.removeItem(atPath: file) }
            let status = try await ChildProcess(tool, arguments, output: file).exitStatus()
            let text = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
            guard status == 0 else { throw ToolFailed(description: "\(tool) \(arguments.joined(separator: " ")) exited \(status): \(text.prefix(300))") }
            return text
        }

        struct ToolFailed: Error, CustomStringConvertible { var description: String }

        /// The libraries `ldd` resolves for `binary`, less Swift's runtime (the image links it in).
        static func systemLibraries(of binary: String) async throws -> [String] {
            try await output("/usr/bin/ldd", [binary]).split(separator: "\n").compactMap { line -> String? in
                let parts = line.split(separator: " ")
                guard parts.count >= 3, parts[1] == "=>", !parts[2].contains("/swift/") else { return nil }
                return parts[0].trimmingCharacters(in: .whitespaces)
            }
        }

        /// The Debian package holding each library of these names.
        static func packages(owning libraries: Set<String>) async throws -> [String: String] {
            let found = try await output("/usr/bin/dpkg", ["-S"] + libraries.sorted().map { "*/\($0)" })
            var owners: [String: String] = [:]
            for line in found.split(separator: "\n") {
                let package = String(line.prefix { $0 != ":" })
                if let path = line.split(separator: " ").last, let name = path.split(separator: "/").last { owners[String(name)] = package }
            }
            return owners
        }

        /// Each installed package's dependencies (alternatives included), from this machine's
        /// package database.
        static func dependencies() async throws -> [String: [String]] {
            let listed = try await output("/usr/bin/dpkg-query", ["-W", "-f=${Package}\t${Pre-Depends}, ${Depends}\n"])
            var map: [String: [String]] = [:]
            for line in listed.split(separator: "\n") {
                let fields = line.split(separator: "\t", maxSplits: 1)
                guard let name = fields.first else { continue }
                map[String(name), default: []] += (fields.count > 1 ? fields[1] : "").split(whereSeparator: { $0 == "," || $0 == "|" }).compactMap {
                    let dependency = $0.trimmingCharacters(in: .whitespaces).prefix { $0 != " " && $0 != ":" }
                    return dependency.isEmpty ? nil : String(dependency)
                }
            }
            return map
        }

        /// `packages` and everything they depend on.
        static func closure(of packages: [String], in dependencies: [String: [String]]) -> Set<String> {
            var seen: Set<String> = []
            var todo = packages
            while let next = todo.popLast() {
                guard seen.insert(next).inserted else { continue }
                todo += (dependencies[next] ?? []).filter { !seen.contains($0) }
            }
            return seen
        }
    }
}
