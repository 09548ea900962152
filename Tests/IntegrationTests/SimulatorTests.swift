import Foundation
import SpotCloud
import SpotRuntime
import SpotStore
import Testing
import ToolSupport

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A `spotguard-sim run` process on the test stack: its folder, address and standard output.
struct SimProcess {
    let process: ChildProcess
    let directory: URL
    let output: String
    let base: String

    static func start(ingest: ServiceProcess, _ arguments: [String]) async throws -> SimProcess {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sim-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let output = dir.appendingPathComponent("stdout").path
        if keep { print("simulator folder (kept): \(dir.path)") }
        var env = ProcessInfo.processInfo.environment
        env["SPOTGUARD_LOG_LEVEL"] = "warning"
        let p = try ChildProcess(
            try TestStack.binDir + "/spotguard-sim",
            ["run", "--ingest", ingest.base, "--dir", dir.path, "--agent-log-level", "notice"] + arguments, environment: env, output: output)
        let address = dir.appendingPathComponent("address")
        guard await TestStack.eventually(timeout: .seconds(20), { FileManager.default.fileExists(atPath: address.path) }) else {
            p.signal(SIGKILL)
            _ = await p.exitStatus()
            throw SimNotReady()
        }
        let base = try String(contentsOf: address, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        return SimProcess(process: p, directory: dir, output: output, base: base)
    }

    struct SimNotReady: Error {}

    func json(_ method: String, _ path: String, body: [String: Any]? = nil, timeout: TimeInterval = 15) async throws -> (Int, [String: Any]) {
        var request = URLRequest(url: URL(string: base + path)!)
        request.httpMethod = method
        request.timeoutInterval = timeout
        if let body {
            request.httpBody = try JSONSerialization.data(withJSONObject: body)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as! HTTPURLResponse).statusCode, (try? JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:])
    }

    var stdout: String { (try? String(contentsOfFile: output, encoding: .utf8)) ?? "" }

    /// `SPOTGUARD_TEST_KEEP_SIM=1` keeps each simulator's folder (events, every instance's
    /// console log and spool) for whoever looks into a failure.
    static var keep: Bool { ProcessInfo.processInfo.environment["SPOTGUARD_TEST_KEEP_SIM"] == "1" }

    func stop() async -> Int32 {
        process.signal(SIGTERM)
        let status = await process.exitStatus()
        if !SimProcess.keep { try? FileManager.default.removeItem(at: directory) }
        return status
    }
}

extension IntegrationTests {
    @Suite struct SimulatorTests {
        /// The simulator's EC2 endpoint speaks AWS's wire format: AWS's own Python SDK (botocore
        /// checks every answer against EC2's service model, follows nextToken, waits with its
        /// waiters) and SpotCloud's client both run the agent's calls and meet AWS's errors.
        @Test func theEC2EndpointSpeaksAWSWireFormat() async throws {
            try await ServiceProcess.withIngest { ingest in
                let sim = try await SimProcess.start(ingest: ingest, ["--agents", "0", "--image-seconds", "1"])
                do {
                    let python = ProcessInfo.processInfo.environment["SPOTGUARD_TEST_PYTHON"] ?? "python3"
                    let out = FileManager.default.temporaryDirectory.appendingPathComponent("boto3-\(UUID()).json").path
                    defer { try? FileManager.default.removeItem(atPath: out) }
                    let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent(
                        "Peers/boto3_ec2_check.py"
                    ).path
                    let status = try await ChildProcess(python, [script, sim.base, "spotguard-sim", "spotguard-sim-secret"], output: out).exitStatus()
                    #expect(status == 0, "boto3 check exited \(status)")
                    let boto = (try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out)))) as? [String: Any] ?? [:]
                    let zones = ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d", "us-east-1e", "us-east-1f"]
                    #expect(boto["zones"] as? [String] == zones)
                    #expect(boto["price_zones"] as? [String] == zones)
                    #expect(boto["prices_positive"] as? Bool == true)
                    #expect(boto["client_token_idempotent"] as? Bool == true)
                    #expect((boto["described"] as? [String: Any])?["lifecycle"] as? String == "spot")
                    #expect(boto["image_state"] as? String == "available")
                    #expect(boto["terminating"] as? [String] == ["running", "shutting-down"])
                    #expect(boto["terminated"] as? Bool == true)
                    #expect(boto["unknown_instance"] as? [AnyHashable] == ["InvalidInstanceID.NotFound", 400])
                    // the account's network, enforced: no default VPC, no subnet in the last zone, a subnet names its zone
                    #expect(boto["subnet_zones"] as? [String] == Array(zones.dropLast()))
                    #expect(boto["subnet_vpc"] as? Bool == true && boto["address_instance"] as? Bool == true && boto["address_public_ip"] as? Bool == true)
                    #expect((boto["described"] as? [String: Any])?["profile"] as? String == "arn:aws:iam::123456789012:instance-profile/spotguard-sim-workload")
                    #expect(boto["no_subnet"] as? [AnyHashable] == ["VPCIdNotSpecified", 400])
                    #expect(boto["subnet_elsewhere"] as? [AnyHashable] == ["InvalidParameterValue", 400])
                    #expect(boto["unknown_profile"] as? [AnyHashable] == ["InvalidParameterValue", 400])
                    #expect(boto["bad_type"] as? [AnyHashable] == ["InvalidParameterValue", 400])
                    #expect(boto["wrong_secret"] as? [AnyHashable] == ["SignatureDoesNotMatch", 403])
                    #expect(boto["unknown_key"] as? [AnyHashable] == ["AuthFailure", 401])

