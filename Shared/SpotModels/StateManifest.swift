import Foundation

/// One version of a workload's state: its files, each cut into fixed 1 MiB chunks named by
/// their SHA-256 (the last chunk of a file may be shorter, an empty file has none). A chunk
/// that did not change between versions has the same name, so only changed chunks travel.
///
/// `kind` says what the agent's `state_path` is: a `file` (one entry, restored to that path)
/// or a `directory` (entries by relative path, restored as a whole). `store` says where the
/// chunks are: `spotguard` (through ingest, kept in PostgreSQL) or `s3` (the customer's bucket,
/// `location` = `s3://bucket/prefix`, written and read by the agents with their own role).
public struct StateManifest: Codable, Sendable, Equatable {
    public struct File: Codable, Sendable, Equatable {
        public var path: String
        public var size: Int64
        /// Permission bits (0…0o7777); nil keeps the restoring side's default.
        public var mode: Int?
        public var chunks: [String]

        public init(path: String, size: Int64, mode: Int?, chunks: [String]) {
            self.path = path
            self.size = size
            self.mode = mode
            self.chunks = chunks
        }
    }

    public var kind: String
    public var store: String
    public var location: String?
    public var files: [File]

    public init(kind: String, store: String, location: String?, files: [File]) {
        self.kind = kind
        self.store = store
        self.location = location
        self.files = files
    }

    public static let chunkSize = 1 << 20
    public static let maxFiles = 100_000
    /// 64 GiB: far above what a notice's two minutes can restore, a bound on nonsense.
    public static let maxTotalBytes: Int64 = 64 << 30

    public var totalBytes: Int64 { files.reduce(0) { $0 + $1.size } }
    /// Every chunk the version needs, each once.
    public var chunkSet: Set<String> { Set(files.flatMap(\.chunks)) }

    /// The number of chunks a file of `size` bytes is cut into.
    public static func chunkCount(_ size: Int64) -> Int { Int((size + Int64(chunkSize) - 1) / Int64(chunkSize)) }

    /// Refuses a manifest that could not be restored safely: an unknown kind or store, a path
    /// that leaves the state directory, duplicate paths, a chunk list that does not match the
    /// size, a chunk name that is not a SHA-256.
    public func validate() throws(ValidationError) {
        guard ["file", "directory"].contains(kind) else {
            throw ValidationError(code: "invalid_value", field: "kind", message: "kind must be file or directory")
        }
        switch store {
        case "spotguard":
            guard location == nil else { throw ValidationError(code: "invalid_value", field: "location", message: "location is only for the s3 store") }
        case "s3":
            guard let location, Self.s3Location(location) != nil else {
                throw ValidationError(code: "invalid_value", field: "location", message: "the s3 store needs location = s3://bucket/prefix")
            }
        default:
            throw ValidationError(code: "invalid_value", field: "store", message: "store must be spotguard or s3")
        }
        guard files.count <= Self.maxFiles else {
            throw ValidationError(code: "out_of_range", field: "files", message: "at most \(Self.maxFiles) files")
        }
        if kind == "file", files.count != 1 {
            throw ValidationError(code: "invalid_value", field: "files", message: "a file state has exactly one entry")
        }
        var seen: Set<String> = []
        for (i, file) in files.enumerated() {
            let field = "files[\(i)]"
            guard Self.isSafeRelativePath(file.path) else {
                throw ValidationError(code: "invalid_path", field: "\(field).path", message: "a relative path without . or .. components, at most 1024 bytes")
            }
            guard seen.insert(file.path).inserted else {
                throw ValidationError(code: "duplicate_path", field: "\(field).path", message: "\(file.path) is listed twice")
            }
            guard file.size >= 0, file.size <= Self.maxTotalBytes else {
                throw ValidationError(code: "out_of_range", field: "\(field).size", message: "size must be between 0 and \(Self.maxTotalBytes)")
            }
            if let mode = file.mode, !(0...0o7777).contains(mode) {
                throw ValidationError(code: "out_of_range", field: "\(field).mode", message: "mode must be between 0 and 4095 (0o7777)")
            }
            guard file.chunks.count == Self.chunkCount(file.size) else {
                throw ValidationError(
                    code: "invalid_chunks", field: "\(field).chunks", message: "a file of \(file.size) bytes has \(Self.chunkCount(file.size)) chunks of 1 MiB")
            }
            if let bad = file.chunks.firstIndex(where: { !Self.isChunkName($0) }) {
                throw ValidationError(code: "invalid_chunk_name", field: "\(field).chunks[\(bad)]", message: "a chunk is named by its SHA-256 in lowercase hex")
            }
        }
        guard totalBytes <= Self.maxTotalBytes else {
            throw ValidationError(code: "out_of_range", field: "files", message: "at most \(Self.maxTotalBytes) bytes in all")
        }
    }

    /// 64 lowercase hex digits.
    public static func isChunkName(_ s: String) -> Bool {
        s.utf8.count == 64 && s.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    public static func isSafeRelativePath(_ path: String) -> Bool {
        guard !path.isEmpty, path.utf8.count <= 1024, !path.hasPrefix("/"), !path.contains("\0") else { return false }
        return path.split(separator: "/", omittingEmptySubsequences: false).allSatisfy { !$0.isEmpty && $0 != "." && $0 != ".." }
    }

    /// `s3://bucket/prefix` → (bucket, prefix without slashes at either end); nil when malformed.
    public static func s3Location(_ location: String) -> (bucket: String, prefix: String)? {
        guard location.hasPrefix("s3://") else { return nil }
        let rest = location.dropFirst(5)
        let parts = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        let bucket = String(parts[0])
        // S3's rules for bucket names: 3–63 of lowercase letters, digits, dots and hyphens
        guard (3...63).contains(bucket.count),
            bucket.utf8.allSatisfy({ (0x61...0x7a).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2e || $0 == 0x2d })
        else { return nil }
        let prefix = parts.count > 1 ? parts[1].trimmingCharacters(in: CharacterSet(charactersIn: "/")) : ""
        return (bucket, prefix)
    }

    /// Lowercase hex (a chunk's name).
    public static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The bytes of an even number of hex digits (checked by the caller, `isChunkName`).
    public static func bytes(hex: String) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(hex.utf8.count / 2)
        var high: UInt8?
        for c in hex.utf8 {
            let v: UInt8 = c <= 0x39 ? c &- 0x30 : (c | 0x20) &- 0x61 &+ 10
            if let h = high {
                bytes.append(h << 4 | v)
                high = nil
            } else {
                high = v
            }
        }
        return bytes
    }
}
