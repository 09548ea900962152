import Foundation
import IMDSMock
import SpotIdentity
import SpotRuntime
import SpotStore
import Testing
import ToolSupport

/// A test authority for identity documents: an RSA-2048 key and its certificate made by openssl,
/// as AWS's regional certificate would be; ingest is told to trust the certificate.
struct TestIdentityAuthority {
    let directory: URL
    let signer: IdentitySigner
    var certificatePath: String { directory.appendingPathComponent("cert.pem").path }

    init() async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("identity-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let key = directory.appendingPathComponent("key.pem").path
        let status = try await ChildProcess(
            "openssl",
            [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", directory.appendingPathComponent("cert.pem").path, "-days", "2",
                "-subj", "/CN=SpotGuard test instance identity",
            ], output: directory.appendingPathComponent("openssl.log").path, errors: true
        ).exitStatus()
        #expect(status == 0)
        signer = try IdentitySigner(
            keyPEM: try String(contentsOfFile: key, encoding: .utf8),
            certificatePEM: try String(contentsOfFile: directory.appendingPathComponent("cert.pem").path, encoding: .utf8))
    }

    /// What an instance's IMDS would serve: its document and the document's PKCS7 signature.
    func identity(_ instance: String, account: String = "123456789012") throws -> (document: String, pkcs7: String) {
        let document = InstanceIdentity(
            instanceId: instance, accountId: account, region: "us-east-1", availabilityZone: "us-east-1a", instanceType: "m5.large", imageId: "ami-12345678",
            pendingTime: "2026-12-04T10:00:00Z"
        ).document
        return (String(decoding: document, as: UTF8.self), try signer.pkcs7(document))
    }

    func remove() { try? FileManager.default.removeItem(at: directory) }
}

extension IntegrationTests {
    @Suite struct EnrollmentTests {
        static func enrollBody(_ secret: String, _ identity: (document: String, pkcs7: String)) throws -> String {
            String(
                decoding: try JSONSerialization.data(withJSONObject: ["enrollment_secret": secret, "document": identity.document, "pkcs7": identity.pkcs7]),
                as: UTF8.self)
        }

