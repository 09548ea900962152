import Foundation
import Logging
import SpotCloud
import Synchronization

/// The agent on one instance: it learns who it is from IMDS, registers, and then runs its
/// loops until cancelled — heartbeats and spot prices (spooled, so nothing is lost while the
/// server is away), the interruption watch, the command long-poll, and in replica mode the
/// sync reports.
public final class Agent: Sendable {
    public struct Identity: Sendable, Equatable {
        public var instanceId: String
        public var instanceType: String
        public var availabilityZone: String
        public var region: String
        public var lifeCycle: String
        public var amiId: String?

        public var mode: String { lifeCycle == "spot" ? "spot" : "ondemand" }
        public var poolId: String { "\(instanceType).\(availabilityZone)" }
    }

    struct State {
        var identity: Identity?
        var agentId: String?
        var rebalanceReported: Date?
        var terminationHandled: Date?
        var replicaId: UUID?
        var syncReports = 0
        /// Set once this instance handed the workload on (failover or switch): it goes on
        /// answering commands until terminated, but no longer heartbeats as the primary.
        var retired = false
    }

    public static let version = "0.5.0"

    let configuration: AgentConfiguration
    let imds: IMDSClient
    let ec2: EC2Client
    let api: AgentAPI
    public let spool: Spool
    let logger: Logger
    private let state: Mutex<State>

    public init(configuration: AgentConfiguration, imds: IMDSClient, ec2: EC2Client, api: AgentAPI, spool: Spool, logger: Logger) {
        self.configuration = configuration
        self.imds = imds
        self.ec2 = ec2
        self.api = api
        self.spool = spool
        self.logger = logger
        state = Mutex(State(replicaId: configuration.replicaId))
    }

    public var agentId: String? { state.withLock { $0.agentId } }
    public var identity: Identity? { state.withLock { $0.identity } }

    public struct Refused: Error, CustomStringConvertible {
        public var description: String
    }

    /// Reads the instance's identity and registers (a replica takes its agent id from its
    /// configuration instead: registering would map the agent to the replica's instance).
    public func start() async throws {
        logger.debug("reading the instance identity")
        let identity = Identity(
            instanceId: try await imds.instanceId(), instanceType: try await imds.instanceType(), availabilityZone: try await imds.availabilityZone(),
            region: try await imds.region(), lifeCycle: try await imds.lifeCycle(), amiId: try await imds.amiId())
        state.withLock { $0.identity = identity }
        if configuration.replicaId != nil {
            guard let agentId = configuration.agentId else { throw Refused(description: "a replica needs agent_id in its configuration") }
            state.withLock { $0.agentId = agentId }
            logger.info("started as a replica", metadata: ["agent_id": "\(agentId)", "instance_id": "\(identity.instanceId)"])
            return
        }
        struct Register: Encodable {
            var logicalAgentId, instanceId, instanceType, az, mode, poolId, agentVersion: String
            var amiId: String?
        }
        let body = Register(
            logicalAgentId: configuration.logicalAgentId ?? identity.instanceId, instanceId: identity.instanceId, instanceType: identity.instanceType,
            az: identity.availabilityZone, mode: identity.mode, poolId: identity.poolId, agentVersion: Self.version, amiId: identity.amiId)
        var delay = 1.0
        while true {
            do {
                let answer = try await api.send("POST", "/api/agents/register", body)
                if let id = answer.json()["agent_id"] as? String, answer.status == 200 || answer.status == 201 {
                    state.withLock { $0.agentId = id.lowercased() }
                    logger.info("registered", metadata: ["agent_id": "\(id)", "instance_id": "\(identity.instanceId)"])
                    return
                }
                if (400..<500).contains(answer.status), answer.status != 408, answer.status != 429 {
                    throw Refused(description: "registration refused: \(answer.status) \(answer.errorCode ?? "")")
                }
            } catch let e as Refused {
                throw e
            } catch {
                logger.warning("registration failed, retrying", metadata: ["error": "\(error)"])
            }
            try await Task.sleep(for: .seconds(delay))
            delay = min(60, delay * 2)
        }
    }

