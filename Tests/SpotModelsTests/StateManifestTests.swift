import Foundation
import SpotModels
import Testing

/// What makes a state version safe to restore.
@Suite struct StateManifestTests {
    static let chunk = String(repeating: "ab", count: 32)

    static func problem(_ manifest: StateManifest) -> String? {
        do {
            try manifest.validate()
            return nil
        } catch {
            return "\(error.code) \(error.field ?? "-")"
        }
    }

    static func directory(_ files: [StateManifest.File], store: String = "spotguard", location: String? = nil) -> StateManifest {
        StateManifest(kind: "directory", store: store, location: location, files: files)
    }

    @Test func aWellFormedVersionPasses() {
        let files = [
            StateManifest.File(path: "db/main.db", size: (1 << 20) + 1, mode: 0o600, chunks: [Self.chunk, Self.chunk]),
            StateManifest.File(path: "empty", size: 0, mode: nil, chunks: []),
        ]
        #expect(Self.problem(Self.directory(files)) == nil)
        #expect(Self.problem(Self.directory(files, store: "s3", location: "s3://spotguard-state-acme/fleet/")) == nil)
        #expect(Self.directory(files).chunkSet == [Self.chunk] && Self.directory(files).totalBytes == (1 << 20) + 1)
    }

    @Test func pathsCannotLeaveTheStateDirectory() {
        for path in ["../x", "a/../../x", "/etc/passwd", "a//b", "./a", "", "a/"] {
            #expect(Self.problem(Self.directory([.init(path: path, size: 0, mode: nil, chunks: [])])) == "invalid_path files[0].path", "\(path)")
        }
        let twice = [StateManifest.File(path: "a", size: 0, mode: nil, chunks: []), .init(path: "a", size: 0, mode: nil, chunks: [])]
        #expect(Self.problem(Self.directory(twice)) == "duplicate_path files[1].path")
    }

    @Test func chunksMustMatchTheSizeAndBeSHA256Names() {
        #expect(Self.problem(Self.directory([.init(path: "a", size: 3 << 20, mode: nil, chunks: [Self.chunk])])) == "invalid_chunks files[0].chunks")
        #expect(
            Self.problem(Self.directory([.init(path: "a", size: 1, mode: nil, chunks: [String(repeating: "AB", count: 32)])]))
                == "invalid_chunk_name files[0].chunks[0]")
        #expect(Self.problem(Self.directory([.init(path: "a", size: -1, mode: nil, chunks: [])])) == "out_of_range files[0].size")
        #expect(Self.problem(Self.directory([.init(path: "a", size: 0, mode: 0o10000, chunks: [])])) == "out_of_range files[0].mode")
    }

    @Test func theStoreAndKindAreChecked() {
        #expect(Self.problem(Self.directory([], store: "s3")) == "invalid_value location")
        #expect(Self.problem(Self.directory([], store: "s3", location: "s3://UPPER/x")) == "invalid_value location")
        #expect(Self.problem(Self.directory([], store: "spotguard", location: "s3://spotguard-state-a/x")) == "invalid_value location")
        #expect(Self.problem(Self.directory([], store: "gcs")) == "invalid_value store")
        #expect(Self.problem(StateManifest(kind: "file", store: "spotguard", location: nil, files: [])) == "invalid_value files")
        #expect(StateManifest.s3Location("s3://spotguard-state-a/fleet/x/")! == ("spotguard-state-a", "fleet/x"))
    }

    @Test func hexRoundTrips() {
        let bytes: [UInt8] = [0, 1, 0x7f, 0x80, 0xfe, 0xff]
        #expect(StateManifest.hex(bytes) == "00017f80feff")
        #expect(StateManifest.bytes(hex: "00017f80feff") == bytes)
    }
}
