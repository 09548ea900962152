import Foundation
import Logging
import SpotModels
import Synchronization

/// The workload's state: the primary ships versions of it, a replica keeps the newest, and the
/// replica's sync reports say which version it holds.
extension Agent {
    /// The chunk store this agent's settings name.
    func chunkStore(agent: String) throws -> any ChunkStore {
        configuration.stateStore == "spotguard"
            ? SpotGuardChunkStore(api: api, agent: agent) : try S3ChunkStore(ec2: ec2, location: configuration.stateStore, agent: agent)
    }

    /// Ships the state as a new version (the primary, on its period and on a notice): runs the
    /// state hook, reads the state path chunk by chunk, sends the chunks the store does not hold
    /// yet, then the manifest. An unchanged state makes no new version. Returns the version now
    /// newest, or nil when there is no state to ship.
    @discardableResult
    func shipState(reason: String, retrying: Bool = true) async throws -> Int64? {
        guard let path = configuration.statePath else { return nil }
        let (agent, identity) = try ids()
        if let hook = configuration.stateHook {
            let status = await runProcess("/bin/sh", ["-c", hook])
            guard status == 0 else { throw StateShippingError(description: "state_hook exited \(status): no version taken") }
        }
        let store = try chunkStore(agent: agent)
        let started = ContinuousClock.now
        var known = state.withLock { $0.shippedChunks }
        if known == nil {
            // a restarted (or promoted) agent learns what the store holds from the newest version
            let manifest = try await newestStateVersion(agent: agent)?.manifest
            known = manifest.map { $0.store == store.name && $0.location == store.location ? $0.chunkSet : [] } ?? []
        }
        var sent = 0
        var sentBytes = 0
        let (kind, entries) = try StateReader.entries(of: path)
        var files: [StateManifest.File] = []
        // up to `width` chunks in flight, one round trip each
        try await withThrowingTaskGroup(of: Void.self) { group in
            var inFlight = 0
            for entry in entries {
                files.append(
                    try await StateReader.chunks(of: entry) { name, data in
                        guard known!.insert(name).inserted else { return }
                        if inFlight == StateRestorer.width {
                            try await group.next()
                            inFlight -= 1
                        }
                        group.addTask { try await store.put(name, data) }
                        inFlight += 1
                        sent += 1
                        sentBytes += data.count
                    })
            }
            try await group.waitForAll()
        }
        let manifest = StateManifest(kind: kind, store: store.name, location: store.location, files: files)
        let previous = state.withLock { $0.shippedManifest }
        if let previous, previous.manifest == manifest { return previous.version }
        struct Version: Encodable {
            var manifest: StateManifest
            var instanceId: String
        }
        let answer = try await api.send("POST", "/api/agents/\(agent)/state/versions", Version(manifest: manifest, instanceId: identity.instanceId))
        if answer.status == 409, answer.errorCode == "missing_chunks", retrying {
            // the store lost chunks this agent believed it held (deleted after an hour unused)
            state.withLock { $0.shippedChunks = nil }
            return try await shipState(reason: reason, retrying: false)
        }
        guard answer.status == 201, let version = (answer.json()["version"] as? NSNumber)?.int64Value else {
            throw StateShippingError(description: "state version refused: \(answer.status) \(answer.errorCode ?? "")")
        }
        state.withLock {
            $0.shippedChunks = manifest.chunkSet
            $0.shippedManifest = (version, manifest)
        }
        logger.info(
            "state version shipped",
            metadata: [
                "version": "\(version)", "reason": "\(reason)", "bytes": "\(manifest.totalBytes)", "chunks_sent": "\(sent)",
                "bytes_sent": "\(sentBytes)", "ms": "\((ContinuousClock.now - started) / .milliseconds(1))",
            ])
        return version
    }

    /// Ships a version on a notice, retried until `deadline` when the server cannot take it now.
    func shipStateBefore(_ deadline: Date, reason: String) async {
        guard configuration.statePath != nil else { return }
        while true {
            do {
                try await shipState(reason: reason)
                return
            } catch {
                logger.warning("state not shipped yet, retrying", metadata: ["error": "\(error)"])
            }
            guard Date().addingTimeInterval(0.5) < deadline else {
                logger.error("state not shipped before the failover had to be asked for")
                return
            }
            try? await Task.sleep(for: .milliseconds(500))
        }
    }

    /// The primary's periodic shipping.
    func periodicShip() async throws {
        guard state.withLock({ $0.replicaId == nil && !$0.retired }) else { return }
        try await shipState(reason: "period")
    }

