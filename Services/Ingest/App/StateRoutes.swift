import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SpotModels
import SpotRuntime
import SpotStore

/// A workload's state as versions of content-addressed chunks (`StateManifest`). The primary's
/// agent sends the chunks the store lacks (`PUT …/state/chunks/{sha256}`, embedded store only)
/// and then the version's manifest; a version is accepted only when every chunk it names is
/// held, so the newest version is always complete. The replica's agent reads the newest
/// manifest and fetches the chunks it does not have. Ingest owns both tables.
extension IngestController {
    func addStateRoutes(to router: Router<ServiceRequestContext>) {
        let state = "/api/agents/:agentId/state"
        router.put("\(state)/chunks/:sha256", use: putChunk)
        router.get("\(state)/chunks/:sha256", use: getChunk)
        router.post("\(state)/versions", use: commitVersion)
        router.get("\(state)/versions/latest", use: latestVersion)
    }

    /// Versions kept per agent: the newest and two before it (a replica restoring one while a
    /// newer lands still finds its chunks).
    static let keptStateVersions = 3

    func chunkName(_ context: ServiceRequestContext) throws -> Data {
        guard let name = context.parameters.get("sha256"), StateManifest.isChunkName(name) else {
            throw APIError(.badRequest, code: "invalid_chunk_name", message: "a chunk is named by its SHA-256 in lowercase hex", field: "sha256")
        }
        return Data(StateManifest.bytes(hex: name))
    }

    struct StoredChunk: Encodable {
        var sha256: String
        var sizeBytes: Int
    }

    /// Stores one chunk (≤ 1 MiB, `application/octet-stream`) under its SHA-256; sending a
    /// chunk again is harmless (200 instead of 201).
    @Sendable func putChunk(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (_, agent) = try await authenticateAgent(request, context)
        guard stateChunks.enter() else { throw APIError.busy }
        defer { stateChunks.leave() }
        let name = try chunkName(context)
        let contentType = request.headers[.contentType]?.lowercased() ?? ""
        guard contentType.hasPrefix("application/octet-stream") else {
            throw APIError(.unsupportedMediaType, code: "unsupported_media_type", message: "send a chunk as application/octet-stream")
        }
        let buffer = try await HTTPJSON.bytes(of: request, limit: StateManifest.chunkSize)
        let bytes = Array(buffer.readableBytesView)
        guard Data(SHA256.hash(data: bytes)) == name else {
            throw APIError(.badRequest, code: "chunk_digest_mismatch", message: "the body's SHA-256 is not the chunk's name", field: "sha256")
        }
        let inserted = try await store.read { conn in
            try conn.query(
                """
                INSERT INTO state_chunks (agent_id, sha256, content, size_bytes) VALUES ($1, $2, $3, $4)
                ON CONFLICT (agent_id, sha256) DO UPDATE SET stored_at = now()
                RETURNING (xmax = 0)
                """, [agent, PGBytes(Array(name)), PGBytes(bytes), bytes.count]
            ).first?.decode(Bool.self, at: 0) ?? false
        }
        return try json(StoredChunk(sha256: StateManifest.hex(name), sizeBytes: bytes.count), status: inserted ? .created : .ok)
    }

    @Sendable func getChunk(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (_, agent) = try await authenticateAgent(request, context)
        guard stateChunks.enter() else { throw APIError.busy }
        defer { stateChunks.leave() }
        let name = try chunkName(context)
        let rows = try await store.read { conn in
            try conn.query("SELECT content FROM state_chunks WHERE agent_id = $1 AND sha256 = $2", [agent, PGBytes(Array(name))])
        }
        guard let row = rows.first else { throw APIError(.notFound, code: "chunk_not_found", message: "this agent's store has no such chunk") }
        return Response(
            status: .ok, headers: [.contentType: "application/octet-stream", .eTag: "\"\(StateManifest.hex(name))\""],
            body: .init(byteBuffer: ByteBuffer(bytes: try row.decode(PGBytes.self, at: 0).bytes)))
    }

    struct VersionBody: Decodable {
        var manifest: StateManifest
        var instanceId: String?
    }

    struct StoredVersion: Encodable {
        var version: Int64
        var totalBytes: Int64
        var fileCount: Int
        var chunkCount: Int
        var createdAt: Date
        var manifest: StateManifest?
    }

    struct MissingChunks: Encodable {
        struct Body: Encodable {
            var code = "missing_chunks"
            var message: String
            var missing: [String]
        }
        var error: Body
    }