                    // SpotCloud's client, as the agent uses it
                    let ec2 = EC2Client(
                        region: "us-east-1", endpoint: URL(string: sim.base)!,
                        credentials: StaticCredentials(AWSCredentials(accessKeyId: "spotguard-sim", secretAccessKey: "spotguard-sim-secret")))
                    let prices = try await ec2.describeSpotPriceHistory(instanceTypes: ["c5.large"], startTime: Date().addingTimeInterval(-60))
                    #expect(Set(prices.map(\.availabilityZone)) == Set(zones))
                    let vpc = try #require(try await ec2.describeInstances().first?.vpcId, "the boto3 check's instance is in the VPC")
                    let subnet = try #require(try await ec2.describeSubnets(vpcId: vpc, availabilityZone: "us-east-1d").first?.id)
                    // without the instance profile the instance's metadata service has no credentials (its agent could not call EC2)
                    var request = RunInstancesRequest(
                        imageId: "ami-0a5c3558529277641", instanceType: "c5.large", market: .onDemand, availabilityZone: "us-east-1d", subnetId: subnet)
                    let bare = try await ec2.runInstances(request)
                    request.instanceProfileArn = "arn:aws:iam::123456789012:instance-profile/spotguard-sim-workload"
                    let launched = try await ec2.runInstances(request)
                    #expect(launched.state == "pending" && launched.lifecycle == nil && launched.subnetId == subnet && launched.vpcId == vpc)
                    for id in [bare.id, launched.id] {
                        #expect(await TestStack.eventually(timeout: .seconds(10)) { (try? await ec2.describeInstances(ids: [id]).first?.state) == "running" })
                    }
                    func imds(_ id: String) async throws -> IMDSClient {
                        let endpoint = try #require(try await sim.json("GET", "/sim/instances/\(id)").1["imds"] as? String)
                        return IMDSClient(endpoint: try #require(URL(string: endpoint)))
                    }
                    #expect(try await imds(launched.id).instanceProfileCredentials().accessKeyId.hasPrefix("ASIA"))
                    await #expect(throws: (any Error).self, "no profile, no credentials") { try await imds(bare.id).instanceProfileCredentials() }
                    #expect(try await ec2.terminateInstances(ids: [launched.id, bare.id]) == [launched.id: "shutting-down", bare.id: "shutting-down"])
                    await #expect {
                        try await ec2.runInstances(RunInstancesRequest(imageId: "ami-0a5c3558529277641", instanceType: "c5.large", market: .onDemand))
                    } throws: { ($0 as? AWSError)?.code == "VPCIdNotSpecified" }
                    await #expect {
                        try await ec2.createImage(instanceId: "i-0000000000000000f", name: "nothing")
                    } throws: { ($0 as? AWSError)?.code == "InvalidInstanceID.NotFound" }
                } catch {
                    _ = await sim.stop()
                    throw error
                }
                #expect(await sim.stop() == 0, "spotguard-sim did not shut down cleanly")
            }
        }

        /// One simulated day at 4 s per hour on the whole stack: eight workloads (half with a
        /// manual replica, half auto-switching) on c5.large and m5.large, interruptions at 500 ×
        /// the Advisor rate with a 20 s notice, and one termination drill (at 250 × one run
        /// brought a single notice; at 500 × two runs brought 11 and 16). Every notice that found
        /// a ready replica failed over (as the simulator saw it and as the ledger records it); every
        /// pool kept reporting (no clean-data gap); the bill against on-demand is printed.
        @Test func aSimulatedDayWithInterruptions() async throws {
            let store = try await TestStack.store()
            let started = Date()
            // the last of the eight workloads runs in manual-replica mode; the fault model leaves it to the drill
            let drilled = "sim-08-m5.large"
            let report = FileManager.default.temporaryDirectory.appendingPathComponent("sim-report-\(UUID()).json")
            defer { try? FileManager.default.removeItem(at: report) }
            try await withReplicaStack { ingest, _ in
                try await withSEF {
                    let decisions = try await ServiceProcess.start(
                        "spotguard-decisions", portVariable: "SPOTGUARD_DECISIONS_PORT", environment: ["SPOTGUARD_DECISIONS_PASS_SECONDS": "10"])
                    try await ServiceProcess.with(decisions) { _ in
                        let sim = try await SimProcess.start(
                            ingest: ingest,
                            [
                                // a region of its own: other tests report other markets' prices for us-east-1
                                // pools, and the SEF does not take one client's price far from the others'
                                "--region", "eu-west-3",
                                "--agents", "8", "--hour-seconds", "4", "--sim-hours", "24", "--seed", "11", "--interruption-scale", "500",
                                "--notice-seconds", "20", "--rebalance-lead-seconds", "4", "--spare", drilled, "--replace-seconds", "5",
                                "--agent-price-seconds", "2",
                                "--agent-heartbeat-seconds", "3", "--agent-sync-seconds", "2", "--report", report.path,
                            ])
                        do {
                            try await drill(sim, store, workload: drilled)
                            let status = await sim.process.exitStatus()
                            print(sim.stdout)
                            #expect(status == 0, "the simulated day ended with \(status)")
                            // files carrying the fleet's token are for their owner only
                            let secrets = (FileManager.default.enumerator(atPath: sim.directory.path)?.allObjects as? [String] ?? [])
                                .filter { $0.hasSuffix("client.json") || $0.hasSuffix("agent.env") }
                            #expect(secrets.count > 1)
                            for file in secrets {
                                let mode =
                                    try FileManager.default.attributesOfItem(atPath: sim.directory.appendingPathComponent(file).path)[.posixPermissions] as? Int
                                #expect(mode == 0o600, "\(file) has mode \(String(mode ?? 0, radix: 8))")
                            }
                            try await check(report: report, events: sim.directory.appendingPathComponent("events.jsonl"), store: store, since: started)
                        } catch {
                            _ = await sim.stop()
                            throw error
                        }
                        if !SimProcess.keep { try? FileManager.default.removeItem(at: sim.directory) }
                    }
                }
            }
            await store.shutdown()
        }

        /// The demo's week behind it, here two days: the simulator sends the prices its agents
        /// would have reported (with two outages a type) and each workload's switches with past
        /// times, through the agent API. The SEF cleans and fills them, the decision engine
        /// records the switches, each workload's live instance counts from its last switch, the
        /// instances it left are closed, and savings are accounted for the past days.
        @Test func aFleetStartsWithItsHistoryBehindIt() async throws {
            let store = try await TestStack.store()
            let started = Date()
            // the replicas coordinator answers the agents' configuration
            try await withReplicaStack { ingest, _ in
                try await withSEF {
                    let engine = try await ServiceProcess.start("spotguard-decisions", portVariable: "SPOTGUARD_DECISIONS_PORT")
                    try await ServiceProcess.with(engine) { _ in
                        let sim = try await SimProcess.start(
                            ingest: ingest,
                            [
                                // a region of its own, as in the simulated day
                                "--region", "ca-central-1", "--agents", "4", "--manual-share", "0.25", "--history-days", "2", "--seed", "5",
                                "--interruption-scale", "200", "--hour-seconds", "3600",
                            ])
                        do {
                            #expect(await TestStack.eventually(timeout: .seconds(90)) { sim.stdout.contains("fleet of 4 workloads") }, "\(sim.stdout)")
                            let sent = try #require(sim.stdout.firstMatch(of: /history of ([0-9]+) switches sent/).flatMap { Int($0.1) })
                            #expect(sent > 4, "the two days moved a workload: \(sim.stdout)")
                            let client =
                                try #require(
                                    try JSONSerialization.jsonObject(with: Data(contentsOf: sim.directory.appendingPathComponent("client.json")))
                                        as? [String: Any])["client_id"] as? String
                            let recorded = "SELECT count(*) FROM switches WHERE client_id = $1::uuid AND initiated_at < $2 AND event_trigger = 'manual'"
                            #expect(
                                try await TestStack.eventually(timeout: .seconds(30)) { try await SEFQuery.count(store, recorded, [client, started]) == sent })
                            // each live instance counts from the switch that made it the primary; only they are open
                            let live = try await SEFQuery.count(
                                store,
                                """
                                SELECT count(*) FROM agents a JOIN instances i ON i.id = a.instance_id
                                 WHERE a.client_id = $1::uuid AND i.is_active AND i.installed_at < $2
                                   AND i.installed_at = (SELECT max(s.instance_ready_at) FROM switches s WHERE s.agent_id = a.id)
                                """, [client, started])
                            #expect(live == 4)
                            #expect(try await SEFQuery.count(store, "SELECT count(*) FROM instances WHERE client_id = $1::uuid AND is_active", [client]) == 4)
                            // two days of clean prices for the fleet's 12 pools, the outages filled in
                            let clean = """
                                SELECT count(*) FROM pricing_snapshots_clean
                                 WHERE pool_id LIKE '%.ca-central-1_' AND data_source = $1 AND time_bucket < $2::timestamptz - interval '1 hour'
                                """
                            #expect(
                                try await TestStack.eventually(timeout: .seconds(30)) {
                                    let measured = try await SEFQuery.count(store, clean, ["measured", started])
                                    let filled = try await SEFQuery.count(store, clean, ["interpolated", started])
                                    return measured >= 12 * 500 && filled >= 12 * 5
                                })
                            // the past days are accounted: yesterday saved for every workload
                            _ = try await decisions(["savings"])
                            let saved = try await SEFQuery.count(
                                store,
                                """
                                SELECT count(*) FROM savings_snapshots WHERE client_id = $1::uuid AND agent_id IS NOT NULL
                                   AND day = ($2::timestamptz - interval '1 day')::date AND savings > 0.5 * on_demand_cost
                                """, [client, started])
                            #expect(saved == 4)
                        } catch {
                            _ = await sim.stop()
                            throw error
                        }
                        #expect(await sim.stop() == 0)
                    }
                }
            }
            await store.shutdown()
        }

        /// Primaries lost at once, without any notice (the simulator kills the agent and terminates
        /// the instance), 20 times: five manual-replica workloads, four rounds. Each time the
        /// coordinator hears nothing for the silence period (6 s here), asks the replica's agent to
        /// look at the primary's instance, learns it is terminated and promotes the replica — within
        /// the bound of silence + 24 s, every time — and a new replica follows for the next round.
        @Test func primariesLostWithoutANoticeAreFailedOver() async throws {
            let store = try await TestStack.store()
            let silence = 6.0
            // the silence, then a reconcile pass, a long-poll wake-up, one DescribeInstances and the
            // promotion: a second or two each, but on two cores shared with the fleet's 20 processes
            // a stalled disk has held commits and broker confirms for 5 s at a time (21.7 s seen)
            let bound = (silence + 24) * 1000
            try await withReplicaStack(environment: [
                "SPOTGUARD_REPLICAS_SILENCE_SECONDS": "\(Int(silence))", "SPOTGUARD_REPLICAS_RECONCILE_SECONDS": "1",
                // a busy two-core machine can stretch a pass past a 3 s lease
                "SPOTGUARD_REPLICAS_LEASE_SECONDS": "15",
            ]) { ingest, _ in
                try await withSEF {
                    let sim = try await SimProcess.start(
                        ingest: ingest,
                        [
                            "--agents", "5", "--manual-share", "1", "--interruption-scale", "0", "--replace-seconds", "3600", "--hour-seconds", "60",
                            "--seed", "7", "--agent-heartbeat-seconds", "1", "--agent-price-seconds", "2", "--agent-sync-seconds", "1", "--boot-seconds", "1",
                            // a command reaches an agent at the bus's wake-up, or at the latest when its long-poll
                            // ends: a whole round was seen 26 s late when the wake-ups were lost under load
                            "--agent-long-poll-seconds", "5",
                        ])
                    do {
                        var clientId: String?
                        _ = await TestStack.eventually(timeout: .seconds(30)) {
                            clientId = (try? await sim.json("GET", "/sim/status"))?.1["client_id"] as? String
                            return clientId != nil
                        }
                        let client = try #require(clientId)
                        var workloads: [String] = []
                        _ = await TestStack.eventually(timeout: .seconds(60)) {
                            workloads = ((try? await sim.json("GET", "/sim/status"))?.1["workloads"] as? [[String: Any]] ?? [])
                                .compactMap { $0["logical_agent_id"] as? String }
                            return workloads.count == 5
                        }
                        try #require(workloads.count == 5, "the simulator's fleet did not come up")
                        func readyEverywhere() async -> Bool {
                            ((try? await SEFQuery.count(
                                store,
                                """
                                SELECT count(DISTINCT a.id) FROM agents a JOIN replica_instances r ON r.agent_id = a.id
                                 WHERE a.client_id = $1::uuid AND r.status = 'ready' AND a.status = 'online'
                                """, [client])) ?? 0) == workloads.count
                        }
                        var times: [Double] = []
                        for round in 1...4 {
                            #expect(
                                await TestStack.eventually(timeout: .seconds(120)) { await readyEverywhere() },
                                "round \(round): not every workload had a ready replica")
                            // (outcome, promoted_ms) of each workload's loss, all at once
                            let outcomes = try await withThrowingTaskGroup(of: (String, Double?).self) { group in
                                for w in workloads {
                                    group.addTask {
                                        let o = try await sim.json(
                                            "POST", "/sim/drills", body: ["agent": w, "kind": "loss", "notice_seconds": 60], timeout: 90
                                        ).1
                                        return ("\(w): \(o["outcome"] as? String ?? "\(o)")", o["promoted_ms"] as? Double)
                                    }
                                }
                                return try await group.reduce(into: []) { $0.append($1) }
                            }
                            for (outcome, ms) in outcomes {
                                #expect(outcome.hasSuffix(": failed_over"), "round \(round): \(outcome)")
                                if let ms { times.append(ms) }
                            }
                        }
                        #expect(times.count == 20 && times.allSatisfy { $0 < bound }, "promoted after \(times.map { Int($0) }) ms")
                        let sorted = times.sorted()
                        print(
                            "[loss] \(times.count) primaries lost without a notice: promoted after p50 \(Int(sorted[sorted.count / 2])) ms, max \(Int(sorted.last ?? 0)) ms (bound \(Int(bound)) ms)"
                        )
                        // one primary per agent, and it is the promoted replica's instance
                        let lost = try await SEFQuery.count(
                            store, "SELECT count(*) FROM spot_interruption_events WHERE client_id = $1::uuid AND signal_type = 'instance-lost' AND success",
                            [client])
                        #expect(lost == 20)
                        _ = await sim.stop()
                    } catch {
                        _ = await sim.stop()
                        throw error
                    }
                    if !SimProcess.keep { try? FileManager.default.removeItem(at: sim.directory) }
                }
            }
            await store.shutdown()
        }

        /// A termination drill on the manual-replica workload the fault model spares (`--spare`),
        /// once its replica is ready: the replica is promoted and the workload resumes there from
        /// the state it had at the notice.
        func drill(_ sim: SimProcess, _ store: PostgresStore, workload: String) async throws {
            // the control API answers before the fleet's client exists (client_id null until then)
            var clientId: String?
            _ = await TestStack.eventually(timeout: .seconds(30)) {
                clientId = (try? await sim.json("GET", "/sim/status"))?.1["client_id"] as? String
                return clientId != nil
            }
            let client = try #require(clientId, "the simulator created its fleet's client")
            // the fleet needs prices before manual mode, then a launch, a boot and a sync: ~20 s
            // alone, longer on a busy machine; the simulated day lasts 96 s
            let ready = await TestStack.eventually(timeout: .seconds(90)) {
                (try? await SEFQuery.count(
                    store,
                    """
                    SELECT count(*) FROM agents a JOIN replica_instances r ON r.agent_id = a.id
                     WHERE a.client_id = $1::uuid AND a.logical_agent_id = $2 AND r.status = 'ready' AND r.is_active
                    """, [client, workload])) ?? 0 > 0
            }
            if !ready {
                print("no replica of \(workload) ready within 90 s; the simulator's last events:")
                print((try? String(contentsOf: sim.directory.appendingPathComponent("events.jsonl"), encoding: .utf8))?.suffix(3000) ?? "none")
            }
            try #require(ready, "the spared workload's replica became ready")
            let (code, outcome) = try await sim.json(
                "POST", "/sim/drills", body: ["agent": workload, "kind": "termination", "notice_seconds": 20], timeout: 60)
            print("drill on \(workload): \(outcome)")
            #expect(code == 200)
            if outcome["outcome"] as? String != "failed_over" || (outcome["promoted_ms"] as? Double ?? 0) > 20000, let id = outcome["instance_id"] as? String {
                // what the drilled instance's agent did, for whoever reads the failure
                print((try? String(contentsOf: sim.directory.appendingPathComponent("instances/\(id)/console.log"), encoding: .utf8)) ?? "no console log")
            }
            #expect(outcome["outcome"] as? String == "failed_over")
            #expect(outcome["ready_replica_at_notice"] as? Bool == true)
            #expect((outcome["promoted_ms"] as? Double).map { $0 > 0 && $0 < 20000 } == true, "promoted within the notice")
            let atNotice = try #require(outcome["primary_progress_at_notice"] as? Int)
            #expect((outcome["replica_progress"] as? Int).map { $0 >= atNotice } == true, "the replica resumed from the primary's state")
            let (bad, refusal) = try await sim.json("POST", "/sim/drills", body: ["agent": workload, "kind": "flood"])
            #expect(bad == 400 && refusal["error"] as? String == "invalid_kind")
        }

        func check(report file: URL, events eventFile: URL, store: PostgresStore, since started: Date) async throws {
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            let report = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any])
            let fleet = try #require(report["fleet"] as? [String: Any])
            let client = try #require(fleet["client_id"] as? String)
            let notices = (fleet["notices"] as? [[String: Any]]) ?? []
            let ended = try #require((report["wall_end"] as? String).flatMap { try? Date($0, strategy: .iso8601) })

            // interruptions happened, and each one that found a ready replica failed over
            #expect(notices.filter { $0["drill"] as? Bool == false }.count >= 2, "the day brought interruptions: \(notices.count)")
            #expect(
                notices.contains { $0["ready_replica_at_notice"] as? Bool == true && $0["outcome"] as? String == "failed_over" },
                "no notice (drill or the day's) failed over to a ready replica")
            for n in notices where n["ready_replica_at_notice"] as? Bool == true {
                #expect(n["outcome"] as? String == "failed_over", "a notice with a ready replica did not fail over: \(n)")
            }
            let promotedInLedger = try await SEFQuery.count(
                store,
                """
                SELECT count(*) FROM spot_interruption_events e JOIN agents a ON a.id = e.agent_id
                 WHERE a.client_id = $1::uuid AND e.signal_type = 'termination-notice' AND e.response_action = 'replica_promoted' AND e.failover_completed
                """, [client])
            let promotedWithoutFailover = try await SEFQuery.count(
                store,
                """
                SELECT count(*) FROM spot_interruption_events e JOIN agents a ON a.id = e.agent_id
                 WHERE a.client_id = $1::uuid AND e.response_action = 'replica_promoted' AND NOT e.failover_completed
                """, [client])
            #expect(promotedWithoutFailover == 0)
            // the ledger records the failovers of the termination path: every notice that found a
            // ready replica. A notice without one that the simulator still saw fail over (a
            // promotion it attributed to the notice from elsewhere; seen twice so far, not yet
            // explained) is printed for whoever looks into it.
            let failedOver = notices.filter { $0["outcome"] as? String == "failed_over" }
            #expect(promotedInLedger >= failedOver.filter { $0["ready_replica_at_notice"] as? Bool == true }.count)
            let unexplained = failedOver.filter { $0["ready_replica_at_notice"] as? Bool != true }
            if !unexplained.isEmpty { print("failed over without a ready replica at the notice: \(unexplained)") }

            // every switch an agent made (an image named for its command, an instance launched
            // from it and running half a minute before the end) is in the switch ledger
            let events = try String(contentsOf: eventFile, encoding: .utf8).split(separator: "\n")
                .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: String] }
            var commandOfImage: [String: String] = [:]
            var commandOfInstance: [String: String] = [:]
            var switched: Set<String> = []
            for e in events {
                let words = (e["detail"] ?? "").split(separator: " ").map(String.init)
                switch e["kind"] {
                case "image" where words.count == 2 && words[1].hasPrefix("spotguard-switch-"):
                    commandOfImage[words[0]] = String(words[1].dropFirst("spotguard-switch-".count))
                case "launch" where !words.contains("(replica)"):
                    if let image = words.last, let command = commandOfImage[image], let id = e["instance_id"] { commandOfInstance[id] = command }
                case "running":
                    if let id = e["instance_id"], let command = commandOfInstance[id], let at = e["at"].flatMap({ try? Date($0, strategy: .iso8601) }),
                        at < ended.addingTimeInterval(-30)
                    {
                        switched.insert(command)
                    }
                default: break
                }
            }
            for command in switched.sorted() {
                let recorded = try await SEFQuery.count(store, "SELECT count(*) FROM switches WHERE command_id = $1::uuid", [command])
                #expect(recorded == 1, "the switch of command \(command) is not in the ledger")
            }
            print("switches made by agents during the day: \(switched.count)")

            // no clean-data gap: every pool of the fleet's types was reported at least every 20 s
            // (agents report every 2 s) and has a measured clean price in every 5-minute bucket
            let pools = ((report["pools"] as? [String]) ?? []).filter { $0.hasPrefix("c5.large.") || $0.hasPrefix("m5.large.") }
            #expect(pools.count == 12)
            let from = started.addingTimeInterval(60)
            let rows = try await store.withConnection { conn in
                try conn.query(
                    """
                    SELECT pool_id, coalesce(max(gap), 0) FROM (
                        SELECT pool_id, extract(epoch FROM received_at - lag(received_at) OVER (PARTITION BY pool_id ORDER BY received_at)) AS gap
                          FROM pricing_submissions_raw WHERE client_id = $1::uuid AND received_at BETWEEN $2 AND $3) g
                     GROUP BY pool_id
                    """, [client, from, ended])
            }
            var widest: [String: Double] = [:]
            for row in rows { widest[try row.decode(String.self, at: 0)] = try row.decode(Double.self, at: 1) }
            for pool in pools {
                let gap = try #require(widest[pool], "\(pool) was never reported")
                #expect(gap <= 20, "\(pool) went \(gap) s without a price report")
            }
            // every 5-minute bucket the day touched (the SEF measures a bucket from its first report)
            let firstBucket = (from.timeIntervalSince1970 / 300).rounded(.down) * 300
            let lastBucket = (ended.timeIntervalSince1970 / 300).rounded(.down) * 300
            do {
                let expected = Int((lastBucket - firstBucket) / 300) + 1
                for pool in pools {
                    let measured = try await SEFQuery.count(
                        store,
                        """
                        SELECT count(*) FROM pricing_snapshots_clean WHERE pool_id = $1 AND data_source = 'measured'
                           AND time_bucket BETWEEN $2 AND $3
                        """, [pool, Date(timeIntervalSince1970: firstBucket), Date(timeIntervalSince1970: lastBucket)])
                    #expect(measured == expected, "\(pool): \(measured) of \(expected) buckets measured")
                }
            }

            // the bill
            let bill = try #require(report["bill"] as? [String: Any])
            let savings = try #require(report["savings_percent"] as? Double)
            print(
                String(
                    format:
                        "simulated day: spot $%.4f + on-demand $%.4f (replicas $%.4f) against $%.4f all on-demand: %.1f %% saved; %d notices, %d failed over",
                    bill["spot"] as? Double ?? 0, bill["on_demand"] as? Double ?? 0, bill["replicas"] as? Double ?? 0, bill["baseline"] as? Double ?? 0,
                    savings,
                    notices.count, notices.filter { $0["outcome"] as? String == "failed_over" }.count))
            #expect(savings > 20, "a fleet on spot in a 55–75 % discount market saves")
        }
    }
}
