import Foundation
import Logging
import SpotCloud
import SpotModels

/// Moves a workload's traffic to a new primary: Elastic IPs re-associated, the new instance
/// registered in each target group before the old one is deregistered, A records pointed at
/// the new address. Every step is idempotent (AWS accepts each call again) and is retried with
/// backoff until `deadline`, so a new instance EC2 does not yet call running, or a throttled
/// call, delays a step instead of failing it. Steps run one after the other in that order:
/// the new primary is in every entry point before the old one leaves any.
struct TrafficMover {
    let ec2: EC2Client
    let elb: ELBv2Client
    let route53: Route53Client
    let logger: Logger
    var deadline: Duration = .seconds(30)

    struct Moved {
        var outcome: TrafficOutcome
        /// The longest deregistration delay of the groups the old instance left: how long it
        /// may still finish requests before it is stopped.
        var drainSeconds: Int
    }

    func move(_ config: TrafficConfig, to new: String, from old: String?, reason: String) async -> Moved {
        let started = ContinuousClock.now
        let until = started + deadline
        var steps: [TrafficOutcome.Step] = []
        var drain = 0
        for eip in config.elasticIps {
            steps.append(
                await step("elastic_ip", eip.allocationId, until) {
                    _ = try await ec2.associateAddress(allocationId: eip.allocationId, instanceId: new)
                    return nil
                })
        }
        for group in config.targetGroups {
            steps.append(
                await step("target_register", group.arn, until) {
                    try await elb.registerTarget(group: group.arn, instanceId: new, port: group.port)
                    return nil
                })
        }
        if !config.dnsRecords.isEmpty {
            var addresses: (String?, String?) = (nil, nil)
            for record in config.dnsRecords {
                steps.append(
                    await step("dns_record", record.name, until) {
                        if addresses.0 == nil && addresses.1 == nil {
                            let instance = try await ec2.describeInstances(ids: [new]).first { $0.id == new }
                            addresses = (instance?.privateIp, instance?.publicIp)
                        }
                        guard let address = record.address == "public" ? addresses.1 : addresses.0 else {
                            throw AWSError.malformed("\(new) has no \(record.address) address yet")
                        }
                        _ = try await route53.upsertA(zoneId: record.zoneId, name: record.name, ttl: record.ttl, address: address, comment: reason)
                        return address
                    })
            }
        }
        if let old, old != new {
            for group in config.targetGroups {
                steps.append(
                    await step("target_deregister", group.arn, until) {
                        try await elb.deregisterTarget(group: group.arn, instanceId: old, port: group.port)
                        return nil
                    })
                drain = max(drain, (try? await elb.deregistrationDelay(group: group.arn)) ?? 300)
            }
        }
        let outcome = TrafficOutcome(steps: steps, movedMs: Int((ContinuousClock.now - started) / .milliseconds(1)))
        logger.notice(
            "traffic moved", metadata: ["to": "\(new)", "from": "\(old ?? "-")", "ms": "\(outcome.movedMs)", "all_done": "\(outcome.moved)"])
        return Moved(outcome: outcome, drainSeconds: drain)
    }

    /// One step, tried until it succeeds, AWS refuses it for good, or the deadline passes.
    func step(_ kind: String, _ target: String, _ until: ContinuousClock.Instant, _ body: () async throws -> String?) async -> TrafficOutcome.Step {
        let started = ContinuousClock.now
        var attempts = 0
        var delay = Duration.milliseconds(200)
        while true {
            attempts += 1
            do {
                let detail = try await body()
                return .init(kind: kind, target: target, status: "done", attempts: attempts, ms: Self.ms(since: started), detail: detail)
            } catch {
                let retryable = Self.retryable(error)
                guard retryable, ContinuousClock.now + delay < until, !Task.isCancelled else {
                    logger.error("traffic step failed", metadata: ["kind": "\(kind)", "target": "\(target)", "error": "\(error)"])
                    return .init(kind: kind, target: target, status: "failed", attempts: attempts, ms: Self.ms(since: started), detail: "\(error)")
                }
                try? await Task.sleep(for: delay)
                delay = min(.seconds(2), delay * 2)
            }
        }
    }

    static func ms(since start: ContinuousClock.Instant) -> Int { Int((ContinuousClock.now - start) / .milliseconds(1)) }

    /// Refusals that pass with time: an instance EC2 does not see running yet, an address not
    /// yet assigned. Anything else AWS refuses (a wrong id, no permission) is final.
    static func retryable(_ error: any Error) -> Bool {
        guard let aws = error as? AWSError else { return true }
        switch aws {
        case .refused(_, let code, _, _):
            return ["IncorrectInstanceState", "InvalidInstanceID.NotFound", "InvalidInstanceID", "InvalidTarget", "IncorrectState"].contains(code)
        case .malformed: return true
        default: return true
        }
    }
}