        /// An instance enrolls with its signed identity document and a secret and gets a token for
        /// one agent: it registers only its own instance, acts only for its agent, cannot do
        /// what people decide nor read the console API; a replayed, edited, foreign-signed or
        /// wrong-account document is refused; a launch secret enrolls one more instance as the
        /// agent; a rotated token hands over; a revocation holds on every ingest copy.
        @Test func anEnrolledInstanceActsForItsAgentOnly() async throws {
            let authority = try await TestIdentityAuthority()
            defer { authority.remove() }
            let trust = ["SPOTGUARD_INGEST_IDENTITY_CERTIFICATES": authority.certificatePath]
            let admin = try TestStack.env.require("SPOTGUARD_ADMIN_TOKEN")
            let ingest = try await ServiceProcess.start("spotguard-ingest", portVariable: "SPOTGUARD_INGEST_PORT", environment: trust)
            let other = try await ServiceProcess.start("spotguard-ingest", portVariable: "SPOTGUARD_INGEST_PORT", environment: trust)
            let console = try await ServiceProcess.start("spotguard-console", portVariable: "SPOTGUARD_CONSOLE_PORT")
            try await ServiceProcess.with(ingest) { ingest in
                try await ServiceProcess.with(other) { other in
                    try await ServiceProcess.with(console) { console in
                        let tag = UUID().uuidString.prefix(8).lowercased()
                        let created = try await ingest.send("POST", "/api/admin/clients", token: admin, json: #"{"name": "enrollment \#(tag)"}"#)
                        let clientToken = try #require(created.json["token"] as? String)
                        let client = try #require(created.json["client_id"] as? String)
                        let issued = try await console.send(
                            "POST", "/api/client/\(client)/enrollments", token: clientToken, json: #"{"uses": 3, "ttl_seconds": 600}"#)
                        #expect(issued.status == 201 && issued.json["uses"] as? Int == 3, "\(issued.json)")
                        let secret = try #require(issued.json["enrollment_secret"] as? String)
                        #expect(secret.hasPrefix("sge_"))

                        // enrollment, once per instance
                        let instanceA = "i-0a\(tag)00000"
                        let identityA = try authority.identity(instanceA)
                        let enrolled = try await ingest.send("POST", "/api/agents/enroll", json: try Self.enrollBody(secret, identityA))
                        #expect(enrolled.status == 201 && enrolled.json["instance_id"] as? String == instanceA, "\(enrolled.json)")
                        let tokenA = try #require(enrolled.json["token"] as? String)
                        #expect(tokenA.hasPrefix("sga_") && enrolled.json["agent_id"] == nil)
                        let replayed = try await other.send("POST", "/api/agents/enroll", json: try Self.enrollBody(secret, identityA))
                        #expect(replayed.status == 409 && replayed.errorCode == "identity_replayed")
                        var edited = try authority.identity("i-0e\(tag)00000")
                        edited.pkcs7 = identityA.pkcs7
                        let forged = try await ingest.send("POST", "/api/agents/enroll", json: try Self.enrollBody(secret, edited))
                        #expect(forged.status == 401 && forged.errorCode == "document_mismatch")
                        let stranger = try await TestIdentityAuthority()
                        defer { stranger.remove() }
                        let foreign = try await ingest.send(
                            "POST", "/api/agents/enroll", json: try Self.enrollBody(secret, try stranger.identity("i-0f\(tag)00000")))
                        #expect(foreign.status == 401 && foreign.errorCode == "invalid_signature")
                        let badSecret = try await ingest.send(
                            "POST", "/api/agents/enroll",
                            json: try Self.enrollBody("sge_0000000000000000_" + String(repeating: "0", count: 64), try authority.identity("i-0b\(tag)00000")))
                        #expect(badSecret.status == 401 && badSecret.errorCode == "invalid_enrollment_secret")

                        // the token registers its own instance only, and is bound to that agent
                        func register(_ token: String, _ logical: String, _ instance: String) async throws -> ServiceProcess.Reply {
                            try await ingest.send(
                                "POST", "/api/agents/register", token: token,
                                json:
                                    #"{"logical_agent_id": "\#(logical)", "instance_id": "\#(instance)", "instance_type": "m5.large", "region": "us-east-1", "az": "us-east-1a", "mode": "spot"}"#
                            )
                        }
                        #expect(try await register(tokenA, "web-\(tag)", "i-0c\(tag)00000").errorCode == "instance_mismatch")
                        let registered = try await register(tokenA, "web-\(tag)", instanceA)
                        #expect(registered.status == 201)
                        let agentX = try #require(registered.json["agent_id"] as? String).lowercased()
                        let agentY = try #require(try await register(clientToken, "db-\(tag)", "i-0d\(tag)00000").json["agent_id"] as? String).lowercased()
                        #expect(try await register(tokenA, "db-\(tag)", instanceA).errorCode == "token_scope", "bound to its agent now")

                        func heartbeat(_ token: String, _ agent: String, via service: ServiceProcess? = nil) async throws -> ServiceProcess.Reply {
                            try await (service ?? ingest).send("POST", "/api/agents/\(agent)/heartbeat", token: token, json: #"{"status": "online"}"#)
                        }
                        #expect(try await heartbeat(tokenA, agentX).status == 202)
                        let elsewhere = try await heartbeat(tokenA, agentY)
                        #expect(elsewhere.status == 403 && elsewhere.errorCode == "token_scope")
                        #expect(try await ingest.send("GET", "/api/agents/\(agentY)/pending-commands?wait=1", token: tokenA).status == 403)
                        for (method, path, body) in [
                            ("POST", "manual-switch", #"{"target_mode": "ondemand"}"#), ("POST", "config", #"{"auto_switch_enabled": false}"#),
                            ("POST", "manual-replica/enable", "{}"), ("POST", "replicas", "{}"),
                        ] {
                            let refused = try await ingest.send(method, "/api/agents/\(agentX)/\(path)", token: tokenA, json: body)
                            #expect(refused.status == 403 && refused.errorCode == "token_scope", "\(path): \(refused.status)")
                        }
                        #expect(try await console.send("GET", "/api/client/\(client)/agents", token: tokenA).status == 401)
                        #expect(
                            try await console.send("POST", "/api/client/agents/\(agentX)/force-switch", token: tokenA, json: #"{"target_mode": "ondemand"}"#)
                                .status == 401)

                        // a launch secret: one instance, as this agent, from the same account
                        let launch = try await ingest.send("POST", "/api/agents/\(agentX)/enrollments", token: tokenA)
                        #expect(launch.status == 201 && launch.json["uses"] as? Int == 1 && launch.json["account_id"] as? String == "123456789012")
                        let launchSecret = try #require(launch.json["enrollment_secret"] as? String)
                        let wrongAccount = try await ingest.send(
                            "POST", "/api/agents/enroll",
                            json: try Self.enrollBody(launchSecret, try authority.identity("i-0e\(tag)11111", account: "999999999999")))
                        #expect(wrongAccount.status == 403 && wrongAccount.errorCode == "account_mismatch")
                        let instanceB = "i-0b\(tag)11111"
                        let replica = try await ingest.send(
                            "POST", "/api/agents/enroll", json: try Self.enrollBody(launchSecret, try authority.identity(instanceB)))
                        #expect(replica.status == 201 && (replica.json["agent_id"] as? String)?.lowercased() == agentX)
                        let tokenB = try #require(replica.json["token"] as? String)
                        #expect(try await heartbeat(tokenB, agentX).status == 202)
                        let spent = try await ingest.send(
                            "POST", "/api/agents/enroll", json: try Self.enrollBody(launchSecret, try authority.identity("i-0b\(tag)22222")))
                        #expect(spent.status == 401 && spent.errorCode == "invalid_enrollment_secret")

                        // rotation hands over; the old token works through the grace period
                        let rotated = try await ingest.send("POST", "/api/agents/\(agentX)/token", token: tokenB)
                        let tokenB2 = try #require(rotated.json["token"] as? String)
                        #expect(rotated.status == 201 && tokenB2 != tokenB)
                        #expect(try await heartbeat(tokenB2, agentX).status == 202)
                        #expect(try await heartbeat(tokenB, agentX).status == 202)
                        #expect(try await ingest.send("POST", "/api/agents/\(agentX)/token", token: clientToken).errorCode == "token_scope")

                        // revocation: every token of the agent stops, on both ingest copies (each has them cached)
                        #expect(try await heartbeat(tokenA, agentX, via: other).status == 202)
                        let started = ContinuousClock.now
                        let revoked = try await console.send("POST", "/api/client/agents/\(agentX)/revoke-tokens", token: clientToken)
                        #expect(revoked.status == 200 && revoked.json["revoked"] as? Int == 3, "\(revoked.json)")
                        for service in [ingest, other] {
                            for token in [tokenA, tokenB, tokenB2] {
                                let stopped = await TestStack.eventually(timeout: .seconds(5)) {
                                    (try? await heartbeat(token, agentX, via: service).status) == 401
                                }
                                #expect(stopped, "a revoked token still works on an ingest copy")
                            }
                        }
                        print("revocation held on both ingest copies after \(ContinuousClock.now - started)")
                        #expect(try await heartbeat(clientToken, agentX).status == 202, "the client's own token is untouched")
                    }
                }
            }
        }

        /// The agent with only an enrollment secret: it enrolls with its instance's signed
        /// identity document, saves its agent token (mode 0600) and reports with it; restarted,
        /// it uses the saved token (the secret is spent and a second enrollment of the instance
        /// would be refused); a saved token of another instance (an image's copy) is not used.
        @Test func theAgentEnrollsOnceAndKeepsItsToken() async throws {
            let store = try await TestStack.store()
            let harness = try AgentHarness()
            let signer = try TestStack.identitySigner()
            let launched = try await harness.instance()
            let imds = IMDSMock(identity: launched.identity, signer: signer)
            let instance = imds.identity.instanceId
            let tokenFile = FileManager.default.temporaryDirectory.appendingPathComponent("agent-token-\(UUID())").path
            defer { try? FileManager.default.removeItem(atPath: tokenFile) }
            // the SEF applies heartbeats
            try await ServiceProcess.withIngest { ingest in
                try await withSEF {
                    let client = try await AgentHarness.client(ingest, "Enrolled agent")
                    let logical = "enrolled-\(UUID().uuidString.prefix(8).lowercased())"
                    let agent = try #require(
                        try await ingest.send("POST", "/api/agents/register", token: client, json: #"{"logical_agent_id": "\#(logical)"}"#).json["agent_id"]
                            as? String
                    ).lowercased()
                    let secret = try #require(
                        try await ingest.send("POST", "/api/agents/\(agent)/enrollments", token: client).json["enrollment_secret"] as? String)
                    let settings = ["SPOTGUARD_AGENT_ENROLLMENT_SECRET": secret, "SPOTGUARD_AGENT_TOKEN_FILE": tokenFile]
                    func heartbeats(after: Date) async throws -> Bool {
                        try await TestStack.eventually(timeout: .seconds(20)) {
                            try await SEFQuery.count(
                                store, "SELECT count(*) FROM agents WHERE id = $1::uuid AND instance_id = $2 AND last_heartbeat_at > $3",
                                [agent, instance, after]) == 1
                        }
                    }
                    try await imds.serving { url in
                        let first = Date()
                        try await harness.withAgent(ingest: ingest, token: "", imds: url, logical: logical, environment: settings) {
                            let reported = try await heartbeats(after: first)
                            #expect(reported, "the enrolled agent registered and heartbeats")
                        }
                        let saved = try #require(FileManager.default.contents(atPath: tokenFile))
                        let json = try #require(try JSONSerialization.jsonObject(with: saved) as? [String: Any])
                        #expect((json["token"] as? String)?.hasPrefix("sga_") == true && json["instance_id"] as? String == instance, "\(json)")
                        let mode = try FileManager.default.attributesOfItem(atPath: tokenFile)[.posixPermissions] as? Int
                        #expect(mode == 0o600)
                        let bound = try await ReplicaQuery.one(store, "SELECT agent_id::text FROM agent_tokens WHERE instance_id = $1", [instance])
                        #expect(bound == [agent])

                        let second = Date()
                        try await harness.withAgent(ingest: ingest, token: "", imds: url, logical: logical, environment: settings) {
                            let reported = try await heartbeats(after: second)
                            #expect(reported, "restarted, it reports with its saved token")
                        }
                        #expect(try await SEFQuery.count(store, "SELECT count(*) FROM agent_tokens WHERE instance_id = $1", [instance]) == 1, "enrolled once")
                    }
                    // the saved token belongs to that instance: another (an image's copy) enrolls, or stops
                    let copy = IMDSMock(
                        identity: .init(
                            instanceId: "i-0c0\(UUID().uuidString.prefix(8).lowercased())aa", instanceType: "m5.large", availabilityZone: "us-east-1a"),
                        signer: signer)
                    try await copy.serving { url in
                        try await harness.withAgentProcess(ingest: ingest, token: "", imds: url, logical: logical, environment: settings, expectedExit: 2) {
                            _ in
                        }
                    }
                }
            }
            await store.shutdown()
        }

        /// Without identity certificates, ingest refuses enrollment plainly rather than trusting
        /// an unchecked document.
        @Test func withoutCertificatesEnrollmentIsRefused() async throws {
            let ingest = try await ServiceProcess.start(
                "spotguard-ingest", portVariable: "SPOTGUARD_INGEST_PORT", environment: ["SPOTGUARD_INGEST_IDENTITY_CERTIFICATES": ""])
            try await ServiceProcess.with(ingest) { ingest in
                let answer = try await ingest.send(
                    "POST", "/api/agents/enroll", json: #"{"enrollment_secret": "sge_x", "document": "{}", "pkcs7": "AA=="}"#)
                #expect(answer.status == 503 && answer.errorCode == "enrollment_not_configured")
            }
        }
    }
}