    /// Runs every loop until the task is cancelled (SIGTERM in `spotguard-agent run`).
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.spool.run() }
            group.addTask { await self.every(self.configuration.watchSeconds) { try await self.watch() } }
            group.addTask { await self.commandLoop() }
            group.addTask { await self.every(self.configuration.priceSeconds) { try await self.reportPrices() } }
            // both loops run: a replica reports its sync until promoted, then heartbeats as the primary
            group.addTask { await self.every(self.configuration.heartbeatSeconds) { try await self.heartbeat() } }
            if configuration.replicaId != nil {
                group.addTask { await self.every(self.configuration.syncSeconds) { try await self.syncReport() } }
            }
            await group.waitForAll()
        }
    }

    func every(_ seconds: Double, _ body: @Sendable () async throws -> Void) async {
        while !Task.isCancelled {
            do {
                try await body()
            } catch is CancellationError {
                return
            } catch {
                logger.warning("agent loop failed", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: .seconds(seconds))
        }
    }

    func ids() throws -> (String, Identity) {
        guard let (agent, identity) = state.withLock({ s in s.agentId.flatMap { a in s.identity.map { (a, $0) } } }) else {
            throw Refused(description: "not started")
        }
        return (agent, identity)
    }

    // MARK: reports

    /// The primary's heartbeat (a replica stays silent until it is promoted; an instance that
    /// handed its workload on stays silent, or it would map the agent back to itself).
    public func heartbeat() async throws {
        let (agent, identity) = try ids()
        guard state.withLock({ $0.replicaId == nil && !$0.retired }) else { return }
        struct Heartbeat: Encodable {
            var status = "online"
            var instanceId, mode, poolId: String
            var observedAt: Date
        }
        try await spool.submit(
            "POST", "/api/agents/\(agent)/heartbeat",
            Heartbeat(instanceId: identity.instanceId, mode: identity.mode, poolId: identity.poolId, observedAt: Date()))
    }

    /// The latest spot price of every zone for the instance's type and the alternatives.
    public func reportPrices() async throws {
        let (agent, identity) = try ids()
        let types = [identity.instanceType] + configuration.alternativeTypes.filter { $0 != identity.instanceType }
        // EC2 answers the price in effect at the start time too, so a minute back is enough
        let history = try await ec2.describeSpotPriceHistory(instanceTypes: types, startTime: Date().addingTimeInterval(-60))
        var latest: [String: SpotPrice] = [:]
        for p in history where p.availabilityZone.hasPrefix(identity.region) {
            let pool = "\(p.instanceType).\(p.availabilityZone)"
            if latest[pool].map({ $0.timestamp < p.timestamp }) ?? true { latest[pool] = p }
        }
        guard !latest.isEmpty else { return }
        struct Pool: Encodable {
            var id: String
            var price: Double
        }
        struct Report: Encodable {
            var reportId: UUID
            var pools: [Pool]
            var onDemandPrice: Double?
            var instanceId: String
            var observedAt: Date
        }
        let pools = latest.sorted { $0.key < $1.key }.prefix(500).map { Pool(id: $0.key, price: $0.value.price) }
        if state.withLock({ $0.replicaId }) != nil {
            // a replica's prices are a second source: seed 000's submissions, marked as such
            struct Submission: Encodable {
                var submissionId: UUID
                var sourceAgentId: String
                var sourceInstanceId: String
                var sourceType: String
                var poolId: String
                var spotPrice: Double
                var onDemandPrice: Double?
                var observedAt: Date
            }
            let source = configuration.replicaType == "manual" ? "replica-manual" : "replica-automatic"
            for pool in pools {
                try await spool.submit(
                    "POST", "/api/pricing/submit",
                    Submission(
                        submissionId: UUID(), sourceAgentId: agent, sourceInstanceId: identity.instanceId, sourceType: source, poolId: pool.id,
                        spotPrice: pool.price, onDemandPrice: configuration.onDemandPrice, observedAt: Date()))
            }
            return
        }
        try await spool.submit(
            "POST", "/api/agents/\(agent)/pricing-report",
            Report(reportId: UUID(), pools: Array(pools), onDemandPrice: configuration.onDemandPrice, instanceId: identity.instanceId, observedAt: Date()))
    }

    /// A replica's report: it fetches the latest state its primary sent (when it keeps a state
    /// file) and says it is in sync, with how long the fetch took.
    func syncReport() async throws {
        let (agent, identity) = try ids()
        guard let replica = state.withLock({ $0.replicaId }) else { return }
        let started = ContinuousClock.now
        if let file = configuration.stateFile {
            let answer = try await api.send("GET", "/api/agents/\(agent)/replicas/\(replica)/state-transfer")
            if answer.status == 200 {
                try StateArchive.unpack(answer.body, to: file)
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
        // the first report of a run says the replica is syncing (launching → syncing); once it
        // has fetched the state, it is synced and asks to be ready
        let first = state.withLock { s in
            defer { s.syncReports += 1 }
            return s.syncReports == 0
        }
        let body = first
            ? Sync(syncStatus: "syncing", status: nil, stateTransferProgress: 0, syncLatencyMs: latency, instanceId: identity.instanceId)
            : Sync(syncStatus: "synced", status: "ready", stateTransferProgress: 100, syncLatencyMs: latency, instanceId: identity.instanceId)
        // not spooled: the next tick reports the state as it is then, and stale reports queued
        // behind an outage would only delay what matters (command results) once it is over
        let answer = try await api.send("POST", "/api/agents/\(agent)/replicas/\(replica)/sync-status", body)
        if answer.status >= 400 {
            logger.warning("sync status not taken", metadata: ["status": "\(answer.status)", "code": "\(answer.errorCode ?? "-")"])
        }
    }

    /// Sends the state file to the agent's ready replica, if both exist (seed 000 step 4). A
    /// server that cannot answer now (5xx, no connection) is asked again until `deadline`: the
    /// state is what the replica resumes from.
    func sendStateToReplica(agent: String, until deadline: Date) async {
        guard let file = configuration.stateFile else { return }
        guard FileManager.default.fileExists(atPath: file) else {
            logger.warning("no state file to send", metadata: ["state_file": "\(file)"])
            return
        }
        while true {
            do {
                let listed = try await api.send("GET", "/api/agents/\(agent)/replicas")
                if listed.status < 500 {
                    let replicas = (listed.json()["replicas"] as? [[String: Any]]) ?? []
                    guard let ready = replicas.first(where: { $0["status"] as? String == "ready" }), let id = (ready["id"] ?? ready["replica_id"]) as? String else {
                        logger.warning("no ready replica to send the state to", metadata: ["replicas": "\(listed.status) \(replicas.map { $0["status"] ?? "-" })"])
                        return
                    }
                    let answer = try await api.send("POST", "/api/agents/\(agent)/replicas/\(id.lowercased())/state-transfer", gzip: try StateArchive.pack(file))
                    if answer.status == 201 {
                        logger.notice("state sent to the replica", metadata: ["replica_id": "\(id)"])
                        return
                    }
                    if answer.status < 500 {
                        logger.error("state refused", metadata: ["replica_id": "\(id)", "status": "\(answer.status)", "code": "\(answer.errorCode ?? "-")"])
                        return
                    }
                }
                logger.warning("state transfer not possible yet, retrying", metadata: ["status": "\(listed.status)"])
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

    // MARK: interruption watch

    /// One look at IMDS: a new rebalance recommendation is reported (the coordinator decides on
    /// a replica); a new termination notice is answered by asking for the failover at once,
    /// retried until the server answers or the notice time passes.
    public func watch() async throws {
        let (agent, identity) = try ids()
        if let notice = try await imds.rebalanceRecommendation(), state.withLock({ $0.rebalanceReported != notice }) {
            struct Signal: Encodable {
                var signalType = "rebalance-recommendation"
                var signalTime: Date
                var instanceId: String
            }
            try await spool.submit("POST", "/api/agents/\(agent)/interruption", Signal(signalTime: notice, instanceId: identity.instanceId))
            state.withLock { $0.rebalanceReported = notice }
            logger.notice("rebalance recommendation reported", metadata: ["notice_time": "\(notice)"])
        }
        guard let action = try await imds.spotInstanceAction(), state.withLock({ $0.terminationHandled != action.time }) else { return }
        state.withLock {
            $0.terminationHandled = action.time
            $0.retired = true
        }
        struct Imminent: Encodable {
            var instanceId: String
            var terminationTime: Date
        }
        let body = Imminent(instanceId: identity.instanceId, terminationTime: action.time)
        // the state may take up to half the notice; the failover needs the rest
        await sendStateToReplica(agent: agent, until: Date().addingTimeInterval(max(0, action.time.timeIntervalSinceNow) / 2))
        while Date() < action.time {
            do {
                let answer = try await api.send("POST", "/api/agents/\(agent)/termination-imminent", body)
                logger.notice(
                    "termination notice answered",
                    metadata: ["status": "\(answer.status)", "action": "\(answer.json()["action"] ?? answer.errorCode ?? "-")"])
                if answer.status < 500 { return }
            } catch {
                logger.warning("termination notice not delivered, retrying", metadata: ["error": "\(error)"])
            }
            try await Task.sleep(for: .milliseconds(500))
        }
    }

    // MARK: commands

    struct Command: Decodable {
        var commandId: UUID
        var commandType: String
        var payload: [String: JSONAny]?
        var targetInstanceId: String?
        var targetMode: String?
        var targetPoolId: String?
        var terminateWaitSeconds: Int?
        var replicaId: UUID?
        /// The command's lease; the agent renews it while it works, so a long switch is not
        /// handed out a second time.
        var leaseSeconds: Int?
    }

    func commandLoop() async {
        var delay = 1.0
        while !Task.isCancelled {
            do {
                let (agent, identity) = try ids()
                let answer = try await api.send(
                    "GET", "/api/agents/\(agent)/pending-commands?instance_id=\(identity.instanceId)&wait=\(configuration.longPollSeconds)")
                guard answer.status == 200 else { throw Refused(description: "pending-commands answered \(answer.status)") }
                struct Batch: Decodable { var commands: [Command] }
                let decoder = JSONDecoder()
                decoder.keyDecodingStrategy = .convertFromSnakeCase
                for command in try decoder.decode(Batch.self, from: answer.body).commands {
                    await execute(command, agent: agent, identity: identity)
                }
                delay = 1
            } catch {
                if Task.isCancelled { return }
                logger.warning("command poll failed", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(delay))
                delay = min(30, delay * 2)
            }
        }
    }

    struct Result: Encodable {
        var status: String
        var instanceId: String?
        var errorMessage: String?
        var result: [String: String]?
    }

    func execute(_ command: Command, agent: String, identity: Identity) async {
        logger.info("command", metadata: ["type": "\(command.commandType)", "command_id": "\(command.commandId)"])
        let renewal = Task { [api, logger] in
            let every = Duration.seconds(max(5, (command.leaseSeconds ?? 120) / 3))
            while !Task.isCancelled {
                try? await Task.sleep(for: every)
                guard !Task.isCancelled else { return }
                if let answer = try? await api.send("POST", "/api/agents/\(agent)/commands/\(command.commandId)/lease"), answer.status == 409 {
                    logger.warning("the server no longer counts this command as ours", metadata: ["command_id": "\(command.commandId)"])
                }
            }
        }
        defer { renewal.cancel() }
        let outcome: Result
        do {
            switch command.commandType {
            case "switch":
                try await performSwitch(command, agent: agent, identity: identity)
                return  // the switch report completes the command
            case "terminate":
                let target = command.payload?["instance_id"]?.string ?? command.targetInstanceId ?? identity.instanceId
                let wait = command.terminateWaitSeconds ?? 0
                if wait > 0 { try await Task.sleep(for: .seconds(wait)) }
                _ = try await ec2.terminateInstances(ids: [target])
                outcome = Result(status: "succeeded", instanceId: target)
            case "snapshot":
                let image = try await ec2.createImage(instanceId: identity.instanceId, name: "spotguard-\(identity.instanceId)-\(Int(Date().timeIntervalSince1970))")
                outcome = Result(status: "succeeded", result: ["image_id": image])
            case "launch_replica":
                let launched = try await launchReplica(command, agent: agent, identity: identity)
                outcome = Result(status: "succeeded", instanceId: launched.id)
            case "check_primary":
                // this replica's primary went silent: how is its instance, as EC2 sees it?
                guard let primary = command.payload?["primary_instance_id"]?.string else {
                    throw Refused(description: "check_primary without a primary_instance_id")
                }
                let state: String
                do {
                    state = try await ec2.describeInstances(ids: [primary]).first { $0.id == primary }?.state ?? "not-found"
                } catch let error as EC2Error where error.code == "InvalidInstanceID.NotFound" {
                    state = "not-found"
                }
                outcome = Result(status: "succeeded", instanceId: primary, result: ["primary_state": state])
            case "promote":
                // take the primary's last state before taking over from it
                if let replica = state.withLock({ $0.replicaId }), let file = configuration.stateFile {
                    let answer = try await api.send("GET", "/api/agents/\(agent)/replicas/\(replica)/state-transfer")
                    if answer.status == 200 { try StateArchive.unpack(answer.body, to: file) }
                }
                state.withLock { $0.replicaId = nil }
                outcome = Result(status: "succeeded", instanceId: identity.instanceId)
            default:
                outcome = Result(status: "failed", errorMessage: "unknown command type \(command.commandType)")
            }
        } catch {
            outcome = Result(status: "failed", errorMessage: "\(error)")
        }
        do {
            try await spool.submit("POST", "/api/agents/\(agent)/commands/\(command.commandId)/result", outcome, urgent: true)
        } catch {
            logger.error("command result not spooled", metadata: ["error": "\(error)"])
        }
    }

    func launchReplica(_ command: Command, agent: String, identity: Identity) async throws -> EC2Instance {
        let pool = command.payload?["pool_id"]?.string ?? command.targetPoolId
        let type = command.payload?["instance_type"]?.string ?? identity.instanceType
        let az = command.payload?["az"]?.string ?? pool.map { String($0.split(separator: ".").last ?? "") }
        guard let replica = command.replicaId ?? command.payload?["replica_id"]?.string.flatMap(UUID.init) else {
            throw Refused(description: "launch_replica without a replica id")
        }
        return try await ec2.runInstances(RunInstancesRequest(
            imageId: identity.amiId ?? "", instanceType: type, market: .spot, availabilityZone: az,
            userData: userData(agent: agent, replica: replica), tags: ["spotguard:agent": agent, "spotguard:replica": replica.uuidString.lowercased()],
            clientToken: "replica-\(replica.uuidString.lowercased())"))
    }

    /// The user data that starts an agent on a new instance (as a replica when `replica` is set).
    func userData(agent: String, replica: UUID?) -> String {
        var lines = [
            "#!/bin/sh", "export SPOTGUARD_AGENT_SERVER='\(configuration.server.absoluteString)'", "export SPOTGUARD_AGENT_TOKEN='\(configuration.token)'",
            "export SPOTGUARD_AGENT_AGENT_ID='\(agent)'",
        ]
        if let logical = configuration.logicalAgentId { lines.append("export SPOTGUARD_AGENT_LOGICAL_AGENT_ID='\(logical)'") }
        if let replica { lines.append("export SPOTGUARD_AGENT_REPLICA_ID='\(replica.uuidString.lowercased())'") }
        lines.append("exec spotguard-agent run")
        return lines.joined(separator: "\n") + "\n"
    }

    /// seed 004's switch: an image of this instance, an instance from it in the target pool and
    /// mode, running, then the switch report (which completes the command); the old instance is
    /// terminated after the command's wait when auto-terminate is on.
    func performSwitch(_ command: Command, agent: String, identity: Identity) async throws {
        let initiated = Date()
        let mode: MarketType = command.targetMode == "ondemand" ? .onDemand : .spot
        let targetPool = command.targetPoolId
        let type = targetPool.map { String($0.split(separator: ".").dropLast().joined(separator: ".")) } ?? identity.instanceType
        let az = targetPool.map { String($0.split(separator: ".").last ?? "") } ?? identity.availabilityZone
        let image = try await ec2.createImage(instanceId: identity.instanceId, name: "spotguard-switch-\(command.commandId.uuidString.lowercased())")
        var imageReady: Date?
        for _ in 0..<120 {
            if try await ec2.describeImages(ids: [image]).first?.state == "available" {
                imageReady = Date()
                break
            }
            try await Task.sleep(for: .seconds(5))
        }
        guard let imageReady else { throw Refused(description: "image \(image) not available after 10 minutes") }
        var launched = try await ec2.runInstances(RunInstancesRequest(
            imageId: image, instanceType: type, market: mode, availabilityZone: az, userData: userData(agent: agent, replica: nil),
            tags: ["spotguard:agent": agent, "spotguard:switch": command.commandId.uuidString.lowercased()],
            clientToken: "switch-\(command.commandId.uuidString.lowercased())"))
        let launchedAt = Date()
        for _ in 0..<120 where launched.state != "running" {
            try await Task.sleep(for: .seconds(2))
            launched = try await ec2.describeInstances(ids: [launched.id]).first ?? launched
        }
        guard launched.state == "running" else { throw Refused(description: "instance \(launched.id) not running") }
        let ready = Date()
        // auto-terminate: the old instance goes after the command's wait, and only once the switch
        // report has left its spool (the spool is on this instance's disk: terminating first
        // would lose the report, and with it the switch from the ledger)
        let wait = command.terminateWaitSeconds
        let terminatedAt = wait == 0 ? Date() : nil
        struct Side: Encodable {
            var instanceId, instanceType, az, mode: String
            var poolId: String?
            var amiId: String?
        }
        struct Timing: Encodable {
            var initiatedAt: Date
            var amiCreatedAt, instanceLaunchedAt, instanceReadyAt: Date
            var oldTerminatedAt: Date?
        }
        struct Pricing: Encodable { var onDemand: Double? }
        struct Report: Encodable {
            var reportId: UUID
            var commandId: UUID
            var oldInstance, newInstance: Side
            var timing: Timing
            var pricing: Pricing
        }
        let report = Report(
            reportId: UUID(), commandId: command.commandId,
            oldInstance: Side(
                instanceId: identity.instanceId, instanceType: identity.instanceType, az: identity.availabilityZone, mode: identity.mode,
                poolId: identity.mode == "spot" ? identity.poolId : nil, amiId: identity.amiId),
            newInstance: Side(
                instanceId: launched.id, instanceType: type, az: az, mode: mode == .spot ? "spot" : "ondemand", poolId: mode == .spot ? "\(type).\(az)" : nil,
                amiId: image),
            timing: Timing(initiatedAt: initiated, amiCreatedAt: imageReady, instanceLaunchedAt: launchedAt, instanceReadyAt: ready, oldTerminatedAt: terminatedAt),
            pricing: Pricing(onDemand: configuration.onDemandPrice))
        state.withLock { $0.retired = true }
        try await spool.submit("POST", "/api/agents/\(agent)/switch-report", report)
        logger.notice("switched", metadata: ["new_instance": "\(launched.id)", "pool": "\(type).\(az)", "mode": "\(mode.rawValue)"])
        guard let wait else { return }
        let (ec2, spool, logger, old) = (self.ec2, self.spool, self.logger, identity.instanceId)
        let retire = {
            try? await Task.sleep(for: .seconds(wait))
            await spool.drain()
            do {
                _ = try await ec2.terminateInstances(ids: [old])
            } catch {
                logger.error("old instance not terminated", metadata: ["instance_id": "\(old)", "error": "\(error)"])
            }
        }
        // at once: before the command is answered; after a wait: in the background
        if wait == 0 { await retire() } else { Task { await retire() } }
    }
}

/// Any JSON value in a command payload, read as text where that makes sense.
struct JSONAny: Decodable {
    var string: String?

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) {
            string = s
        } else if let n = try? c.decode(Double.self) {
            string = String(n)
        } else if let b = try? c.decode(Bool.self) {
            string = String(b)
        } else {
            string = nil
        }
    }
}
