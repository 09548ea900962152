import Foundation
import Logging
import SpotCloud
import SpotModels
import Synchronization

extension Agent {
    struct Command: Decodable {
        var commandId: UUID
        var commandType: String
        var payload: JSONValue?
        var targetInstanceId: String?
        var targetMode: String?
        var targetPoolId: String?
        var terminateWaitSeconds: Int?
        var replicaId: UUID?
        /// The command's lease; the agent renews it while it works, so a long switch is not
        /// handed out a second time.
        var leaseSeconds: Int?
        /// The agent's primary epoch when it was issued.
        var primaryEpoch: Int64?
    }

    func commandLoop() async {
        var delay = 1.0
        while !Task.isCancelled {
            do {
                let (agent, identity) = try ids()
                let answer = try await api.send(
                    "GET", "/api/agents/\(agent)/pending-commands?instance_id=\(identity.instanceId)&wait=\(configuration.longPollSeconds)")
                guard answer.status == 200 else { throw Refused(description: "pending-commands answered \(answer.status)") }
                struct Batch: Decodable {
                    var commands: [Command]
                    var primaryInstanceId: String?
                    var primaryEpoch: Int64?
                }
                let batch = try WireJSON.decoder().decode(Batch.self, from: answer.body)
                if let epoch = batch.primaryEpoch { state.withLock { $0.knownEpoch = max($0.knownEpoch, epoch) } }
                await observePrimary(batch.primaryInstanceId, identity: identity)
                for command in batch.commands {
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
        var result: JSONValue?
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
            // a switch or promotion another promotion overtook would make a second primary
            let known = state.withLock { $0.knownEpoch }
            if CommandKind(rawValue: command.commandType)?.actsAsPrimary == true {
                if let epoch = command.primaryEpoch, epoch < known {
                    throw Refused(description: "superseded: issued at primary epoch \(epoch), another instance became the primary at \(known)")
                }
                // delivered before a promotion this agent slept through (its epoch was current
                // then): the server, asked to renew the lease, cancels it and answers 409. A
                // server out of reach does not stop a promotion it just sent.
                if let answer = try? await api.send("POST", "/api/agents/\(agent)/commands/\(command.commandId)/lease"), answer.status == 409 {
                    throw Refused(description: "superseded: the server no longer holds this command for this agent")
                }
            }
            switch command.commandType {
            case "switch":
                do {
                    try await performSwitch(command, agent: agent, identity: identity)
                } catch {
                    state.withLock { $0.handingOver = false }  // still the primary
                    throw error
                }
                return  // the switch report completes the command
            case "terminate":
                let target = command.payload?["instance_id"]?.string ?? command.targetInstanceId ?? identity.instanceId
                // only an instance of this agent's workload: the server cannot make an agent end an unrelated one
                let tagged = try await ec2.describeInstances(ids: [target]).first { $0.id == target }?.tags["spotguard:agent"]
                guard tagged == agent else {
                    throw Refused(
                        description: "\(target) is not tagged spotguard:agent=\(agent) (\(tagged.map { "tagged \($0)" } ?? "untagged")); not terminating it")
                }
                let wait = command.terminateWaitSeconds ?? 0
                if wait > 0 { try await Task.sleep(for: .seconds(wait)) }
                _ = try await ec2.terminateInstances(ids: [target])
                outcome = Result(status: "succeeded", instanceId: target)
            case "snapshot":
                let image = try await ec2.createImage(
                    instanceId: identity.instanceId, name: "spotguard-\(identity.instanceId)-\(Int(Date().timeIntervalSince1970))",
                    tags: ["spotguard:agent": agent, "spotguard:purpose": "recovery"])
                await pruneImages(agent: agent, inUse: [image])
                outcome = Result(status: "succeeded", result: .object(["image_id": .string(image)]))
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
                } catch let error as AWSError where error.code == "InvalidInstanceID.NotFound" {
                    state = "not-found"
                }
                outcome = Result(status: "succeeded", instanceId: primary, result: .object(["primary_state": .string(state)]))
            case "promote":
                // take the primary's newest state before taking over from it
                if state.withLock({ $0.replicaId }) != nil { try await restoreNewestState() }
                state.withLock {
                    $0.replicaId = nil
                    $0.confirmedPrimary = true
                }
                // the new primary takes the traffic; the server then fences the old one
                outcome = Result(status: "succeeded", instanceId: identity.instanceId, result: await takeTraffic(command, identity: identity))
            case "fence":
                outcome = try await fence(command, identity: identity)
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
        // an equivalent of this instance: its profile, network, volumes and settings (LaunchEquivalence)
        return try await ec2.launchEquivalent(
            of: identity.instanceId,
            .init(
                imageId: identity.amiId ?? "", instanceType: type, market: .spot, availabilityZone: az ?? identity.availabilityZone,
                userData: try await userData(agent: agent, replica: replica),
                tags: ["spotguard:agent": agent, "spotguard:replica": replica.uuidString.lowercased()],
                clientToken: "replica-\(replica.uuidString.lowercased())"))
    }

    /// The user data that starts an agent on a new instance (as a replica when `replica` is
    /// set): the same server, agent and logical id, so a switched or recovered instance is the
    /// same agent with its modes and history, and a single-use enrollment secret for it (no
    /// token); as a supervised service (`UserData`).
    func userData(agent: String, replica: UUID?) async throws -> String {
        var settings = [
            ("SPOTGUARD_AGENT_SERVER", configuration.server.absoluteString), try await launchCredential(agent: agent),
            ("SPOTGUARD_AGENT_AGENT_ID", agent),
        ]
        if let logical = state.withLock({ $0.logicalAgentId }) ?? configuration.logicalAgentId {
            settings.append(("SPOTGUARD_AGENT_LOGICAL_AGENT_ID", logical))
        }
        if let replica { settings.append(("SPOTGUARD_AGENT_REPLICA_ID", replica.uuidString.lowercased())) }
        // the workload's settings that hold on any instance travel with it (a configuration file
        // travels in the image; the on-demand price is the new type's, not this one's)
        for (key, value) in [
            ("STOP_COMMAND", configuration.stopCommand), ("STOP_UNIT", configuration.stopUnit),
            ("ALTERNATIVE_TYPES", configuration.alternativeTypes.isEmpty ? nil : configuration.alternativeTypes.joined(separator: ",")),
            ("STATE_PATH", configuration.statePath), ("STATE_HOOK", configuration.stateHook),
            ("STATE_SECONDS", configuration.statePath == nil ? nil : String(configuration.stateSeconds)),
            ("STATE_STORE", configuration.statePath == nil ? nil : configuration.stateStore),
        ] {
            if let value { settings.append(("SPOTGUARD_AGENT_\(key)", value)) }
        }
        return UserData.script(settings)
    }

    /// seed 004's switch: an image of this instance, an instance from it in the target pool and
    /// mode, running, then the switch report (which completes the command); the old instance is
    /// terminated after the command's wait when auto-terminate is on.
    func performSwitch(_ command: Command, agent: String, identity: Identity) async throws {
        let initiated = api.clock.now()
        // each later step is the start plus the time since by this process's steady clock: the
        // server's clock offset, learnt again from any answer meanwhile, must not put a step
        // before the start (the server refuses such a report)
        let started = ContinuousClock.now
        func step() -> Date {
            let elapsed = (ContinuousClock.now - started).components
            return initiated.addingTimeInterval(Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18)
        }
        let mode: MarketType = command.targetMode == "ondemand" ? .onDemand : .spot
        let targetPool = command.targetPoolId
        let type = targetPool.map { String($0.split(separator: ".").dropLast().joined(separator: ".")) } ?? identity.instanceType
        let az = targetPool.map { String($0.split(separator: ".").last ?? "") } ?? identity.availabilityZone
        // where the traffic enters, known before anything is launched: a switch that could not
        // move it must not start
        let traffic = try await currentTraffic(agent: agent)
        state.withLock { $0.handingOver = true }
        let (image, imageReady) = try await makeImage(
            of: identity, agent: agent, name: "spotguard-switch-\(command.commandId.uuidString.lowercased())", purpose: "switch")
        var launched = try await ec2.launchEquivalent(
            of: identity.instanceId,
            .init(
                imageId: image, instanceType: type, market: mode, availabilityZone: az, userData: try await userData(agent: agent, replica: nil),
                tags: ["spotguard:agent": agent, "spotguard:switch": command.commandId.uuidString.lowercased()],
                clientToken: "switch-\(command.commandId.uuidString.lowercased())"))
        let launchedAt = step()
        for _ in 0..<120 where launched.state != "running" {
            try await Task.sleep(for: .seconds(2))
            launched = try await ec2.describeInstances(ids: [launched.id]).first ?? launched
        }
        guard launched.state == "running" else { throw Refused(description: "instance \(launched.id) not running") }
        let ready = step()
        // the new instance takes the traffic before this one stops serving
        let moved =
            traffic.isEmpty
            ? nil
            : await mover.move(traffic, to: launched.id, from: identity.instanceId, reason: "SpotGuard switch \(command.commandId.uuidString.lowercased())")
        // auto-terminate: the old instance goes after the command's wait, and only once the switch
        // report has left its spool (the spool is on this instance's disk: terminating first
        // would lose the report, and with it the switch from the ledger)
        let wait = command.terminateWaitSeconds
        let terminatedAt = wait == 0 ? step() : nil
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
            var traffic: TrafficOutcome?
        }
        let report = Report(
            reportId: UUID(), commandId: command.commandId,
            oldInstance: Side(
                instanceId: identity.instanceId, instanceType: identity.instanceType, az: identity.availabilityZone, mode: identity.mode,
                poolId: identity.mode == "spot" ? identity.poolId : nil, amiId: identity.amiId),
            newInstance: Side(
                instanceId: launched.id, instanceType: type, az: az, mode: mode == .spot ? "spot" : "ondemand", poolId: mode == .spot ? "\(type).\(az)" : nil,
                amiId: image),
            timing: Timing(
                initiatedAt: initiated, amiCreatedAt: max(imageReady, initiated), instanceLaunchedAt: launchedAt, instanceReadyAt: ready,
                oldTerminatedAt: terminatedAt),
            // this type's on-demand price; the server knows another type's
            pricing: Pricing(onDemand: type == identity.instanceType ? configuration.onDemandPrice : nil), traffic: moved?.outcome)
        state.withLock { $0.retired = true }
        try await spool.submit("POST", "/api/agents/\(agent)/switch-report", report)
        logger.notice("switched", metadata: ["new_instance": "\(launched.id)", "pool": "\(type).\(az)", "mode": "\(mode.rawValue)"])
        // the new instance runs on its own volumes: the image is only a restore point now
        await pruneImages(agent: agent)
        if let moved, !moved.outcome.moved {
            // half-moved traffic: this instance goes on serving what still reaches it
            logger.error("the traffic did not fully move: this instance is neither fenced nor terminated", metadata: ["new_instance": "\(launched.id)"])
            return
        }
        if let moved {
            let drain = moved.drainSeconds
            Task {
                try? await Task.sleep(for: .seconds(drain))
                _ = await self.runStopHook(reason: "switched to \(launched.id)")
            }
        }
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
