import Crypto
import Foundation
import IMDSMock
import SpotModels
import SpotStore
import Testing

extension IntegrationTests {
    /// A workload's state as versions of content-addressed 1 MiB chunks: shipped by the primary's
    /// agent on a period, kept by the replica's agent, through SpotGuard's store or S3 (moto).
    @Suite struct StateShippingTests {
        static func chunkName(_ data: Data) -> String { StateManifest.hex(SHA256.hash(data: data)) }

        /// The chunk and version API refuses what could not be restored safely, at the edge
        /// and with the field: a chunk whose body is not its name, a path leaving the state
        /// directory, a chunk list that does not match the size, a version naming chunks the
        /// store does not hold (409 listing them); versions are numbered without gaps.
        @Test func theAPIRefusesBadChunksAndIncompleteVersions() async throws {
            try await ServiceProcess.withIngest { ingest in
                let token = try await AgentHarness.client(ingest, "State API")
                let registered = try await ingest.send(
                    "POST", "/api/agents/register", token: token, json: #"{"logical_agent_id": "\#(TestStack.uniqueName("state"))"}"#)
                let agent = try #require(registered.json["agent_id"] as? String)
                let chunks = "/api/agents/\(agent)/state/chunks"
                let data = Data("the workload's state".utf8)
                let name = Self.chunkName(data)
                func put(_ name: String, _ body: Data) async throws -> ServiceProcess.Reply {
                    try await ingest.send("PUT", "\(chunks)/\(name)", token: token, contentType: "application/octet-stream", body: body)
                }
                #expect(try await put(name, data).status == 201)
                #expect(try await put(name, data).status == 200, "sending a chunk again is harmless")
                let mismatch = try await put(name, Data("something else".utf8))
                #expect(mismatch.status == 400 && mismatch.errorCode == "chunk_digest_mismatch")
                #expect(try await put("ABC", data).errorCode == "invalid_chunk_name")
                #expect(try await put(Self.chunkName(Data(count: 2 << 20)), Data(count: 2 << 20)).status == 413, "a chunk is at most 1 MiB")
                let fetched = try await ingest.send("GET", "\(chunks)/\(name)", token: token)
                #expect(fetched.status == 200 && fetched.body == data)

                func version(_ files: String) async throws -> ServiceProcess.Reply {
                    try await ingest.send(
                        "POST", "/api/agents/\(agent)/state/versions", token: token,
                        json: #"{"manifest": {"kind": "directory", "store": "spotguard", "files": \#(files)}}"#)
                }
                let escape = try await version(#"[{"path": "../etc/passwd", "size": 20, "chunks": ["\#(name)"]}]"#)
                #expect(escape.status == 400 && escape.errorCode == "invalid_path" && escape.errorField == "manifest.files[0].path")
                let wrongCount = try await version(#"[{"path": "a", "size": 3000000, "chunks": ["\#(name)"]}]"#)
                #expect(wrongCount.status == 400 && wrongCount.errorCode == "invalid_chunks")
                let unknown = Self.chunkName(Data("never sent".utf8))
                let incomplete = try await version(#"[{"path": "a", "size": 20, "chunks": ["\#(name)"]}, {"path": "b", "size": 5, "chunks": ["\#(unknown)"]}]"#)
                #expect(incomplete.status == 409 && incomplete.errorCode == "missing_chunks")
                #expect((incomplete.json["error"] as? [String: Any])?["missing"] as? [String] == [unknown])
                #expect(try await ingest.send("GET", "/api/agents/\(agent)/state/versions/latest", token: token).errorCode == "no_state_version")
                let first = try await version(#"[{"path": "a", "size": 20, "mode": 384, "chunks": ["\#(name)"]}]"#)
                let second = try await version(#"[{"path": "a", "size": 20, "chunks": ["\#(name)"]}, {"path": "b/c", "size": 0, "chunks": []}]"#)
                #expect(first.status == 201 && first.json["version"] as? Int == 1)
                #expect(second.status == 201 && second.json["version"] as? Int == 2)
                let latest = try await ingest.send("GET", "/api/agents/\(agent)/state/versions/latest", token: token)
                #expect(latest.json["version"] as? Int == 2 && latest.json["file_count"] as? Int == 2)

                // chunks are kept per agent: another agent of the same client does not see them
                let other = try await ingest.send(
                    "POST", "/api/agents/register", token: token, json: #"{"logical_agent_id": "\#(TestStack.uniqueName("state"))"}"#)
                let otherAgent = try #require(other.json["agent_id"] as? String)
                #expect(try await ingest.send("GET", "/api/agents/\(otherAgent)/state/chunks/\(name)", token: token).errorCode == "chunk_not_found")
            }
        }

        /// A directory of 10 MiB shipped by a real agent every half second: a change of 1 %
        /// sends one chunk; the replica's agent restores the newest version byte for byte, is
        /// `synced` only while it holds it, and says which version it holds.
        @Test func theReplicaKeepsTheNewestVersionAndOnlyChangesTravel() async throws {
            try await Self.shipAndRestore(store: nil)
        }

        /// The same through the customer's S3 bucket (moto): the chunks are objects under
        /// `prefix/agent-id/`, named by their content's SHA-256 as boto3 reads it; SpotGuard's
        /// own store holds none of them.
        @Test func theStateTravelsThroughTheCustomersBucket() async throws {
            let harness = try AgentHarness()
            let bucket = "spotguard-state-\(UUID().uuidString.prefix(8).lowercased())"
            let made = try await harness.peer(["create", bucket], script: "state_bucket.py")
            #expect(made["bucket"] as? String == bucket)
            try await Self.shipAndRestore(store: "s3://\(bucket)/fleet")
        }

        /// Each file lands by a rename from beside the state: the agent scans at any moment, and
        /// an atomic write's temporary file in the state itself was once shipped in a version.
        static func write(_ dir: URL, files: [(String, Data)]) throws {
            let incoming = dir.deletingLastPathComponent().appendingPathComponent(dir.lastPathComponent + ".incoming")
            try FileManager.default.createDirectory(at: incoming, withIntermediateDirectories: true)
            for (path, data) in files {
                let url = dir.appendingPathComponent(path)
                try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                let staged = incoming.appendingPathComponent(UUID().uuidString)
                try data.write(to: staged)
                try #require(rename(staged.path, url.path) == 0, "rename into \(url.path): errno \(errno)")
            }
        }

        /// Every regular file under `dir` by relative path.
        static func contents(_ dir: URL) -> [String: Data] {
            var out: [String: Data] = [:]
            for case let path as String in FileManager.default.enumerator(atPath: dir.path) ?? FileManager.DirectoryEnumerator() {
                var isDirectory: ObjCBool = false
                let url = dir.appendingPathComponent(path)
                if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), !isDirectory.boolValue {
                    out[path] = try? Data(contentsOf: url)
                }
            }
            return out
        }

        static func shipAndRestore(store location: String?) async throws {
            let store = try await TestStack.store()
            let harness = try AgentHarness()
            let primaryIMDS = try await harness.instance(zone: "us-east-1c")
            let logical = TestStack.uniqueName("state")
            let root = FileManager.default.temporaryDirectory.appendingPathComponent("state-\(UUID())")
            let (primaryDir, replicaDir) = (root.appendingPathComponent("primary"), root.appendingPathComponent("replica/data"))
            defer { try? FileManager.default.removeItem(at: root) }
            var generator = SystemRandomNumberGenerator()
            func random(_ n: Int) -> Data {
                var data = Data(count: n)
                data.withUnsafeMutableBytes { raw in
                    for i in stride(from: 0, to: n, by: 8) {
                        withUnsafeBytes(of: generator.next()) { raw[i..<min(n, i + 8)].copyBytes(from: $0.prefix(n - i)) }
                    }
                }
                return data
            }
            // 10 MiB: four whole chunks, a file of 5.5 chunks, small files in a subdirectory
            let big = random(5 * (1 << 20) + (1 << 19))
            try write(
                primaryDir,
                files: [("db/main.db", big), ("db/wal", random(4 << 20)), ("config/app.json", Data(#"{"v": 1}"#.utf8)), ("empty", Data())]
                    + (0..<8).map { ("small/\($0)", random(65_536)) })
            var environment = [
                "SPOTGUARD_AGENT_STATE_PATH": primaryDir.path, "SPOTGUARD_AGENT_STATE_SECONDS": "0.5",
                "AWS_ENDPOINT_URL_S3": harness.moto.absoluteString,
            ]
            if let location { environment["SPOTGUARD_AGENT_STATE_STORE"] = location }
            func versions(_ agent: String) async throws -> Int {
                try await SEFQuery.count(store, "SELECT coalesce(max(version), 0) FROM state_versions WHERE agent_id = $1::uuid", [agent])
            }
            func storedChunks(_ agent: String) async throws -> Int {
                try await SEFQuery.count(store, "SELECT count(*) FROM state_chunks WHERE agent_id = $1::uuid", [agent])
            }
            try await withReplicaStack(environment: ["SPOTGUARD_REPLICAS_RISK_THRESHOLD_PERCENT": "0"]) { ingest, _ in
                try await withSEF {
                    let token = try await AgentHarness.client(ingest, "State shipping")
                    try await primaryIMDS.serving { primaryURL in
                        try await harness.withAgent(ingest: ingest, token: token, imds: primaryURL, logical: logical, environment: environment) {
                            // a replica is placed in a pool with a recent clean price
                            let agent = try await AgentHarness.registeredWithPrices(logical, store)
                            #expect(try await TestStack.eventually(timeout: .seconds(20)) { try await versions(agent) >= 1 }, "the first version was shipped")
                            let sizes = try await ReplicaQuery.one(
                                store,
                                "SELECT total_bytes::text, file_count::text, cardinality(chunks)::text, store FROM state_versions WHERE agent_id = $1::uuid AND version = 1",
                                [agent])
                            let total = Self.contents(primaryDir).values.reduce(0) { $0 + $1.count }
                            #expect(sizes[0] == String(total) && sizes[1] == "12" && sizes[3] == (location == nil ? "spotguard" : "s3"), "\(sizes)")
                            // 6 chunks of main.db, 4 of the wal, one per non-empty small file
                            #expect(sizes[2] == "19", "\(sizes)")
                            let chunksBefore = try await storedChunks(agent)
                            #expect(chunksBefore == (location == nil ? 19 : 0), "chunks are in the named store only")
                            if let location, let (bucket, prefix) = StateManifest.s3Location(location) {
                                let listed = try await harness.peer(["list", bucket, "\(prefix)/\(agent)/"], script: "state_bucket.py")
                                let objects = try #require(listed["objects"] as? [String: String])
                                #expect(objects.count == 19)
                                #expect(objects.allSatisfy { $0.key == "\(prefix)/\(agent)/\($0.value)" }, "each object is named by its content's SHA-256")
                            }

                            // 1 % of the state changes inside one chunk: one chunk travels
                            var changed = big
                            changed.replaceSubrange((2 << 20)..<((2 << 20) + 104_857), with: random(104_857))
                            try write(primaryDir, files: [("db/main.db", changed)])
                            #expect(
                                try await TestStack.eventually(timeout: .seconds(20)) { try await versions(agent) >= 2 }, "a changed state makes a new version")
                            if location == nil {
                                #expect(try await storedChunks(agent) == chunksBefore + 1, "only the changed chunk was sent")
                            }
                            #expect(try await versions(agent) == 2, "an unchanged state makes no new version")

                            try #require(
                                try await AgentHarness.rebalanceLaunchesAReplica(primaryIMDS, agent: agent, store),
                                "the rebalance recommendation launches a replica")
                            let row = try await ReplicaQuery.one(
                                store, "SELECT id::text, instance_id, az FROM replica_instances WHERE agent_id = $1::uuid", [agent])
                            let (replicaId, replicaInstance, replicaZone) = (try #require(row[0]), try #require(row[1]), try #require(row[2]))
                            let replicaIMDS = IMDSMock(identity: .init(instanceId: replicaInstance, instanceType: "m5.large", availabilityZone: replicaZone))
                            try await replicaIMDS.serving { (replicaURL: URL) async throws -> Void in
                                try await harness.withAgent(
                                    ingest: ingest, token: token, imds: replicaURL, logical: logical,
                                    environment: environment.merging([
                                        "SPOTGUARD_AGENT_REPLICA_ID": replicaId, "SPOTGUARD_AGENT_AGENT_ID": agent, "SPOTGUARD_AGENT_SYNC_SECONDS": "0.3",
                                        "SPOTGUARD_AGENT_STATE_PATH": replicaDir.path,
                                    ]) { $1 }
                                ) { () async throws -> Void in
                                    #expect(
                                        try await TestStack.eventually(timeout: .seconds(20)) {
                                            try await ReplicaQuery.one(
                                                store, "SELECT status, sync_status, state_version::text FROM replica_instances WHERE id = $1::uuid", [replicaId]
                                            )
                                                == ["ready", "synced", "2"]
                                        }, "the replica holds version 2 and is synced")
                                    #expect(Self.contents(replicaDir) == Self.contents(primaryDir), "the replica's copy is the primary's, byte for byte")

                                    try write(primaryDir, files: [("config/app.json", Data(#"{"v": 2}"#.utf8)), ("small/new", random(1000))])
                                    // two files written one after the other may ship as one version or two: the
                                    // replica must end on the newest one, holding the primary's bytes
                                    #expect(
                                        try await TestStack.eventually(timeout: .seconds(20)) {
                                            let newest = try await versions(agent)
                                            let held = try await ReplicaQuery.one(
                                                store, "SELECT state_version::text, sync_status FROM replica_instances WHERE id = $1::uuid", [replicaId])
                                            return newest >= 3 && held == [String(newest), "synced"]
                                                && Self.contents(replicaDir) == Self.contents(primaryDir)
                                        }, "the replica follows the newest version")
                                    let lag = try await ReplicaQuery.one(
                                        store, "SELECT state_lag_seconds::text FROM replica_instances WHERE id = $1::uuid", [replicaId])
                                    #expect(lag == ["0"], "a current replica has no lag")
                                }
                            }
                        }
                    }
                }
            }
            await store.shutdown()
        }
    }
}
