import Foundation
import IMDSMock
import Logging
import SimulatorCore
import SpotCloud
import SpotMarket

/// Something that happened in the simulated cloud, with wall and simulated time.
public struct SimEvent: Sendable, Codable {
    public var at: Date
    public var simTime: Date
    public var kind: String
    public var instanceId: String?
    public var workload: String?
    public var pool: String?
    public var detail: String?
}

/// An EC2 error as the API answers it.
struct EC2Fault: Error {
    var status: Int
    var code: String
    var message: String

    static func invalid(_ code: String, _ message: String) -> EC2Fault { EC2Fault(status: 400, code: code, message: message) }
}

/// A termination notice given to an instance (by the fault model or a drill).
struct Notice: Sendable {
    var instanceId: String
    var workload: String?
    var armedAt: Date
    var terminationTime: Date
    var drill: Bool
}

/// The simulated region: instances and their machines, images, the market, the fault model and
/// the bill. Every EC2 action and every scheduled happening goes through this actor.
actor Cloud {
    enum State: String {
        case pending, running, shuttingDown = "shutting-down", terminated

        var code: Int {
            switch self {
            case .pending: 0
            case .running: 16
            case .shuttingDown: 32
            case .terminated: 48
            }
        }
    }

    struct Instance {
        var id: String
        var ordinal: Int
        var reservationId: String
        var type: String
        var zone: String
        var spot: Bool
        var imageId: String
        var state: State
        var launchTime: Date
        var tags: [String: String]
        var userData: String?
        var privateIp: String
        var subnetId: String
        var securityGroups: [String]
        /// The instance profile's ARN; none: the instance's metadata service has no credentials.
        var profileArn: String?
        var workload: String?
        var replica: Bool
        /// The workload runs here: its state file advances.
        var primary: Bool
        var progress = 0
        var checkedHour: Int
        var terminationTime: Date?
        var stateReason: (code: String, message: String)?
        var terminatedAt: Date?

        var pool: String { "\(type).\(zone)" }
        var disk: URL!
    }

    struct Image {
        var id: String
        var name: String
        var sourceInstance: String?
        var created: Date
        var availableAt: Date
        var disk: URL
        var tags: [String: String] = [:]
    }

    enum Scheduled {
        case boot(String)
        case notice(String)
        case terminate(String)
    }

    static let baseImage = "ami-0a5c3558529277641"
    let ownerId = "123456789012"

    let configuration: SimConfiguration
    let market: Market
    let clock: SimClock
    let faults: FaultModel
    let logger: Logger
    /// The role of the workloads' instance profile: its credentials, served by the IMDS of
    /// every instance launched with the profile (and only those).
    let instanceRole: (name: String, accessKeyId: String, secretAccessKey: String, token: String)
    let network: SimNetwork
    var addresses: [String: SimAddress] = [:]
    var ec2Endpoint = ""
    var onNotice: @Sendable (Notice) -> Void = { _ in }

    var instances: [String: Instance] = [:]
    var launchOrder: [String] = []
    var hosts: [String: InstanceHost] = [:]
    var images: [String: Image] = [:]
    var clientTokens: [String: [String]] = [:]
    var scheduled: [(at: Date, what: Scheduled)] = []
    /// logical workload → instance type, for the on-demand baseline.
    var workloads: [String: String] = [:]
    var bill = Bill()
    var lastBilled: Date
    var lastProgress: Date
    var faultsActive = true
    var counters: [String: Int] = [:]
    var recent: [SimEvent] = []
    let eventLog: FileHandle?

    init(configuration: SimConfiguration, market: Market, clock: SimClock, logger: Logger) throws {
        self.configuration = configuration
        self.market = market
        self.clock = clock
        self.logger = logger
        faults = FaultModel(
            seed: configuration.seed, interruptionScale: configuration.interruptionScale, rebalanceShare: configuration.rebalanceShare,
            capacityShortage: configuration.capacityShortage)
        instanceRole = ("spotguard-sim-instance", "ASIA" + Self.randomId(16, upper: true), Self.randomId(40), Self.randomId(64))
        network = SimNetwork(zones: market.zones.map(\.name), ownerId: ownerId)
        lastBilled = clock.wallStart
        lastProgress = clock.wallStart
        let fm = FileManager.default
        try fm.createDirectory(at: configuration.directory, withIntermediateDirectories: true)
        for sub in ["instances", "images"] {
            let d = configuration.directory.appendingPathComponent(sub)
            try? fm.removeItem(at: d)  // a new cloud: nothing of an earlier run survives
            try fm.createDirectory(at: d, withIntermediateDirectories: true)
        }
        let log = configuration.directory.appendingPathComponent("events.jsonl")
        _ = fm.createFile(atPath: log.path, contents: nil)
        eventLog = try? FileHandle(forWritingTo: log)
        // the base image's disk: the agent's configuration file
        let base = configuration.directory.appendingPathComponent("images/\(Self.baseImage)")
        try fm.createDirectory(at: base.appendingPathComponent("state"), withIntermediateDirectories: true)
        let agentConfig: [String: Any] = [
            "spool_dir": "spool", "state_file": "state/workload.json", "heartbeat_seconds": configuration.agentHeartbeatSeconds,
            "price_seconds": configuration.agentPriceSeconds, "watch_seconds": 1, "sync_seconds": configuration.agentSyncSeconds,
            "long_poll_seconds": configuration.agentLongPollSeconds, "alternative_types": market.instanceTypes,
        ]
        try JSONSerialization.data(withJSONObject: agentConfig, options: [.prettyPrinted, .sortedKeys]).write(to: base.appendingPathComponent("agent.json"))
        images[Self.baseImage] = Image(
            id: Self.baseImage, name: "spotguard-agent-base", sourceInstance: nil, created: clock.wallStart, availableAt: clock.wallStart, disk: base)
    }

    static func randomId(_ n: Int, upper: Bool = false) -> String {
        let chars = Array(upper ? "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567" : "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        return String((0..<n).map { _ in chars.randomElement()! })
    }

    static func hexId(_ prefix: String, _ n: Int = 17) -> String { prefix + String((0..<n).map { _ in "0123456789abcdef".randomElement()! }) }

    func setEndpoint(_ url: String, onNotice: @escaping @Sendable (Notice) -> Void) {
        ec2Endpoint = url
        self.onNotice = onNotice
    }

    // MARK: events

    func record(_ kind: String, _ instance: Instance? = nil, pool: String? = nil, _ detail: String? = nil, at now: Date = Date()) {
        let event = SimEvent(
            at: now, simTime: clock.sim(now), kind: kind, instanceId: instance?.id, workload: instance?.workload, pool: pool ?? instance?.pool, detail: detail)
        counters[kind, default: 0] += 1
        recent.append(event)
        if recent.count > 2000 { recent.removeFirst(recent.count - 2000) }
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.dateEncodingStrategy = .iso8601
        if let line = try? encoder.encode(event) { eventLog?.write(line + Data("\n".utf8)) }
        logger.info("\(kind)", metadata: ["instance": "\(instance?.id ?? "-")", "workload": "\(instance?.workload ?? "-")", "detail": "\(detail ?? "")"])
    }

    // MARK: launching

    struct Launch {
        var imageId: String
        var type: String
        var zone: String?
        var spot: Bool
        var userData: String?
        var tags: [String: String] = [:]
        var clientToken: String?
        var count = 1
        var subnetId: String?
        var securityGroupIds: [String] = []
        /// The instance profile, by ARN or name.
        var profile: String?
    }

    func launch(_ r: Launch, now: Date = Date()) throws -> [Instance] {
        if let token = r.clientToken, let ids = clientTokens[token] { return ids.compactMap { instances[$0] } }
        guard let image = images[r.imageId] else {
            throw EC2Fault.invalid("InvalidAMIID.NotFound", "The image id '[\(r.imageId)]' does not exist")
        }
        guard image.availableAt <= now else { throw EC2Fault.invalid("InvalidAMIID.Unavailable", "The image id '[\(r.imageId)]' is not available") }
        guard market.onDemand[r.type] != nil else {
            throw EC2Fault.invalid("InvalidParameterValue", "Invalid value '\(r.type)' for InstanceType.")
        }
        let zones = market.zones.map(\.name)
        if let zone = r.zone, !zones.contains(zone) {
            throw EC2Fault.invalid("InvalidParameterValue", "Invalid availability zone: [\(zone)]")
        }
        // the subnet names the zone; the profile and groups must exist
        let subnet = try network.subnet(r.subnetId, zone: r.zone)
        let profile = try network.profile(r.profile)
        try network.checkGroups(r.securityGroupIds)
        let zone = subnet.zone
        let hour = clock.hour(now)
        if r.spot, faults.outOfCapacity(pool: "\(r.type).\(zone)", hour: hour) {
            let others = network.subnets.map(\.zone).filter { $0 != zone && !faults.outOfCapacity(pool: "\(r.type).\($0)", hour: hour) }
            record("capacity_shortage", pool: "\(r.type).\(zone)", "RunInstances refused", at: now)
            throw EC2Fault(
                status: 500, code: "InsufficientInstanceCapacity",
                message:
                    "We currently do not have sufficient \(r.type) capacity in the Availability Zone you requested (\(zone)). Our system will be working on provisioning additional capacity. You can currently get \(r.type) capacity by not specifying an Availability Zone in your request or choosing \(others.joined(separator: ", "))."
            )
        }
        let exports = r.userData.map(UserData.settings) ?? [:]
        let reservation = Self.hexId("r-")
        var launched: [Instance] = []
        for _ in 0..<r.count {
            let ordinal = launchOrder.count
            var instance = Instance(
                id: Self.hexId("i-"), ordinal: ordinal, reservationId: reservation, type: r.type, zone: zone, spot: r.spot, imageId: r.imageId,
                state: .pending, launchTime: now, tags: r.tags, userData: r.userData,
                privateIp: "10.0.\(ordinal / 250 % 250).\(ordinal % 250 + 4)", subnetId: subnet.id,
                securityGroups: r.securityGroupIds.isEmpty ? [network.securityGroupId] : r.securityGroupIds, profileArn: profile,
                workload: exports["SPOTGUARD_AGENT_LOGICAL_AGENT_ID"],
                replica: exports["SPOTGUARD_AGENT_REPLICA_ID"] != nil, primary: exports["SPOTGUARD_AGENT_REPLICA_ID"] == nil, checkedHour: hour)
            instance.disk = configuration.directory.appendingPathComponent("instances/\(instance.id)")
            do {
                try FileManager.default.copyItem(at: image.disk, to: instance.disk)
            } catch {
                throw EC2Fault(status: 500, code: "InternalError", message: "An internal error has occurred")
            }
            instance.progress = Self.progress(on: instance.disk)
            instances[instance.id] = instance
            launchOrder.append(instance.id)
            scheduled.append((now.addingTimeInterval(configuration.bootSeconds), .boot(instance.id)))
            record("launch", instance, "\(r.spot ? "spot" : "on-demand") from \(r.imageId)\(instance.replica ? " (replica)" : "")", at: now)
            launched.append(instance)
        }
        if let token = r.clientToken { clientTokens[token] = launched.map(\.id) }
        return launched
    }

    func boot(_ id: String) async {
        guard let instance = instances[id], instance.state == .pending else { return }
        var identity = IMDSMock.Identity(
            instanceId: id, instanceType: instance.type, availabilityZone: instance.zone,
            availabilityZoneId: market.zones.first { $0.name == instance.zone }?.id, lifeCycle: instance.spot ? "spot" : "on-demand",
            amiId: instance.imageId, localIPv4: instance.privateIp)
        if instance.profileArn != nil {
            identity.role = (
                instanceRole.name, instanceRole.accessKeyId, instanceRole.secretAccessKey, instanceRole.token, Date().addingTimeInterval(6 * 3600)
            )
        }
        let host: InstanceHost
        do {
            host = try await InstanceHost.start(identity, signer: configuration.identitySigner)
        } catch {
            logger.error("instance did not boot", metadata: ["instance": "\(id)", "error": "\(error)"])
            return
        }
        // the instance may have been terminated while its machine started
        guard var current = instances[id], current.state == .pending else {
            await host.shutdown()
            return
        }
        hosts[id] = host
        current.state = .running
        if let script = current.userData, case let settings = UserData.settings(script), !settings.isEmpty {
            let agentDir = URL(fileURLWithPath: configuration.agentBinary).deletingLastPathComponent().path
            let environment = [
                "PATH": "\(agentDir):/usr/local/bin:/usr/bin:/bin", "HOME": current.disk.path,
                "SPOTGUARD_AGENT_CONFIG": current.disk.appendingPathComponent("agent.json").path,
                "AWS_EC2_METADATA_SERVICE_ENDPOINT": host.endpoint, "AWS_ENDPOINT_URL_EC2": ec2Endpoint,
                "SPOTGUARD_AGENT_ON_DEMAND_PRICE": String(market.onDemand[current.type] ?? 0), "SPOTGUARD_LOG_LEVEL": configuration.agentLogLevel,
            ]
            do {
                try host.boot(agent: configuration.agentBinary, settings: settings, environment: environment, disk: current.disk)
            } catch {
                record("boot_failed", current, "\(error)")
            }
        }
        instances[id] = current
        record("running", current)
    }

    // MARK: terminating

    /// TerminateInstances and interruptions: shutting down now, terminated once the machine stopped.
    func terminate(_ id: String, reason: (String, String), now: Date = Date()) async {
        guard var instance = instances[id], instance.state == .pending || instance.state == .running else { return }
        instance.state = .shuttingDown
        instance.stateReason = reason
        instances[id] = instance
        record(reason.0 == "Server.SpotInstanceTermination" ? "interrupted" : "terminate", instance, reason.1, at: now)
        releaseAddresses(of: id)
        if let host = hosts.removeValue(forKey: id) { await host.shutdown() }
        instances[id]?.state = .terminated
        instances[id]?.terminatedAt = Date()
    }

    /// The instance fails at once without a notice (hardware, or a reclaim nobody announced):
    /// terminated, its agent killed on the spot.
    func lose(_ id: String, now: Date = Date()) async {
        guard var instance = instances[id], instance.state == .pending || instance.state == .running else { return }
        instance.state = .terminated
        instance.stateReason = ("Server.InternalError", "Server.InternalError: the instance failed")
        instance.terminatedAt = now
        instances[id] = instance
        record("lost", instance, "no notice", at: now)
        releaseAddresses(of: id)
        if let host = hosts.removeValue(forKey: id) { await host.shutdown(grace: .zero) }
    }

    // MARK: interruptions

    /// Gives `id` its two-minute warning (or `noticeSeconds`), terminating it then.
    @discardableResult
    func armNotice(_ id: String, seconds: Double? = nil, drill: Bool = false, now: Date = Date()) -> Notice? {
        guard var instance = instances[id], instance.state == .running, instance.terminationTime == nil || instance.terminationTime == .distantFuture,
            let host = hosts[id]
        else { return nil }
        let at = host.imds.armInterruption(at: now.addingTimeInterval(seconds ?? configuration.noticeSeconds))
        instance.terminationTime = at
        instances[id] = instance
        scheduled.append((at, .terminate(id)))
        record("termination_notice", instance, drill ? "drill" : nil, at: now)
        let notice = Notice(instanceId: id, workload: instance.workload, armedAt: now, terminationTime: at, drill: drill)
        onNotice(notice)
        return notice
    }

    @discardableResult
    func armRebalance(_ id: String, drill: Bool = false, now: Date = Date()) -> Date? {
        guard let instance = instances[id], instance.state == .running, let host = hosts[id] else { return nil }
        let at = host.imds.armRebalance(at: now)
        record("rebalance_recommendation", instance, drill ? "drill" : nil, at: now)
        return at
    }

    func imds(_ id: String) -> IMDSMock? { hosts[id]?.imds }
    func imdsEndpoint(_ id: String) -> String? { hosts[id]?.endpoint }
}
