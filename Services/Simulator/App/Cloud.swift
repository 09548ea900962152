import Foundation
import IMDSMock
import Logging
import SimulatorCore
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
    /// The instance profile every instance gets (served by its IMDS).
    let instanceRole: (name: String, accessKeyId: String, secretAccessKey: String, token: String)
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
        let hour = clock.hour(now)
        let zone: String
        if let z = r.zone {
            zone = z
        } else {
            // EC2 picks a zone with capacity
            let open = zones.filter { !(r.spot && faults.outOfCapacity(pool: "\(r.type).\($0)", hour: hour)) }
            let candidates = open.isEmpty ? zones : open
            zone = candidates[Int(Draw.unit(faults.seed, "zone", launchOrder.count) * Double(candidates.count))]
        }
        if r.spot, faults.outOfCapacity(pool: "\(r.type).\(zone)", hour: hour) {
            let others = zones.filter { $0 != zone && !faults.outOfCapacity(pool: "\(r.type).\($0)", hour: hour) }
            record("capacity_shortage", pool: "\(r.type).\(zone)", "RunInstances refused", at: now)
            throw EC2Fault(
                status: 500, code: "InsufficientInstanceCapacity",
                message:
                    "We currently do not have sufficient \(r.type) capacity in the Availability Zone you requested (\(zone)). Our system will be working on provisioning additional capacity. You can currently get \(r.type) capacity by not specifying an Availability Zone in your request or choosing \(others.joined(separator: ", ")).")
        }
        let exports = r.userData.map(UserData.exports) ?? [:]
        let reservation = Self.hexId("r-")
        var launched: [Instance] = []
        for _ in 0..<r.count {
            let ordinal = launchOrder.count
            var instance = Instance(
                id: Self.hexId("i-"), ordinal: ordinal, reservationId: reservation, type: r.type, zone: zone, spot: r.spot, imageId: r.imageId,
                state: .pending, launchTime: now, tags: r.tags, userData: r.userData,
                privateIp: "10.0.\(ordinal / 250 % 250).\(ordinal % 250 + 4)", workload: exports["SPOTGUARD_AGENT_LOGICAL_AGENT_ID"],
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

    private func boot(_ id: String) async {
        guard let instance = instances[id], instance.state == .pending else { return }
        var identity = IMDSMock.Identity(
            instanceId: id, instanceType: instance.type, availabilityZone: instance.zone,
            availabilityZoneId: market.zones.first { $0.name == instance.zone }?.id, lifeCycle: instance.spot ? "spot" : "on-demand",
            amiId: instance.imageId, localIPv4: instance.privateIp)
        identity.role = (
            instanceRole.name, instanceRole.accessKeyId, instanceRole.secretAccessKey, instanceRole.token, Date().addingTimeInterval(6 * 3600)
        )
        let host: InstanceHost
        do {
            host = try await InstanceHost.start(identity)
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
        if let script = current.userData, script.hasPrefix("#!") {
            let agentDir = URL(fileURLWithPath: configuration.agentBinary).deletingLastPathComponent().path
            let environment = [
                "PATH": "\(agentDir):/usr/local/bin:/usr/bin:/bin", "HOME": current.disk.path,
                "SPOTGUARD_AGENT_CONFIG": current.disk.appendingPathComponent("agent.json").path,
                "AWS_EC2_METADATA_SERVICE_ENDPOINT": host.endpoint, "AWS_ENDPOINT_URL_EC2": ec2Endpoint,
                "SPOTGUARD_AGENT_ON_DEMAND_PRICE": String(market.onDemand[current.type] ?? 0), "SPOTGUARD_LOG_LEVEL": configuration.agentLogLevel,
            ]
            do {
                try host.boot(script: script, environment: environment, disk: current.disk)
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

    // MARK: the clock

    /// Everything due: boots, notices, terminations; the bill; interruption draws; the workloads' progress.
    func tick(now: Date = Date()) async {
        let due = scheduled.filter { $0.at <= now }
        scheduled.removeAll { $0.at <= now }
        for (_, what) in due {
            switch what {
            case .boot(let id): await boot(id)
            case .notice(let id): armNotice(id, now: now)
            case .terminate(let id):
                await terminate(id, reason: ("Server.SpotInstanceTermination", "Server.SpotInstanceTermination: Spot instance termination"), now: now)
            }
        }
        charge(until: now)
        if faultsActive { drawInterruptions(now: now) }
        if now.timeIntervalSince(lastProgress) >= 1 {
            lastProgress = now
            advanceWorkloads(now: now)
        }
    }

    private func charge(until now: Date) {
        let hours = max(0, now.timeIntervalSince(lastBilled)) / clock.hourSeconds
        guard hours > 0 else { return }
        let hour = clock.hour(lastBilled)
        for instance in instances.values where instance.state == .running || instance.state == .shuttingDown {
            let price = instance.spot ? market.price(instance.pool, hour: hour) ?? 0 : market.onDemand[instance.type] ?? 0
            bill.charge(pricePerHour: price, hours: hours, spot: instance.spot, replica: instance.replica && !instance.primary)
        }
        for type in workloads.values { bill.baseline += (market.onDemand[type] ?? 0) * hours }
        lastBilled = now
    }

    private func drawInterruptions(now: Date) {
        let hour = clock.hour(now)
        for id in launchOrder {
            guard var instance = instances[id], instance.state == .running, instance.spot, instance.terminationTime == nil, instance.checkedHour < hour,
                !configuration.sparedWorkloads.contains(instance.workload ?? "")
            else { continue }
            var outcome: FaultModel.Interruption?
            while instance.checkedHour < hour, outcome == nil {
                instance.checkedHour += 1
                outcome = faults.interruption(instance: instance.ordinal, hour: instance.checkedHour, band: market.bands[instance.pool])
            }
            instances[id] = instance
            switch outcome {
            case .notice: armNotice(id, now: now)
            case .rebalanceThenNotice:
                armRebalance(id, now: now)
                instances[id]?.terminationTime = .distantFuture  // spoken for: no second draw
                scheduled.append((now.addingTimeInterval(configuration.rebalanceLeadSeconds), .notice(id)))
            case nil: break
            }
        }
    }

    /// The simulated workload: each primary instance counts up in its state file once a second,
    /// from whatever its disk held when it became primary.
    private func advanceWorkloads(now: Date) {
        for id in launchOrder {
            guard var instance = instances[id], instance.state == .running, instance.primary, instance.workload != nil else { continue }
            instance.progress += 1
            instances[id] = instance
            let body: [String: Any] = ["workload": instance.workload ?? "", "progress": instance.progress, "instance_id": id]
            let file = instance.disk.appendingPathComponent("state/workload.json")
            if let data = try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys]) {
                try? data.write(to: file, options: .atomic)
            }
        }
    }

    static func progress(on disk: URL) -> Int {
        guard let data = try? Data(contentsOf: disk.appendingPathComponent("state/workload.json")),
            let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return 0 }
        return json["progress"] as? Int ?? 0
    }

    /// The replica on `to` was promoted: the workload goes on there, from the state it
    /// received, and stops on `from`.
    func handOver(from old: String, to id: String) {
        instances[old]?.primary = false
        guard var instance = instances[id], !instance.primary else { return }
        instance.primary = true
        instance.progress = Self.progress(on: instance.disk)
        instances[id] = instance
        record("workload_moved", instance, "from \(old), resumes at \(instance.progress)")
    }

    // MARK: images

    func createImage(instanceId: String, name: String, now: Date = Date()) throws -> String {
        guard let instance = instances[instanceId] else {
            throw EC2Fault.invalid("InvalidInstanceID.NotFound", "The instance ID '\(instanceId)' does not exist")
        }
        guard instance.state == .running || instance.state == .pending else {
            throw EC2Fault.invalid("IncorrectInstanceState", "The instance '\(instanceId)' is not in a state from which it can be imaged.")
        }
        guard !images.values.contains(where: { $0.name == name }) else {
            throw EC2Fault.invalid("InvalidAMIName.Duplicate", "AMI name \(name) is already in use by AMI \(images.values.first { $0.name == name }!.id)")
        }
        let id = Self.hexId("ami-")
        let disk = configuration.directory.appendingPathComponent("images/\(id)")
        do {
            try FileManager.default.createDirectory(at: disk, withIntermediateDirectories: true)
            for item in ["agent.json", "state"] {
                let from = instance.disk.appendingPathComponent(item)
                if FileManager.default.fileExists(atPath: from.path) { try FileManager.default.copyItem(at: from, to: disk.appendingPathComponent(item)) }
            }
        } catch {
            throw EC2Fault(status: 500, code: "InternalError", message: "An internal error has occurred")
        }
        images[id] = Image(id: id, name: name, sourceInstance: instanceId, created: now, availableAt: now.addingTimeInterval(configuration.imageSeconds), disk: disk)
        record("image", instance, "\(id) \(name)", at: now)
        return id
    }

    // MARK: reading

    func instance(_ id: String) -> Instance? { instances[id] }
    var allInstances: [Instance] { launchOrder.compactMap { instances[$0] } }
    var allImages: [Image] { images.values.sorted { $0.created < $1.created } }

    func tag(_ ids: [String], _ tags: [String: String]) throws {
        for id in ids where instances[id] == nil && images[id] == nil {
            throw EC2Fault.invalid(id.hasPrefix("ami-") ? "InvalidAMIID.NotFound" : "InvalidID", "The ID '\(id)' is not valid")
        }
        for id in ids {
            if instances[id] != nil { instances[id]!.tags.merge(tags) { _, new in new } }
            if images[id] != nil { images[id]!.tags.merge(tags) { _, new in new } }
        }
    }

    /// Spot price entries, newest first: the price in effect at `start` (with the time it took
    /// effect) and every change up to `end`, for the matching pools. History reaches back 90
    /// simulated days at most, and not before the simulated market opened.
    func spotPriceHistory(types: Set<String>, zones: Set<String>, start: Date?, end: Date?, now: Date = Date())
        -> [(type: String, zone: String, price: Double, at: Date)]
    {
        let endWall = min(end ?? now, now)
        let oldest = max(clock.wallStart, endWall.addingTimeInterval(-90 * 24 * clock.hourSeconds))
        let startWall = max(oldest, min(start ?? oldest, endWall))
        let (h0, h1) = (clock.hour(startWall), clock.hour(endWall))
        var out: [(String, String, Double, Date)] = []
        for pool in market.pools {
            guard let type = market.type(of: pool) else { continue }
            let zone = String(pool.dropFirst(type.count + 1))
            guard types.isEmpty || types.contains(type), zones.isEmpty || zones.contains(zone) else { continue }
            // when the price in effect at the start took effect (looking back at most two days)
            var from = h0
            if let p = market.price(pool, hour: h0) {
                while from > max(0, h0 - 48), market.price(pool, hour: from - 1) == p { from -= 1 }
            }
            for change in market.changes(pool, hours: from..<(h1 + 1)) {
                out.append((type, zone, change.price, clock.wallTime(ofHour: change.hour)))
            }
        }
        return out.sorted { ($0.3, $0.0, $0.1) > ($1.3, $1.0, $1.1) }
    }

    // MARK: fleet bookkeeping

    func registerWorkload(_ logical: String, type: String) { workloads[logical] = type }

    /// Instances that run or will run `workload` (pending or running, not yet given notice).
    func live(_ workload: String) -> [Instance] {
        allInstances.filter { $0.workload == workload && ($0.state == .pending || $0.state == .running) }
    }

    func stopFaults() { faultsActive = false }
    var awaitingTermination: Int { instances.values.filter { $0.terminationTime != nil && $0.state != .terminated }.count }

    /// Every machine stops (the simulator is leaving).
    func shutdownAll() async {
        let all = hosts
        hosts = [:]
        await withTaskGroup(of: Void.self) { group in
            for (_, host) in all { group.addTask { await host.shutdown(grace: .seconds(6)) } }
        }
        for id in all.keys { instances[id]?.state = .terminated }
        try? eventLog?.close()
    }
}