    /// The newest version of the agent's state and its manifest; nil before the first.
    func newestStateVersion(agent: String) async throws -> (version: Int64, manifest: StateManifest)? {
        struct Newest: Decodable {
            var version: Int64
            var manifest: StateManifest
        }
        let answer = try await api.send("GET", "/api/agents/\(agent)/state/versions/latest")
        if answer.status == 404, answer.errorCode == "no_state_version" { return nil }
        guard answer.status == 200, let newest = try? JSONDecoder().decode(Newest.self, from: answer.body) else {
            throw StateShippingError(description: "newest state version not readable: \(answer.status) \(answer.errorCode ?? "")")
        }
        return (newest.version, newest.manifest)
    }

    /// A replica's copy: fetches and writes the newest version when it holds an older one.
    /// Returns the version it holds (nil: none shipped yet).
    @discardableResult
    func restoreNewestState() async throws -> Int64? {
        guard let path = configuration.statePath else { return nil }
        let agent = try ids().0
        guard let (version, manifest) = try await newestStateVersion(agent: agent) else { return nil }
        if let held = state.withLock({ $0.heldStateVersion }), held >= version { return held }
        // checked here too: what is written under the state path must stay under it, whoever sent the manifest
        try manifest.validate()
        let store: any ChunkStore =
            manifest.store == "spotguard"
            ? SpotGuardChunkStore(api: api, agent: agent) : try S3ChunkStore(ec2: ec2, location: manifest.location ?? "", agent: agent)
        let restorer = try StateRestorer(cacheDirectory: configuration.stateCacheDirectory, store: store)
        let started = ContinuousClock.now
        let fetched = try await restorer.fetch(manifest)
        try restorer.write(manifest, previous: state.withLock { $0.heldState }, to: path)
        state.withLock {
            $0.heldStateVersion = version
            $0.heldState = manifest
        }
        logger.info(
            "state version restored",
            metadata: [
                "version": "\(version)", "bytes": "\(manifest.totalBytes)", "bytes_fetched": "\(fetched)",
                "ms": "\((ContinuousClock.now - started) / .milliseconds(1))",
            ])
        return version
    }

    /// A replica's report: it brings its copy of the state up to the newest version and says
    /// which it holds. The first report of a run says it is syncing (launching → syncing); when
    /// the copy is current (or there is no state to keep) the synced report that makes it ready
    /// follows at once rather than a sync period later: a recovery replica is promoted the
    /// moment it is ready.
    func syncReport() async throws {
        let (agent, identity) = try ids()
        guard let replica = state.withLock({ $0.replicaId }) else { return }
        let started = ContinuousClock.now
        var held: Int64?
        var restored = configuration.statePath == nil
        do {
            held = try await restoreNewestState()
            restored = true
        } catch {
            logger.warning("state not restored", metadata: ["error": "\(error)"])
            held = state.withLock { $0.heldStateVersion }
        }
        struct Sync: Encodable {
            var syncStatus: String
            var status: String?
            var stateTransferProgress: Double
            var syncLatencyMs: Int
            var instanceId: String
            var stateVersion: Int64?
        }
        let latency = Int((ContinuousClock.now - started) / .milliseconds(1))
        let first = state.withLock { s in
            defer { s.syncReports += 1 }
            return s.syncReports == 0
        }
        // not spooled: the next tick reports the state as it is then, and stale reports queued
        // behind an outage would only delay what matters (command results) once it is over
        func send(_ body: Sync) async throws -> Bool {
            let answer = try await api.send("POST", "/api/agents/\(agent)/replicas/\(replica)/sync-status", body)
            if answer.status >= 400 {
                logger.warning("sync status not taken", metadata: ["status": "\(answer.status)", "code": "\(answer.errorCode ?? "-")"])
            }
            return answer.status < 400
        }
        if first {
            let syncing = Sync(
                syncStatus: "syncing", status: nil, stateTransferProgress: 0, syncLatencyMs: latency, instanceId: identity.instanceId, stateVersion: held)
            guard try await send(syncing), restored else { return }
        }
        guard restored else { return }
        _ = try await send(
            Sync(syncStatus: "synced", status: "ready", stateTransferProgress: 100, syncLatencyMs: latency, instanceId: identity.instanceId, stateVersion: held)
        )
    }

    /// Runs a workload hook; returns its exit status (127 when it cannot be started).
    func runProcess(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) async -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        return await withCheckedContinuation { done in
            process.terminationHandler = { done.resume(returning: $0.terminationStatus) }
            do {
                try process.run()
            } catch {
                process.terminationHandler = nil
                done.resume(returning: 127)
            }
        }
    }
}
