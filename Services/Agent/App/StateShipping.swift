import Crypto
import Foundation
import SpotCloud
import SpotModels

/// Where a workload's state chunks are kept: SpotGuard's own store through the agent API, or the
/// customer's S3 bucket under `prefix/agent-id/`. Every chunk is checked against its name when
/// read, so a damaged or substituted chunk is never restored.
protocol ChunkStore: Sendable {
    var name: String { get }
    var location: String? { get }
    func put(_ chunk: String, _ data: Data) async throws
    func get(_ chunk: String) async throws -> Data
}

struct StateShippingError: Error, CustomStringConvertible {
    var description: String
}

/// Chunks through ingest (`PUT`/`GET /api/agents/{id}/state/chunks/{sha256}`), kept in PostgreSQL.
/// A server that is busy or away (429, 5xx, no answer) is asked again with backoff, so one
/// refused chunk does not cost the whole version.
struct SpotGuardChunkStore: ChunkStore {
    let api: AgentAPI
    let agent: String
    var name: String { "spotguard" }
    var location: String? { nil }

    func send(_ method: String, _ chunk: String, _ body: Data? = nil) async throws -> AgentAPI.Answer {
        var delay = 0.1
        var attempt = 0
        while true {
            attempt += 1
            do {
                let answer =
                    if let body {
                        try await api.send(method, "/api/agents/\(agent)/state/chunks/\(chunk)", body: body, contentType: "application/octet-stream")
                    } else {
                        try await api.send(method, "/api/agents/\(agent)/state/chunks/\(chunk)")
                    }
                guard answer.status == 429 || answer.status >= 500, attempt < 8 else { return answer }
            } catch let error as CancellationError {
                throw error
            } catch {
                if attempt >= 8 { throw error }
            }
            try await Task.sleep(for: .seconds(delay * Double.random(in: 0.5...1.5)))
            delay = min(2, delay * 2)
        }
    }

    func put(_ chunk: String, _ data: Data) async throws {
        let answer = try await send("PUT", chunk, data)
        guard answer.status == 200 || answer.status == 201 else {
            throw StateShippingError(description: "chunk \(chunk.prefix(12)) refused: \(answer.status) \(answer.errorCode ?? "")")
        }
    }

    func get(_ chunk: String) async throws -> Data {
        let answer = try await send("GET", chunk)
        guard answer.status == 200 else { throw StateShippingError(description: "chunk \(chunk.prefix(12)): \(answer.status) \(answer.errorCode ?? "")") }
        return answer.body
    }
}

/// Chunks in the customer's bucket, written and read with the instance's own role.
struct S3ChunkStore: ChunkStore {
    let s3: S3Client
    let location: String?
    let prefix: String
    var name: String { "s3" }

    init(ec2: EC2Client, location: String, agent: String) throws {
        guard let (bucket, prefix) = StateManifest.s3Location(location) else { throw StateShippingError(description: "not an s3:// location: \(location)") }
        s3 = ec2.s3(bucket: bucket)
        self.location = location
        self.prefix = (prefix.isEmpty ? "" : prefix + "/") + agent + "/"
    }

    func put(_ chunk: String, _ data: Data) async throws { try await s3.putObject(key: prefix + chunk, body: data) }
    func get(_ chunk: String) async throws -> Data { try await s3.getObject(key: prefix + chunk) }
}

/// Reads a state path (a file or a directory) as 1 MiB chunks, file by file in path order, one
/// chunk in memory at a time.
enum StateReader {
    struct Entry {
        var relativePath: String
        var url: URL
        var mode: Int?
    }

    /// The regular files under `path` (or `path` itself), sorted; symbolic links and special
    /// files are left out.
    static func entries(of path: String) throws -> (kind: String, entries: [Entry]) {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDirectory) else { throw StateShippingError(description: "no state at \(path)") }
        func mode(_ p: String) -> Int? { (try? fm.attributesOfItem(atPath: p)[.posixPermissions] as? NSNumber)?.intValue }
        guard isDirectory.boolValue else {
            let url = URL(fileURLWithPath: path)
            return ("file", [Entry(relativePath: url.lastPathComponent, url: url, mode: mode(path))])
        }
        var out: [Entry] = []
        let base = URL(fileURLWithPath: path)
        for case let relative as String in fm.enumerator(atPath: path) ?? FileManager.DirectoryEnumerator() {
            let full = base.appendingPathComponent(relative).path
            guard let type = try? fm.attributesOfItem(atPath: full)[.type] as? FileAttributeType, type == .typeRegular else { continue }
            out.append(Entry(relativePath: relative, url: base.appendingPathComponent(relative), mode: mode(full)))
        }
        return ("directory", out.sorted { $0.relativePath < $1.relativePath })
    }

    /// Calls `body` with each chunk of the file and its name; returns the file's manifest entry.
    static func chunks(of entry: Entry, _ body: (String, Data) async throws -> Void) async throws -> StateManifest.File {
        let handle = try FileHandle(forReadingFrom: entry.url)
        defer { try? handle.close() }
        var names: [String] = []
        var size: Int64 = 0
        while let data = try handle.read(upToCount: StateManifest.chunkSize), !data.isEmpty {
            let name = StateManifest.hex(SHA256.hash(data: data))
            try await body(name, data)
            names.append(name)
            size += Int64(data.count)
        }
        return StateManifest.File(path: entry.relativePath, size: size, mode: entry.mode, chunks: names)
    }
}

