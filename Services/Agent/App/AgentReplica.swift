import Foundation
import Logging
import SpotModels
import Synchronization

/// A replica's side: its sync reports, and a primary sending its state to its replica.
extension Agent {
    /// A replica's report: it fetches the latest state its primary sent (when it keeps a state
    /// file) and says it is in sync, with how long the fetch took. The first report of a run
    /// says it is syncing (launching → syncing); when that fetch found the state (or there is
    /// none to keep), the synced report that makes it ready follows at once rather than a sync
    /// period later: a recovery replica is promoted the moment it is ready.
    func syncReport() async throws {
        let (agent, identity) = try ids()
        guard let replica = state.withLock({ $0.replicaId }) else { return }
        let started = ContinuousClock.now
        var fetched = configuration.stateFile == nil
        if let file = configuration.stateFile {
            let answer = try await api.send("GET", "/api/agents/\(agent)/replicas/\(replica)/state-transfer")
            if answer.status == 200 {
                try StateArchive.unpack(answer.body, to: file)
                fetched = true
            }
        }
        struct Sync: Encodable {
            var syncStatus: String
            var status: String?
            var stateTransferProgress: Double
            var syncLatencyMs: Int
            var instanceId: String
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
            let syncing = Sync(syncStatus: "syncing", status: nil, stateTransferProgress: 0, syncLatencyMs: latency, instanceId: identity.instanceId)
            guard try await send(syncing), fetched else { return }
        }
        _ = try await send(Sync(syncStatus: "synced", status: "ready", stateTransferProgress: 100, syncLatencyMs: latency, instanceId: identity.instanceId))
    }

    /// Sends the state file to the agent's ready replica, if both exist (seed 000 step 4). A
    /// server that cannot answer now (5xx, no connection) is asked again until `deadline`: the
    /// state is what the replica resumes from.
    /// `to` names the replica (a recovery's emergency replica, still launching); without it the
    /// ready one is looked up.
    func sendStateToReplica(agent: String, to named: String? = nil, until deadline: Date) async {
        guard let file = configuration.stateFile else { return }
        guard FileManager.default.fileExists(atPath: file) else {
            logger.warning("no state file to send", metadata: ["state_file": "\(file)"])
            return
        }
        while true {
            do {
                let listed = named == nil ? try await api.send("GET", "/api/agents/\(agent)/replicas") : nil
                if (listed?.status ?? 200) < 500 {
                    let replicas = (listed?.json()["replicas"] as? [[String: Any]]) ?? []
                    guard
                        let id = named
                            ?? replicas.first(where: { $0["status"] as? String == "ready" }).flatMap({ ($0["id"] ?? $0["replica_id"]) as? String })
                    else {
                        logger.warning(
                            "no ready replica to send the state to", metadata: ["replicas": "\(listed?.status ?? 0) \(replicas.map { $0["status"] ?? "-" })"])
                        return
                    }
                    let answer = try await api.send(
                        "POST", "/api/agents/\(agent)/replicas/\(id.lowercased())/state-transfer", gzip: try StateArchive.pack(file))
                    if answer.status == 201 {
                        logger.notice("state sent to the replica", metadata: ["replica_id": "\(id)"])
                        return
                    }
                    if answer.status < 500 {
                        logger.error("state refused", metadata: ["replica_id": "\(id)", "status": "\(answer.status)", "code": "\(answer.errorCode ?? "-")"])
                        return
                    }
                }
                logger.warning("state transfer not possible yet, retrying", metadata: ["status": "\(listed?.status ?? 0)"])
            } catch {
                logger.warning("state transfer not possible yet, retrying", metadata: ["error": "\(error)"])
            }
            guard Date().addingTimeInterval(0.5) < deadline else {
                logger.error("state not sent to the replica before the failover had to be asked for")
                return
            }
            try? await Task.sleep(for: .milliseconds(500))
        }
    }
}
