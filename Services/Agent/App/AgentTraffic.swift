import Foundation
import Logging
import SpotCloud
import SpotModels
import Synchronization

/// Traffic and fencing: the configured traffic sent at registration, moved to this instance on
/// promotion and to the new one on a switch; the stop hook run when this instance is fenced —
/// told by a `fence` command, or learnt from a command poll that names another primary.
extension Agent {
    var mover: TrafficMover { TrafficMover(ec2: ec2, elb: ec2.elbv2(), route53: ec2.route53(), logger: logger) }

    /// Sends the configured traffic to the server (which keeps it for promotions and switches);
    /// a refusal is a configuration error and stops the agent.
    func sendTrafficConfiguration(agent: String) async throws {
        guard let traffic = configuration.traffic else { return }
        var delay = 1.0
        while true {
            do {
                let answer = try await api.send("PUT", "/api/agents/\(agent)/traffic", json: try WireJSON.encoder().encode(traffic))
                if answer.status == 200 { return }
                if (400..<500).contains(answer.status), answer.status != 408, answer.status != 429 {
                    throw Refused(description: "traffic configuration refused: \(answer.status) \(String(decoding: answer.body.prefix(300), as: UTF8.self))")
                }
            } catch let e as Refused {
                throw e
            } catch {
                logger.warning("traffic configuration not sent, retrying", metadata: ["error": "\(error)"])
            }
            try await Task.sleep(for: .seconds(delay))
            delay = min(30, delay * 2)
        }
    }

    /// The server's traffic configuration for this agent (a switch moves it). A server that
    /// cannot answer now (5xx, no connection) is asked again for up to 30 s; a switch that
    /// cannot know where the traffic enters does not start.
    func currentTraffic(agent: String) async throws -> TrafficConfig {
        let deadline = Date().addingTimeInterval(30)
        var delay = 0.5
        var failure = ""
        while true {
            do {
                let answer = try await api.send("GET", "/api/agents/\(agent)/traffic")
                if answer.status == 200 {
                    struct View: Decodable { var traffic: TrafficConfig }
                    return try WireJSON.decoder().decode(View.self, from: answer.body).traffic
                }
                failure = "\(answer.status) \(answer.errorCode ?? "")"
                if answer.status < 500 { break }
            } catch {
                failure = "\(error)"
            }
            guard Date().addingTimeInterval(delay) < deadline else { break }
            try await Task.sleep(for: .seconds(delay))
            delay = min(5, delay * 2)
        }
        throw Refused(description: "traffic configuration not readable: \(failure)")
    }

    /// A command poll named the agent's primary. An instance that was confirmed primary and
    /// has seen another one for `fence_grace_seconds` without being told how to hand over (a
    /// `fence`, or its own switch) stops serving: it slept through its failover or missed its
    /// fence. Never two primaries taking traffic. The grace keeps an orderly handover orderly:
    /// the old primary learns of the new one the moment it is promoted, before the traffic moved.
    func observePrimary(_ primary: String?, identity: Identity, now: Date = Date()) async {
        guard let primary else { return }
        let fence = state.withLock { s -> Bool in
            guard s.replicaId == nil, !s.fenced, !s.handingOver else { return false }
            if primary == identity.instanceId {
                s.confirmedPrimary = true
                s.otherPrimarySince = nil
                return false
            }
            guard s.confirmedPrimary else { return false }
            let since = s.otherPrimarySince ?? now
            s.otherPrimarySince = since
            return now.timeIntervalSince(since) >= configuration.fenceGraceSeconds
        }
        if fence {
            logger.error("another instance is the primary and no handover came: fencing this one", metadata: ["primary": "\(primary)"])
            _ = await runStopHook(reason: "\(primary) is the primary now")
        }
    }

    /// Runs the workload's stop hook once and retires this instance (no more heartbeats).
    /// Answers what ran: `command`, `unit` or `none`, with the exit status.
    func runStopHook(reason: String) async -> (hook: String, status: Int32) {
        let first = state.withLock { s -> Bool in
            defer {
                s.fenced = true
                s.retired = true
            }
            return !s.fenced
        }
        let hook: (String, String, [String])? =
            if let command = configuration.stopCommand {
                ("command", "/bin/sh", ["-c", command])
            } else if let unit = configuration.stopUnit {
                ("unit", "/usr/bin/env", ["systemctl", "stop", unit])
            } else {
                nil
            }
        guard let hook else {
            logger.warning("fenced without a stop hook: set stop_command or stop_unit so the workload stops serving", metadata: ["reason": "\(reason)"])
            return ("none", 0)
        }
        guard first else { return (hook.0, 0) }
        let status = await runProcess(hook.1, hook.2, environment: ["SPOTGUARD_FENCE_REASON": reason])
        logger.notice("stop hook ran", metadata: ["hook": "\(hook.0)", "exit_status": "\(status)", "reason": "\(reason)"])
        return (hook.0, status)
    }

    /// `fence`: once the target groups had `drain_seconds` to finish this instance's requests
    /// (bounded by a termination notice), the stop hook runs.
    func fence(_ command: Command, identity: Identity) async throws -> Result {
        state.withLock { $0.handingOver = true }
        let drain = Double(command.payload?["drain_seconds"].flatMap(\.number) ?? 0)
        let noticeLeft = state.withLock { $0.terminationHandled }.map { $0.timeIntervalSince(api.clock.now()) - 10 }
        let wait = max(0, min(drain, noticeLeft ?? drain))
        if wait > 0 { try await Task.sleep(for: .seconds(wait)) }
        let ran = await runStopHook(reason: command.payload?["reason"]?.string ?? "replaced")
        guard ran.status == 0 else { throw Refused(description: "the stop hook (\(ran.hook)) exited with \(ran.status)") }
        return Result(status: "succeeded", instanceId: identity.instanceId, result: .object(["stop_hook": .string(ran.hook)]))
    }

    /// `promote`'s traffic: every entry point moved from the old primary to this instance.
    func takeTraffic(_ command: Command, identity: Identity) async -> JSONValue {
        guard let traffic = try? command.payload?["traffic"]?.decoded(as: TrafficConfig.self), !traffic.isEmpty else { return .object([:]) }
        let moved = await mover.move(
            traffic, to: identity.instanceId, from: command.payload?["old_instance_id"]?.string, reason: "SpotGuard promotion \(command.commandId)")
        return .object(["traffic": (try? JSONValue.encoding(moved.outcome)) ?? .null, "drain_seconds": .number(Double(moved.drainSeconds))])
    }
}
