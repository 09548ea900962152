import Foundation
import Logging
import SpotCloud
import SpotModels
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
        /// The logical id the agent registered with; every instance launched for the workload
        /// carries it, so a switched or recovered instance is the same agent, modes and history.
        var logicalAgentId: String?
        var rebalanceReported: Date?
        var terminationHandled: Date?
        var replicaId: UUID?
        var syncReports = 0
        /// Chunks the state store holds for this agent, as far as this run knows (nil: not yet
        /// learned from the newest version), and the version this run shipped last.
        var shippedChunks: Set<String>?
        var shippedManifest: (version: Int64, manifest: StateManifest)?
        /// The state version a replica has written to its state path, and its manifest.
        var heldStateVersion: Int64?
        var heldState: StateManifest?
        /// Set once this instance handed the workload on (failover or switch): it goes on
        /// answering commands until terminated, but no longer heartbeats as the primary.
        var retired = false
        /// A command poll named this instance the primary: seeing another one later fences it.
        var confirmedPrimary = false
        /// The stop hook ran (or there is none): the workload no longer serves here.
        var fenced = false
        /// Since when a command poll names another instance the primary.
        var otherPrimarySince: Date?
        /// This instance hands over by the book (a `fence` command, its own switch).
        var handingOver = false
        /// When this instance's agent token expires (nil: a configured token, never rotated here).
        var tokenExpiresAt: Date?
        /// The highest primary epoch the server has named (registration, command polls): a
        /// switch or promotion issued at a lower one was overtaken and is refused.
        var knownEpoch: Int64 = 0
    }

    public static let version = "0.5.0"

    let configuration: AgentConfiguration
    let imds: IMDSClient
    let ec2: EC2Client
    let api: AgentAPI
    public let spool: Spool
    let logger: Logger
    let state: Mutex<State>

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
        try await settleCredentials(instanceId: identity.instanceId)
        if configuration.replicaId != nil {
            guard let agentId = configuration.agentId else { throw Refused(description: "a replica needs agent_id in its configuration") }
            state.withLock { $0.agentId = agentId }
            logger.info("started as a replica", metadata: ["agent_id": "\(agentId)", "instance_id": "\(identity.instanceId)"])
            return
        }
        struct Register: Encodable {
            var logicalAgentId, instanceId, instanceType, az, mode, poolId, agentVersion: String
            var amiId: String?
            var usableZones: [String]?
        }
        let logical = configuration.logicalAgentId ?? identity.instanceId
        state.withLock { $0.logicalAgentId = logical }
        let body = Register(
            logicalAgentId: logical, instanceId: identity.instanceId, instanceType: identity.instanceType,
            az: identity.availabilityZone, mode: identity.mode, poolId: identity.poolId, agentVersion: Self.version, amiId: identity.amiId,
            usableZones: await usableZones(identity.instanceId))
        var delay = 1.0
        while true {
            do {
                let answer = try await api.send("POST", "/api/agents/register", body)
                let json = answer.json()
                if let id = json["agent_id"] as? String, answer.status == 200 || answer.status == 201 {
                    let primary = json["primary_instance_id"] as? String
                    state.withLock {
                        $0.agentId = id.lowercased()
                        $0.knownEpoch = max($0.knownEpoch, (json["primary_epoch"] as? NSNumber)?.int64Value ?? 0)
                    }
                    logger.info("registered", metadata: ["agent_id": "\(id)", "instance_id": "\(identity.instanceId)"])
                    if let primary, primary != identity.instanceId {
                        // a former primary started again (a reboot, a late wake-up): another instance serves now
                        logger.error("this instance was replaced as the agent's primary: fencing it", metadata: ["primary": "\(primary)"])
                        _ = await runStopHook(reason: "replaced by \(primary)")
                        return
                    }
                    await tagOwnInstance(identity.instanceId, agent: id.lowercased())
                    try await sendTrafficConfiguration(agent: id.lowercased())
                    return
                }
                if (400..<500).contains(answer.status), answer.status != 408, answer.status != 429 {
                    throw Refused(description: "registration refused: \(answer.status) \(answer.errorCode ?? "")")
                }
            } catch let e as Refused {
                throw e
            } catch let cancelled as CancellationError {
                throw cancelled
            } catch {
                logger.warning("registration failed, retrying", metadata: ["error": "\(error)"])
            }
            try await Task.sleep(for: .seconds(delay))
            delay = min(60, delay * 2)
        }
    }

    /// The zones where this instance's VPC has an available subnet: the only zones a replica or
    /// switch target can be launched in. nil (every zone) when the instance has no VPC or its
    /// subnets cannot be read.
    func usableZones(_ instanceId: String) async -> [String]? {
        do {
            guard let vpc = try await ec2.describeInstances(ids: [instanceId]).first(where: { $0.id == instanceId })?.vpcId else { return nil }
            return Set(try await ec2.describeSubnets(vpcId: vpc).map(\.availabilityZone)).sorted()
        } catch {
            logger.warning("the VPC's subnets could not be read: every zone is taken as usable", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// Tags this instance `spotguard:agent` = the agent, which `terminate` requires of any
    /// instance it is asked to end (instances the agent launches carry the tag from the start).
    func tagOwnInstance(_ instanceId: String, agent: String) async {
        do {
            try await ec2.createTags(resources: [instanceId], tags: ["spotguard:agent": agent])
        } catch {
            logger.warning(
                "could not tag this instance spotguard:agent; a terminate command for it will be refused",
                metadata: ["instance_id": "\(instanceId)", "error": "\(error)"])
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
            if configuration.statePath != nil, configuration.stateSeconds > 0 {
                group.addTask { await self.every(self.configuration.stateSeconds) { try await self.periodicShip() } }
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
            Heartbeat(instanceId: identity.instanceId, mode: identity.mode, poolId: identity.poolId, observedAt: api.clock.now()))
        do {
            try await rotateTokenIfDue(agent: agent, instanceId: identity.instanceId)
        } catch {
            logger.warning("agent token rotation failed; retried with the next heartbeat", metadata: ["error": "\(error)"])
        }
    }

    /// The latest spot price of every zone for the instance's type and the alternatives.
    public func reportPrices() async throws {
        let (agent, identity) = try ids()
        let types = [identity.instanceType] + configuration.alternativeTypes.filter { $0 != identity.instanceType }
        // EC2 answers the price in effect at the start time too, so a minute back is enough
        let history = try await ec2.describeSpotPriceHistory(instanceTypes: types, startTime: api.clock.now().addingTimeInterval(-60))
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
                        spotPrice: pool.price, onDemandPrice: ownType(pool.id) ? configuration.onDemandPrice : nil, observedAt: api.clock.now()))
            }
            return
        }
        // a report's on-demand price is for every pool it lists, and the one the agent knows is
        // its own type's: the alternative types' pools go in a report without one
        let now = api.clock.now()
        for (group, onDemand) in [(pools.filter { ownType($0.id) }, configuration.onDemandPrice), (pools.filter { !ownType($0.id) }, nil)]
        where !group.isEmpty {
            try await spool.submit(
                "POST", "/api/agents/\(agent)/pricing-report",
                Report(reportId: UUID(), pools: group, onDemandPrice: onDemand, instanceId: identity.instanceId, observedAt: now))
        }
        func ownType(_ pool: String) -> Bool { pool.hasPrefix(identity.instanceType + ".") }
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
        // the newest state may take up to half the notice; the failover needs the rest
        // (the notice's time is AWS's: compared with the corrected clock, the deadline kept on the local one)
        await shipStateBefore(Date().addingTimeInterval(max(0, action.time.timeIntervalSince(api.clock.now())) / 2), reason: "termination notice")
        while api.clock.now() < action.time {
            do {
                let answer = try await api.send("POST", "/api/agents/\(agent)/termination-imminent", body)
                logger.notice(
                    "termination notice answered",
                    metadata: ["status": "\(answer.status)", "action": "\(answer.json()["action"] ?? answer.errorCode ?? "-")"])
                // without a ready replica, the one launched for this notice restores the version just shipped
                if answer.status < 500 { return }
            } catch {
                logger.warning("termination notice not delivered, retrying", metadata: ["error": "\(error)"])
            }
            try await Task.sleep(for: .milliseconds(500))
        }
    }
}
