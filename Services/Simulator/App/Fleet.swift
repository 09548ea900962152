import Foundation
import IMDSMock
import Logging
import SimulatorCore
import SpotCloud
import SpotMarket

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// What became of one termination notice, as the simulator saw it from outside the product:
/// the cloud's side (notice read, termination) and the product's API (replicas, promotion).
public struct NoticeOutcome: Sendable, Codable {
    public var instanceId: String
    public var workload: String?
    public var agentId: String?
    public var drill: Bool
    public var armedAt: Date
    public var terminationTime: Date
    /// notice armed → the instance's agent first read it
    public var noticeReadMs: Double?
    public var readyReplicaAtNotice: Bool
    public var replicaId: String?
    public var replicaInstanceId: String?
    /// notice armed → the product recorded the promotion (its `promoted_at`)
    public var promotedMs: Double?
    public var primaryProgressAtNotice: Int
    /// what the promoted replica's workload resumed from (its state file)
    public var replicaProgress: Int?
    /// `failed_over`, `failed_over_late` (promoted after the termination), `no_ready_replica`,
    /// `not_failed_over` or `not_a_primary` (the notice hit a replica)
    public var outcome: String
}

/// What became of a primary lost without a notice (`loss` drill).
public struct LossOutcome: Sendable, Codable {
    public var kind = "loss"
    public var instanceId: String
    public var workload: String
    public var agentId: String
    public var lostAt: Date
    public var readyReplicaAtLoss: Bool
    public var replicaId: String?
    public var replicaInstanceId: String?
    /// lost → the product recorded the promotion (its `promoted_at`)
    public var promotedMs: Double?
    /// `failed_over`, `not_failed_over` (a ready replica was not promoted in time) or `no_ready_replica`
    public var outcome: String
}