    /// Accepts a version when its manifest is valid and (embedded store) every chunk is held:
    /// 201 with its number; 409 `missing_chunks` lists (up to 1,000 of) those to send first.
    /// The oldest versions beyond the kept ones, and chunks no kept version names (and not sent
    /// within the hour), are deleted in the same transaction.
    @Sendable func commitVersion(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (_, agent) = try await authenticateAgent(request, context)
        let body = try await HTTPJSON.decode(VersionBody.self, from: request, limit: 16 << 20)
        do {
            try body.manifest.validate()
        } catch {
            throw APIError.validation(ValidationError(code: error.code, field: error.field.map { "manifest.\($0)" }, message: error.message))
        }
        if let instance = body.instanceId, InstanceID(rawValue: instance) == nil {
            throw APIError(.badRequest, code: "invalid_instance_id", message: "instance_id is not an EC2 instance id", field: "instance_id")
        }
        let manifest = body.manifest
        let chunks = manifest.chunkSet.sorted().map { PGBytes(StateManifest.bytes(hex: $0)) }
        let manifestJSON = String(decoding: try WireJSON.encoder().encode(manifest), as: UTF8.self)
        let kept = Self.keptStateVersions
        enum Outcome: Sendable {
            case stored(Int64, Date)
            case missing([String])
        }
        let outcome = try await store.write { conn -> Outcome in
            // one version at a time per agent: numbers without gaps, and the clean-up below
            // never races a commit
            _ = try conn.query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 7001))", [agent])
            if manifest.store == "spotguard" {
                let missing = try conn.query(
                    """
                    SELECT encode(c, 'hex') FROM unnest($2::bytea[]) AS c
                     WHERE NOT EXISTS (SELECT 1 FROM state_chunks s WHERE s.agent_id = $1 AND s.sha256 = c) LIMIT 1000
                    """, [agent, PGArray(chunks)]
                ).map { try $0.decode(String.self, at: 0) }
                if !missing.isEmpty { return .missing(missing) }
            }
            let row = try conn.query(
                """
                INSERT INTO state_versions (agent_id, version, store, location, manifest, chunks, total_bytes, file_count, instance_id)
                SELECT $1, coalesce(max(version), 0) + 1, $2, $3, $4::jsonb, $5::bytea[], $6, $7, $8
                  FROM state_versions WHERE agent_id = $1
                RETURNING version, created_at
                """,
                [
                    agent, manifest.store, manifest.location, manifestJSON, PGArray(chunks), manifest.totalBytes, manifest.files.count,
                    body.instanceId,
                ])[0]
            let version = try row.decode(Int64.self, at: 0)
            _ = try conn.execute("DELETE FROM state_versions WHERE agent_id = $1 AND version <= $2", [agent, version - Int64(kept)])
            _ = try conn.execute(
                """
                DELETE FROM state_chunks c WHERE c.agent_id = $1 AND c.stored_at < now() - interval '1 hour'
                   AND NOT EXISTS (SELECT 1 FROM state_versions v WHERE v.agent_id = $1 AND c.sha256 = ANY (v.chunks))
                """, [agent])
            return .stored(version, try row.decode(Date.self, at: 1))
        }
        switch outcome {
        case .missing(let names):
            let body = MissingChunks(error: .init(message: "send these chunks first (PUT …/state/chunks/{sha256})", missing: names))
            return try json(body, status: .conflict)
        case .stored(let version, let at):
            return try json(
                StoredVersion(
                    version: version, totalBytes: manifest.totalBytes, fileCount: manifest.files.count, chunkCount: chunks.count, createdAt: at),
                status: .created)
        }
    }

    /// The newest version with its manifest; 404 `no_state_version` before the first.
    @Sendable func latestVersion(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (_, agent) = try await authenticateAgent(request, context)
        let rows = try await store.read { conn in
            try conn.query(
                """
                SELECT version, manifest::text, total_bytes, file_count, cardinality(chunks), created_at FROM state_versions
                 WHERE agent_id = $1 ORDER BY version DESC LIMIT 1
                """, [agent])
        }
        guard let row = rows.first else { throw APIError(.notFound, code: "no_state_version", message: "no state version was shipped yet") }
        let manifest = try WireJSON.decoder().decode(StateManifest.self, from: Data(try row.decode(String.self, at: 1).utf8))
        return try json(
            StoredVersion(
                version: try row.decode(Int64.self, at: 0), totalBytes: try row.decode(Int64.self, at: 2), fileCount: try row.decode(Int.self, at: 3),
                chunkCount: try row.decode(Int.self, at: 4), createdAt: try row.decode(Date.self, at: 5), manifest: manifest),
            status: .ok)
    }
}
