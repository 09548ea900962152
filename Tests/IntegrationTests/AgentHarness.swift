import Foundation
import Glibc
import IMDSMock
import SpotCloud
import SpotRuntime
import SpotStore
import Testing
import ToolSupport

/// A `spotguard-agent` process on a "machine" made of moto (EC2), the IMDS mock (its metadata)
/// and the local stack.
struct AgentHarness {
    let ec2: EC2Client
    let moto: URL

    init() throws {
        moto = try #require(ProcessInfo.processInfo.environment["SPOTGUARD_TEST_EC2_URL"].flatMap { URL(string: $0) }, "the test command starts moto")
        ec2 = EC2Client(region: "us-east-1", endpoint: moto, credentials: StaticCredentials(AWSCredentials(accessKeyId: "testing", secretAccessKey: "testing")))
    }

    /// A spot instance in moto and the metadata service that says it is that instance.
    func instance(type: String = "m5.large", zone: String = "us-east-1a") async throws -> IMDSMock {
        let launched = try await ec2.runInstances(RunInstancesRequest(imageId: "ami-12c6146b", instanceType: type, market: .spot, availabilityZone: zone))
        return IMDSMock(identity: .init(instanceId: launched.id, instanceType: type, availabilityZone: zone))
    }

    /// `Peers/<script> COMMAND ARGUMENTS…` (boto3 against moto; `launch_equivalence.py` unless
    /// named): its JSON answer.
    func peer(_ arguments: [String], script: String = "launch_equivalence.py") async throws -> [String: Any] {
        let python = ProcessInfo.processInfo.environment["SPOTGUARD_TEST_PYTHON"] ?? "python3"
        let path = TestStack.repoRoot.appendingPathComponent("Tests/Peers/\(script)").path
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("peer-\(UUID()).json").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        _ = try await ChildProcess(python, [path, moto.absoluteString] + arguments, output: out).exitStatus()
        return (try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out)))) as? [String: Any] ?? [:]
    }

    /// A source as a real fleet has it (`launch_equivalence.py setup`: a non-default VPC with
    /// subnets in us-east-1a and b, two security groups, an instance profile, a key, encrypted
    /// gp3 and gp2 volumes, IMDSv2, user tags; from a launch template when `template`), a spot
    /// m5.large in us-east-1a, and the metadata service that says it is that instance.
    func fleetSource(template: Bool = false) async throws -> IMDSMock {
        let setup = try await peer(["setup"] + (template ? ["template"] : []))
        let source = try #require(setup["source"] as? String, "setup: \(setup)")
        return IMDSMock(identity: .init(instanceId: source, instanceType: "m5.large", availabilityZone: "us-east-1a"))
    }

    /// What boto3 says of `instance`'s settings now, as `differences` takes a source (an
    /// instance that is terminated has lost its profile and volumes: describe it before).
    func described(_ instance: String) async throws -> String {
        let answer = try #require(try await peer(["describe", instance])["described"], "describe \(instance)")
        return String(decoding: try JSONSerialization.data(withJSONObject: answer), as: UTF8.self)
    }

    /// boto3's comparison of `copy` with `source` (an instance id or what `described` said of
    /// it): VPC, subnet of `zone`, groups, profile, key, volumes, metadata options, monitoring,
    /// user tags and the template's tags. What differs.
    func differences(_ source: String, _ copy: String, zone: String) async throws -> [String] {
        let checked = try await peer(["check", source, copy, zone])
        let found = try #require(checked["differences"] as? [[String: Any]], "check: \(checked)")
        return found.map { "\($0)" }
    }

    /// A workload's entry points in moto, made by `Peers/traffic.py setup` to point at one primary.
    struct EntryPoints {
        var allocation, group, zone, zoneName, record: String
        /// The agent's traffic configuration naming them (`SPOTGUARD_AGENT_TRAFFIC`).
        var configuration: String {
            """
            {"elastic_ips": [{"allocation_id": "\(allocation)"}], "target_groups": [{"arn": "\(group)", "port": 8080}],
             "dns_records": [{"zone_id": "\(zone)", "zone_name": "\(zoneName)", "name": "\(record)", "ttl": 30}]}
            """
        }
    }

    /// An Elastic IP, a target group (port 8080, no deregistration delay) and a DNS record, all
    /// pointing at `primary`.
    func entryPoints(for primary: String) async throws -> EntryPoints {
        let made = try await peer(["setup", primary], script: "traffic.py")
        func field(_ name: String) throws -> String { try #require(made[name] as? String, "traffic.py setup: \(made)") }
        return EntryPoints(
            allocation: try field("allocation_id"), group: try field("target_group_arn"), zone: try field("zone_id"), zoneName: try field("zone_name"),
            record: try field("record_name"))
    }

    /// Where `entry`'s points send traffic now, as boto3 sees it (`traffic.py check`):
    /// `eip_instance`, `targets`, `record_values`, `private_ips`.
    func traffic(_ entry: EntryPoints) async throws -> [String: Any] {
        try await peer(["check", entry.allocation, entry.group, entry.zone, entry.record], script: "traffic.py")
    }

    /// The user data `instance` was launched with, read back through boto3.
    func userData(_ instance: String) async throws -> String {
        try await peer(["userdata", instance])["user_data"] as? String ?? ""
    }

    /// Runs the agent against `ingest` and `imds` until `body` returns, then SIGTERM (exit 0 expected).
    func withAgent(
        ingest: ServiceProcess, token: String, imds: URL, logical: String, environment: [String: String] = [:], _ body: () async throws -> Void
    ) async throws {
        try await withAgentProcess(ingest: ingest, token: token, imds: imds, logical: logical, environment: environment) { _ in try await body() }
    }

    /// `withAgent`, with the agent's process in hand.
    /// With `expectedExit` other than 0, the agent is expected to stop by itself with that status.
    func withAgentProcess(
        ingest: ServiceProcess, token: String, imds: URL, logical: String, environment: [String: String] = [:], expectedExit: Int32 = 0,
        _ body: (ChildProcess) async throws -> Void
    ) async throws {
        let spool = FileManager.default.temporaryDirectory.appendingPathComponent("agent-spool-\(UUID())").path
        let tokenFile = spool + ".token"
        defer {
            try? FileManager.default.removeItem(atPath: spool)
            try? FileManager.default.removeItem(atPath: tokenFile)
        }
        var env = ProcessInfo.processInfo.environment
        env.merge([
            "SPOTGUARD_AGENT_SERVER": ingest.base, "SPOTGUARD_AGENT_TOKEN": token, "SPOTGUARD_AGENT_LOGICAL_AGENT_ID": logical,
            "SPOTGUARD_AGENT_SPOOL_DIR": spool, "SPOTGUARD_AGENT_TOKEN_FILE": tokenFile, "SPOTGUARD_AGENT_HEARTBEAT_SECONDS": "0.5",
            "SPOTGUARD_AGENT_PRICE_SECONDS": "0.5",
            "SPOTGUARD_AGENT_WATCH_SECONDS": "0.2", "SPOTGUARD_AGENT_LONG_POLL_SECONDS": "1", "SPOTGUARD_AGENT_ON_DEMAND_PRICE": "0.096",
            "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_EC2": moto.absoluteString, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.absoluteString, "SPOTGUARD_LOG_LEVEL": "warning",
        ]) { _, new in new }
        env.merge(environment) { _, new in new }
        let agent = try ChildProcess(try TestStack.binDir + "/spotguard-agent", ["run"], environment: env)
        do {
            try await body(agent)
        } catch {
            agent.signal(SIGTERM)
            _ = await agent.exitStatus()
            throw error
        }
        guard expectedExit == 0 else {
            let status = await withTaskGroup(of: Int32?.self) { group in
                group.addTask { await agent.exitStatus() }
                group.addTask {
                    try? await Task.sleep(for: .seconds(20))
                    return nil
                }
                let first = await group.next() ?? nil
                if first == nil { agent.signal(SIGKILL) }
                group.cancelAll()
                for await _ in group {}
                return first
            }
            #expect(status == expectedExit, "the agent did not stop by itself with status \(expectedExit): \(status.map(String.init) ?? "still running")")
            return
        }
        agent.signal(SIGTERM)
        #expect(await agent.exitStatus() == 0, "the agent did not shut down cleanly on SIGTERM")
    }

    /// The agent registered as `logical`, once it has and the SEF has a recent clean price for
    /// m5.large in us-east-1 (a replica or switch target is placed only in such a pool).
    static func registeredWithPrices(_ logical: String, _ store: PostgresStore) async throws -> String {
        #expect(
            try await TestStack.eventually(timeout: .seconds(30)) {
                try await SEFQuery.count(
                    store,
                    """
                    SELECT count(*) FROM agents WHERE logical_agent_id = $1
                       AND EXISTS (SELECT 1 FROM pricing_snapshots_clean c WHERE c.pool_id LIKE 'm5.large.us-east-1%' AND c.time_bucket > now() - interval '1 hour')
                    """, [logical]) == 1
            }, "\(logical) registered and m5.large has clean prices")
        return try #require(try await ReplicaQuery.one(store, "SELECT id::text FROM agents WHERE logical_agent_id = $1", [logical]).first ?? nil)
    }

    /// A rebalance recommendation on `imds`'s instance: true once `agent`'s replica was launched.
    static func rebalanceLaunchesAReplica(_ imds: IMDSMock, agent: String, _ store: PostgresStore) async throws -> Bool {
        imds.armRebalance()
        return try await TestStack.eventually(timeout: .seconds(20)) {
            try await SEFQuery.count(store, "SELECT count(*) FROM replica_instances WHERE agent_id = $1::uuid AND instance_id IS NOT NULL", [agent]) == 1
        }
    }

    /// A TCP port on 127.0.0.1 that nothing listens on now.
    static func freePort() throws -> Int {
        try #require(bind(0), "no free port")
    }

    /// `port` on 127.0.0.1 if a server could bind it now (0: any free one), as the services'
    /// servers bind (SO_REUSEADDR: a port whose last connections wait out TIME_WAIT is free).
    static func bind(_ port: Int) -> Int? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        return bound ? Int(UInt16(bigEndian: address.sin_port)) : nil
    }

    /// A new client named `name`, made with the admin token: its API token.
    static func client(_ ingest: ServiceProcess, _ name: String) async throws -> String {
        let admin = try TestStack.env.require("SPOTGUARD_ADMIN_TOKEN")
        let reply = try await ingest.send("POST", "/api/admin/clients", token: admin, json: #"{"name": "\#(name)"}"#)
        return try #require(reply.json["token"] as? String)
    }

    /// The CPU time (user + system) a process has used so far, in seconds.
    static func cpuSeconds(_ pid: pid_t) throws -> Double {
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        // the fields after the command name (which is in parentheses): utime and stime are the 12th and 13th
        let fields = stat[stat.index(after: try #require(stat.lastIndex(of: ")")))...].split(separator: " ")
        let ticks = try #require(Double(fields[11])) + (try #require(Double(fields[12])))
        return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}