/// The simulated customer: a client, its workloads (each one agent, in manual-replica or
/// auto-switch mode), an Auto Scaling group's habit of replacing a workload that lost every
/// instance, and an eye on what each termination notice led to.
actor Fleet {
    struct Workload: Sendable {
        var logical: String
        var type: String
        var mode: String
        var agentId: String
        /// The user data's settings but the credential (each launch gets its own).
        var settings: [(String, String)]
        /// The workload's Elastic IP: its public entry point, which follows its primary.
        var allocationId: String
        var missingSince: Date?
        var replacements = 0
        /// Its modes are set (manual replica mode can only be enabled once prices exist).
        var configured = false
    }

    let cloud: Cloud
    let api: ProductAPI
    let configuration: SimConfiguration
    let logger: Logger
    var clientId = ""
    var token = ""
    var order: [String] = []
    var workloads: [String: Workload] = [:]
    var outcomes: [NoticeOutcome] = []
    var launches = 0
    var watching = 0

    init(cloud: Cloud, configuration: SimConfiguration, logger: Logger) {
        self.cloud = cloud
        api = ProductAPI(base: configuration.ingest)
        self.configuration = configuration
        self.logger = logger
    }

    /// A new client and `count` workloads over `types`, launched, registered and configured.
    func bootstrap(types: [String]) async throws {
        let created = try await api.send(
            "POST", "/api/admin/clients", token: configuration.adminToken, json: ["name": "Simulated fleet (seed \(configuration.seed))"])
        guard created.status == 201, let id = created.json["client_id"] as? String, let token = created.json["token"] as? String else {
            throw SimError.product("creating the fleet's client answered \(created.status) \(created.json)")
        }
        clientId = id.lowercased()
        self.token = token
        let file = configuration.directory.appendingPathComponent("client.json")
        try JSONSerialization.data(withJSONObject: ["client_id": clientId, "token": token, "ingest": configuration.ingest.absoluteString])
            .writePrivately(to: file)
        var plan: [(logical: String, type: String, manual: Bool)] = []
        var manualSoFar = 0
        for i in 0..<configuration.agents {
            let type = types[i % types.count]
            // manual-replica workloads spread evenly through the fleet
            let manual = Int((Double(i + 1) * configuration.manualShare).rounded(.down)) > manualSoFar
            if manual { manualSoFar += 1 }
            plan.append((String(format: "sim-%02d-%@", i + 1, type), type, manual))
        }
        let unknown = configuration.sparedWorkloads.subtracting(plan.map(\.logical))
        guard unknown.isEmpty else { throw SimError.internal("--spare names workloads the fleet does not have: \(unknown.sorted())") }
        var history: History?
        if configuration.historyDays > 0 {
            history = try await replayPrices(plan.map { History.Workload(logical: $0.logical, type: $0.type, moves: !$0.manual) })
        }
        for w in plan { try await add(logical: w.logical, type: w.type, manual: w.manual, history: history?.moves[w.logical]) }
        if let history {
            // a workload's first switch is the one off its on-demand instance, as it joined
            let moves = history.moves.values.map(\.count).reduce(0, +)
            say("spotguard-sim: history of \(moves) switches sent (\(moves - history.moves.count) after the workloads joined)")
        }
    }

    /// Launches the workload's first instance, sets its modes, sends the switches of its
    /// `history` (the last one to this instance, launched where the history ends), and registers
    /// its agent with where it runs (manual replicas need that).
    private func add(logical: String, type: String, manual: Bool, history: [History.Move]?) async throws {
        // its public entry point: an Elastic IP the agent moves to each new primary
        let address = await cloud.allocateAddress()
        let settings = [
            ("SPOTGUARD_AGENT_SERVER", configuration.ingest.absoluteString), ("SPOTGUARD_AGENT_LOGICAL_AGENT_ID", logical),
            ("SPOTGUARD_AGENT_TRAFFIC", #"{"elastic_ips": [{"allocation_id": "\#(address.allocationId)"}]}"#),
        ]
        // the agent exists before its first instance, so that instance's enrollment secret can name it
        let agentId = try await agent(logical)
        workloads[logical] = Workload(
            logical: logical, type: type, mode: manual ? "manual-replica" : "auto-switch", agentId: agentId, settings: settings,
            allocationId: address.allocationId)
        order.append(logical)
        await cloud.registerWorkload(logical, type: type)
        let id = try await launch(logical, zone: history?.last.flatMap { $0.pool.split(separator: ".").last.map(String.init) })
        guard let instance = await cloud.instance(id) else { throw SimError.internal("instance \(id) vanished") }
        // manual replicas exclude the automatic modes (a new agent starts with auto-switch on)
        let modes = try await api.send(
            "POST", "/api/agents/\(agentId)/config", token: token,
            json: manual
                ? ["auto_switch_enabled": false, "auto_terminate_enabled": false, "auto_replica_enabled": false]
                : ["auto_switch_enabled": true, "auto_terminate_enabled": true, "auto_replica_enabled": true, "terminate_wait_seconds": 0])
        guard modes.status == 200 else { throw SimError.product("configuring \(logical) answered \(modes.status) \(modes.json)") }
        if let history { try await replaySwitches(history, logical: logical, agentId: agentId, to: id, pool: instance.pool, spot: instance.spot) }
        let registered = try await api.send(
            "POST", "/api/agents/register", token: token,
            json: [
                "logical_agent_id": logical, "instance_id": id, "instance_type": type, "az": instance.zone, "mode": instance.spot ? "spot" : "ondemand",
                "pool_id": instance.pool,
            ])
        guard registered.status == 200, (registered.json["agent_id"] as? String)?.lowercased() == agentId else {
            throw SimError.product("registering \(logical) answered \(registered.status) \(registered.json)")
        }
        workloads[logical]?.configured = !manual
    }

    /// Manual replica mode needs clean prices of the other pools, which exist once the agents
    /// reported: until then SpotGuard answers 409 and the operator tries again.
    private func enableManualReplicas() async {
        for logical in order where workloads[logical]?.configured == false {
            guard let agentId = workloads[logical]?.agentId, !agentId.isEmpty,
                let answer = try? await api.send("POST", "/api/agents/\(agentId)/manual-replica/enable", token: token)
            else { continue }
            if answer.status == 200 {
                workloads[logical]?.configured = true
                if let instance = await cloud.live(logical).first { await cloud.record("manual_replica_mode", instance, "enabled") }
            } else if answer.status != 409 {
                logger.warning("manual replica mode refused", metadata: ["workload": "\(logical)", "status": "\(answer.status)", "answer": "\(answer.json)"])
            }
        }
    }

    /// A spot instance for the workload wherever there is capacity, on demand if no zone has
    /// any, launched as its operator's launch template says: in one of the VPC's subnets (the
    /// first one tried drawn from the seed), with the workload's security group and instance
    /// profile; its Elastic IP is associated with it, as the workload's boot script would.
    private func launch(_ logical: String, zone: String? = nil) async throws -> String {
        guard let w = workloads[logical] else { throw SimError.internal("unknown workload \(logical)") }
        let userData = UserData.script(w.settings + [try await credential(w.agentId)])
        let network = cloud.network
        let first = Int(Draw.unit(configuration.seed, "subnet", launches) * Double(network.subnets.count))
        launches += 1
        let drawn = network.subnets[first...] + network.subnets[..<first]
        // a zone asked for first (where the workload's history left it)
        let subnets = drawn.filter { $0.zone == zone } + drawn.filter { $0.zone != zone }
        for spot in [true, false] {
            for subnet in subnets {
                let id: String
                do {
                    id = try await cloud.launch(
                        Cloud.Launch(
                            imageId: Cloud.baseImage, type: w.type, spot: spot, userData: userData, subnetId: subnet.id,
                            securityGroupIds: [network.securityGroupId], profile: network.profileArn))[0].id
                } catch let fault as EC2Fault where fault.code == "InsufficientInstanceCapacity" {
                    continue
                }
                _ = try await cloud.associate(w.allocationId, to: id, allowReassociation: true)
                return id
            }
        }
        throw SimError.internal("no subnet could hold \(logical)")
    }

    /// What a new instance of the agent authenticates with: a single-use enrollment secret when
    /// the instances' metadata services sign identity documents, else the client's token.
    private func credential(_ agentId: String) async throws -> (String, String) {
        guard configuration.identitySigner != nil else { return ("SPOTGUARD_AGENT_TOKEN", token) }
        let answer = try await api.send("POST", "/api/agents/\(agentId)/enrollments", token: token)
        guard answer.status == 201, let secret = answer.json["enrollment_secret"] as? String else {
            throw SimError.product("an enrollment secret for \(agentId) answered \(answer.status) \(answer.json)")
        }
        return ("SPOTGUARD_AGENT_ENROLLMENT_SECRET", secret)
    }

    /// The Auto Scaling group's part: a workload without any primary instance for
    /// `replaceSeconds` gets a new one (which registers and takes the agent over).
    func maintain(now: Date = Date()) async {
        await enableManualReplicas()
        for logical in order {
            guard var w = workloads[logical] else { continue }
            let live = await cloud.live(logical).filter(\.primary)
            if !live.isEmpty {
                w.missingSince = nil
            } else if let since = w.missingSince {
                if now.timeIntervalSince(since) >= configuration.replaceSeconds {
                    do {
                        let id = try await launch(logical)
                        w.replacements += 1
                        w.missingSince = nil
                        if let instance = await cloud.instance(id) { await cloud.record("replacement", instance, "no instance ran the workload") }
                    } catch {
                        logger.warning("replacement failed", metadata: ["workload": "\(logical)", "error": "\(error)"])
                    }
                }
            } else {
                w.missingSince = now
            }
            workloads[logical] = w
        }
    }

    func agentId(of workload: String) -> String? { workloads[workload]?.agentId }

    /// Resolves a drill's target: a logical workload id or an agent id.
    func workload(named name: String) -> String? {
        if workloads[name] != nil { return name }
        return workloads.values.first { $0.agentId == name.lowercased() }?.logical
    }

    /// A replica as the product's API lists it.
    struct Replica: Sendable {
        var id: String
        var status: String
        var instanceId: String?
        var promotedAt: Date?
    }

    func replicas(_ agentId: String) async -> [Replica] {
        let listed =
            (try? await api.send("GET", "/api/agents/\(agentId)/replicas?include_terminated=true", token: token).json["replicas"] as? [[String: Any]]) ?? []
        return listed.compactMap { r in
            guard let id = r["id"] as? String, let status = r["status"] as? String else { return nil }
            return Replica(
                id: id.lowercased(), status: status, instanceId: r["instance_id"] as? String,
                promotedAt: (r["promoted_at"] as? String).flatMap(EC2Answer.parseTime))
        }
    }

    /// Follows one termination notice until the replica is promoted or the instance is gone.
    func watch(_ notice: Notice) async -> NoticeOutcome {
        watching += 1
        defer { watching -= 1 }
        let agentId = notice.workload.flatMap { workloads[$0]?.agentId }
        let primaryProgress = await cloud.instance(notice.instanceId)?.progress ?? 0
        var outcome = NoticeOutcome(
            instanceId: notice.instanceId, workload: notice.workload, agentId: agentId, drill: notice.drill, armedAt: notice.armedAt,
            terminationTime: notice.terminationTime, readyReplicaAtNotice: false, primaryProgressAtNotice: primaryProgress, outcome: "no_ready_replica")
        guard let agentId, await cloud.instance(notice.instanceId)?.primary == true else {
            outcome.outcome = "not_a_primary"
            return record(outcome)
        }
        let before = await replicas(agentId)
        outcome.readyReplicaAtNotice = before.contains { $0.status == "ready" }
        let imds = await cloud.imds(notice.instanceId)
        let deadline = notice.terminationTime.addingTimeInterval(5)
        while Date() < deadline {
            if outcome.noticeReadMs == nil, let read = imds?.firstRead("spot/instance-action") {
                outcome.noticeReadMs = read.timeIntervalSince(notice.armedAt) * 1000
            }
            if let promoted = await promotion(agentId, replacing: notice.instanceId, since: notice.armedAt), let at = promoted.promotedAt {
                outcome.promotedMs = at.timeIntervalSince(notice.armedAt) * 1000
                outcome.replicaId = promoted.id
                outcome.replicaInstanceId = promoted.instanceId
                // a promotion after the instance is gone came too late for the workload
                outcome.outcome = at <= notice.terminationTime ? "failed_over" : "failed_over_late"
                if let replica = promoted.instanceId {
                    outcome.replicaProgress = await resume(
                        replica, from: notice.instanceId, atLeast: primaryProgress, until: notice.terminationTime.addingTimeInterval(5))
                }
                break
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
        if outcome.outcome == "no_ready_replica", outcome.readyReplicaAtNotice { outcome.outcome = "not_failed_over" }
        return record(outcome)
    }

    /// The promotion of another instance than `instance` since `since`: not the one that made
    /// `instance` primary (a notice that hits a just-promoted replica must not count it again).
    private func promotion(_ agentId: String, replacing instance: String, since: Date) async -> Replica? {
        await replicas(agentId).first { ($0.promotedAt ?? .distantPast) >= since.addingTimeInterval(-1) && $0.instanceId != instance }
    }

    /// Follows an instance lost without a notice until SpotGuard promotes a replica in its place
    /// (the workload then moves there), or `within` passes.
    func watchLoss(_ instanceId: String, workload: String, agentId: String, lostAt: Date, readyReplica: Bool, within: Duration) async -> LossOutcome {
        var outcome = LossOutcome(
            instanceId: instanceId, workload: workload, agentId: agentId, lostAt: lostAt, readyReplicaAtLoss: readyReplica,
            outcome: readyReplica ? "not_failed_over" : "no_ready_replica")
        let deadline = ContinuousClock.now + within
        while ContinuousClock.now < deadline {
            if let promoted = await promotion(agentId, replacing: instanceId, since: lostAt), let at = promoted.promotedAt {
                outcome.promotedMs = at.timeIntervalSince(lostAt) * 1000
                outcome.replicaId = promoted.id
                outcome.replicaInstanceId = promoted.instanceId
                outcome.outcome = "failed_over"
                if let replica = promoted.instanceId { await cloud.handOver(from: instanceId, to: replica) }
                break
            }
            try? await Task.sleep(for: .milliseconds(200))
        }
        return outcome
    }

    /// The workload moves to the promoted replica once its agent holds the primary's state (the
    /// promote command fetches it), or at `until` with whatever it holds.
    private func resume(_ replica: String, from old: String, atLeast progress: Int, until: Date) async -> Int? {
        guard let disk = await cloud.instance(replica)?.disk else { return nil }
        while Cloud.progress(on: disk) < progress, Date() < until { try? await Task.sleep(for: .milliseconds(100)) }
        await cloud.handOver(from: old, to: replica)
        return Cloud.progress(on: disk)
    }

    private func record(_ outcome: NoticeOutcome) -> NoticeOutcome {
        outcomes.append(outcome)
        return outcome
    }

    struct Summary: Sendable, Codable {
        var clientId: String
        var workloads: [[String: String]]
        var notices: [NoticeOutcome]
        var replacements: Int
    }

    var summary: Summary {
        Summary(
            clientId: clientId,
            workloads: order.compactMap { workloads[$0] }.map {
                ["logical_agent_id": $0.logical, "agent_id": $0.agentId, "instance_type": $0.type, "mode": $0.mode, "replacements": String($0.replacements)]
            },
            notices: outcomes, replacements: workloads.values.map(\.replacements).reduce(0, +))
    }
}

extension Data {
    /// Writes a file only its owner may read (mode 0600), as files holding a token must be.
    func writePrivately(to url: URL) throws {
        try? FileManager.default.removeItem(at: url)
        guard FileManager.default.createFile(atPath: url.path, contents: self, attributes: [.posixPermissions: 0o600]) else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: url.path])
        }
    }
}
