import Foundation
import IMDSMock
import Logging
import SimulatorCore
import SpotMarket

extension Cloud {
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

    func createImage(instanceId: String, name: String, tags: [String: String] = [:], now: Date = Date()) throws -> String {
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
        images[id] = Image(
            id: id, name: name, sourceInstance: instanceId, created: now, availableAt: now.addingTimeInterval(configuration.imageSeconds), disk: disk,
            tags: tags)
        record("image", instance, "\(id) \(name)", at: now)
        return id
    }

    /// DeregisterImage: gone from DescribeImages and from launches; its disk copy is removed
    /// (instances launched from it have their own).
    func deregisterImage(_ id: String) throws {
        guard let image = images[id], image.sourceInstance != nil else {
            throw EC2Fault.invalid("InvalidAMIID.NotFound", "The image id '[\(id)]' does not exist")
        }
        images[id] = nil
        try? FileManager.default.removeItem(at: image.disk)
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
    func spotPriceHistory(
        types: Set<String>, zones: Set<String>, start: Date?, end: Date?, now: Date = Date()
    )
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