/// Writes a version back: chunks come from the local cache (`directory/sha256`), fetched into
/// it when missing; the state path is replaced as a whole (a file by rename, a directory by
/// building the new one beside it and swapping), so the workload never sees half a version.
struct StateRestorer {
    let cache: URL
    let store: any ChunkStore

    init(cacheDirectory: String, store: any ChunkStore) throws {
        cache = URL(fileURLWithPath: cacheDirectory)
        self.store = store
        try FileManager.default.createDirectory(at: cache, withIntermediateDirectories: true)
    }

    /// Chunks in flight at once, fetching or sending: a round trip per chunk one after the
    /// other made a 500 MiB restore take minutes.
    static let width = 4

    /// Fetches the chunks the cache lacks, `width` at a time; returns how many bytes travelled.
    func fetch(_ manifest: StateManifest) async throws -> Int {
        let missing = manifest.chunkSet.sorted().filter { !FileManager.default.fileExists(atPath: cache.appendingPathComponent($0).path) }
        return try await withThrowingTaskGroup(of: Int.self) { group in
            var fetched = 0
            for (i, chunk) in missing.enumerated() {
                if i >= Self.width { fetched += try await group.next() ?? 0 }
                group.addTask {
                    let data = try await store.get(chunk)
                    guard StateManifest.hex(SHA256.hash(data: data)) == chunk else {
                        throw StateShippingError(description: "chunk \(chunk.prefix(12)) read from the \(store.name) store does not match its name")
                    }
                    try data.write(to: cache.appendingPathComponent(chunk), options: .atomic)
                    return data.count
                }
            }
            for try await n in group { fetched += n }
            return fetched
        }
    }

    /// Writes the version to `path` and forgets cached chunks it does not name. A file of a
    /// directory that `previous` (the version written there before) already had with the same
    /// chunks and mode is hard-linked from the current copy instead of written again.
    func write(_ manifest: StateManifest, previous: StateManifest?, to path: String) throws {
        let fm = FileManager.default
        let target = URL(fileURLWithPath: path)
        let staging = URL(fileURLWithPath: path + ".spotguard-new")
        try? fm.removeItem(at: staging)
        func assemble(_ file: StateManifest.File, at url: URL) throws {
            try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            guard fm.createFile(atPath: url.path, contents: nil) else { throw StateShippingError(description: "cannot write \(url.path)") }
            let out = try FileHandle(forWritingTo: url)
            defer { try? out.close() }
            for chunk in file.chunks { try out.write(contentsOf: try Data(contentsOf: cache.appendingPathComponent(chunk))) }
            try out.synchronize()
            if let mode = file.mode { try fm.setAttributes([.posixPermissions: mode], ofItemAtPath: url.path) }
        }
        if manifest.kind == "file" {
            try assemble(manifest.files[0], at: staging)
            guard rename(staging.path, target.path) == 0 else { throw StateShippingError(description: "cannot replace \(path): errno \(errno)") }
        } else {
            try fm.createDirectory(at: staging, withIntermediateDirectories: true)
            let unchanged = Dictionary((previous?.kind == "directory" ? previous?.files : nil)?.map { ($0.path, $0) } ?? []) { a, _ in a }
            for file in manifest.files {
                let url = staging.appendingPathComponent(file.path)
                if unchanged[file.path] == file {
                    try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                    if link(target.appendingPathComponent(file.path).path, url.path) == 0 { continue }
                }
                try assemble(file, at: url)
            }
            let old = URL(fileURLWithPath: path + ".spotguard-old")
            try? fm.removeItem(at: old)
            if fm.fileExists(atPath: path) { try fm.moveItem(at: target, to: old) }
            try fm.moveItem(at: staging, to: target)
            try? fm.removeItem(at: old)
        }
        let keep = manifest.chunkSet
        for name in (try? fm.contentsOfDirectory(atPath: cache.path)) ?? [] where !keep.contains(name) {
            try? fm.removeItem(at: cache.appendingPathComponent(name))
        }
    }
}
