import Foundation
import SpotModels
import SpotRuntime
import SpotStore
import Testing
import ToolSupport

extension IntegrationTests {
    /// Reliability plan B1: schemathesis (PyPI) generates requests from each service's own
    /// OpenAPI document — examples, boundary coverage and random fuzzing, valid and invalid —
    /// and checks every answer: no 5xx, a documented status, the documented content type, a
    /// body matching the documented schema.
    @Suite struct FuzzTests {
        /// Every warning schemathesis 4 raises but one, for the operations whose accepted inputs
        /// JSON Schema cannot describe.
        static let warningsButValidationMismatch = [
            "missing_auth", "missing_test_data", "base_url_mismatch", "missing_deserializer", "unused_openapi_auth", "unsupported_regex",
            "method_not_allowed", "constants_extraction", "unmatched_filter", "unresolvable_reference", "rate_limited", "dictionary_mismatch",
        ]

        /// Runs schemathesis against `service` as `token` (the admin routes as `admin`, on
        /// `adminClient`: suspending or rotating the fuzzed client would end the run), with the
        /// path identifiers in `identifiers` fixed to real ones, so requests reach the handlers
        /// rather than 404; returns the number of cases it sent. Any warning fails the run (most
        /// generated bodies refused, an operation never reaching its handler, a filter matching
        /// nothing): the document would not say what the service takes. The operations in
        /// `beyondSchema` take inputs no schema can state (a time window, fields that must agree,
        /// a signature, the state they find); they run apart, where that one warning is not
        /// raised. Those in `namedInBody` also name an existing resource in their body, where the
        /// fixed identifiers do not reach (a generated one names nothing: 404); their own pass
        /// leaves out the missing-data warning too.
        func fuzz(
            _ service: ServiceProcess, token: String, admin: String, adminClient: String? = nil, identifiers: [String: String], name: String,
            exclusions: [String] = [], beyondSchema: [String] = [], namedInBody: [String] = []
        ) async throws -> Int {
            var cases = try await schemathesis(
                service, token: token, admin: admin, adminClient: adminClient, identifiers: identifiers, name: name, warnings: nil,
                exclusions + (beyondSchema + namedInBody).flatMap { ["--exclude-operation-id", $0] })
            if !beyondSchema.isEmpty {
                cases += try await schemathesis(
                    service, token: token, admin: admin, adminClient: adminClient, identifiers: identifiers, name: name + " (inputs beyond the schema)",
                    warnings: Self.warningsButValidationMismatch, beyondSchema.flatMap { ["--include-operation-id", $0] })
            }
            if !namedInBody.isEmpty {
                cases += try await schemathesis(
                    service, token: token, admin: admin, adminClient: adminClient, identifiers: identifiers, name: name + " (ids in the body)",
                    warnings: Self.warningsButValidationMismatch.filter { $0 != "missing_test_data" },
                    namedInBody.flatMap { ["--include-operation-id", $0] })
            }
            return cases
        }

        func schemathesis(
            _ service: ServiceProcess, token: String, admin: String, adminClient: String?, identifiers: [String: String], name: String,
            warnings: [String]?, _ filters: [String]
        ) async throws -> Int {
            let st = try TestStack.env.require("SPOTGUARD_TEST_SCHEMATHESIS")
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fuzz-\(UUID())")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            let events = dir.appendingPathComponent("events.ndjson")
            let output = dir.appendingPathComponent("output.txt")
            let config = dir.appendingPathComponent("schemathesis.toml")
            let shown = warnings.map { "display = [\($0.map { "\"\($0)\"" }.joined(separator: ", "))], " } ?? ""
            try Data(
                ("warnings = { \(shown)fail-on = true }\n\n[parameters]\n" + identifiers.map { "\"path.\($0.key)\" = \"\($0.value)\"\n" }.joined()
                    + "\n[[operations]]\ninclude-path-regex = \"^(/api)?/admin/\"\nheaders = { Authorization = \"Bearer \(admin)\" }\n"
                    + (adminClient.map { "parameters = { \"path.clientId\" = \"\($0)\" }\n" } ?? "")).utf8
            ).write(to: config)
            let p = try ChildProcess(
                st,
                [
                    "--config-file", config.path, "run", service.base + "/openapi.yaml", "--url", service.base, "-H", "Authorization: Bearer \(token)",
                    "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                    // one worker: with two, hypothesis once failed inside its own lambda-source parser
                    // ("AST constructor recursion depth mismatch"), a runtime error, not a finding
                    "--max-examples", "60", "--seed", "20261123", "--workers", "1", "--no-color", "--request-timeout", "20",
                    "--report", "ndjson", "--report-ndjson-path", events.path,
                ] + filters,
                output: output.path, errors: true)
            let status = await p.exitStatus()
            let text = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
            print("schemathesis against \(name):\n" + text.split(separator: "\n").suffix(status == 0 ? 25 : 200).joined(separator: "\n"))
            #expect(status == 0, "schemathesis found failures or warned in \(name) (see its output above)")
            // every case it sent is recorded with its response
            return ((try? String(contentsOf: events, encoding: .utf8)) ?? "").split(separator: "\n")
                .reduce(0) { $0 + $1.components(separatedBy: "\"response\":").count - 1 }
        }

        /// Each OpenAPI document names every operation (`operationId`, unique, so generated
        /// clients get stable method names) and its server relatively (`/`: wherever the service
        /// or the gateway in front of it answers), and describes every body: no object schema
        /// without its properties (a free-form one says so with `additionalProperties`).
        @Test func everyOperationHasAnIdAndTheServerIsRelative() throws {
            for service in ["Ingest", "Console", "SEF"] {
                let text = try String(
                    contentsOf: TestStack.repoRoot.appendingPathComponent("Services/\(service)/App/openapi.yaml"), encoding: .utf8)
                let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
                var ids: [String] = []
                for (i, line) in lines.enumerated() where line.wholeMatch(of: /\ {4}(get|post|put|patch|delete):/) != nil {
                    let id = lines[i + 1].wholeMatch(of: /\ {6}operationId: ([A-Za-z]+)/).map { String($0.1) }
                    #expect(id != nil, "\(service): the operation at line \(i + 1) has no operationId")
                    ids += id.map { [$0] } ?? []
                }
                #expect(ids.count >= 7 && Set(ids).count == ids.count, "\(service): \(ids.count) ids, \(ids.count - Set(ids).count) repeated")
                #expect(text.contains("servers:\n  - url: /\n"), "\(service): a relative server")
                #expect(Self.opaqueObjects(lines).isEmpty, "\(service): object schemas without properties at lines \(Self.opaqueObjects(lines))")
            }
        }

        /// The lines (1-based) of object schemas that say nothing of their members: `{type: object}`,
        /// a flow mapping `{type: object, …}` without properties, or a block `type: object` whose
        /// siblings hold neither `properties`, `additionalProperties` nor a composition.
        static func opaqueObjects(_ lines: [Substring]) -> [Int] {
            let members = ["properties:", "additionalProperties:", "oneOf:", "allOf:", "anyOf:"]
            var found: [Int] = []
            for (i, line) in lines.enumerated() {
                if line.contains("{type: object}") || (line.contains("{type: object,") && !members.contains(where: line.contains)) {
                    found.append(i + 1)
                    continue
                }
                guard let m = line.wholeMatch(of: /(\ +)(- )?type: object/) else { continue }
                let indent = m.1.count + (m.2 == nil ? 0 : 2)
                var siblings: [Substring] = []
                for next in lines[(i + 1)...] {
                    let depth = next.prefix { $0 == " " }.count
                    if depth < indent || next.trimmingCharacters(in: .whitespaces).isEmpty { break }
                    if depth == indent { siblings.append(next.dropFirst(indent)) }
                }
                if !siblings.contains(where: { s in members.contains { s.hasPrefix($0) } }) { found.append(i + 1) }
            }
            return found
        }

        /// What the fuzzed identifiers name: a client, its agent with a location (so replica
        /// calls get past `agent_location_unknown`), a manual replica, its launch command, a
        /// stored state chunk, a state version and a notification.
        func fixtures(
            ingest: ServiceProcess, console: ServiceProcess, admin: String, store: PostgresStore
        ) async throws -> (token: String, ids: [String: String], adminClient: String) {
            let created = try await ingest.send("POST", "/api/admin/clients", token: admin, json: #"{"name": "Fuzzed"}"#)
            let token = try #require(created.json["token"] as? String)
            let client = try #require(created.json["client_id"] as? String).lowercased()
            // a region of its own: the replica goes to the cheapest other zone priced here
            let primary = "i-0f0f0f0f0f0f0f0f1"
            let registered = try await ingest.send(
                "POST", "/api/agents/register", token: token,
                json:
                    #"{"logical_agent_id": "fuzzed-1", "instance_id": "\#(primary)", "instance_type": "m5.large", "region": "me-south-1", "az": "me-south-1a", "mode": "spot", "pool_id": "m5.large.me-south-1a"}"#
            )
            let agent = try #require(registered.json["agent_id"] as? String).lowercased()
            func call(_ method: String, _ path: String, _ json: String? = nil) async throws -> ServiceProcess.Reply {
                try await ingest.send(method, "/api/agents/\(agent)\(path)", token: token, json: json)
            }
            let priced = try await call(
                "POST", "/pricing-report",
                #"{"instance_id": "\#(primary)", "on_demand_price": 0.096, "pools": [{"id": "m5.large.me-south-1a", "price": 0.031}, {"id": "m5.large.me-south-1b", "price": 0.029}]}"#
            )
            #expect(priced.status == 202)
            #expect(
                try await TestStack.eventually {
                    try await SEFQuery.count(
                        store,
                        "SELECT count(*) FROM pricing_snapshots_clean WHERE pool_id = 'm5.large.me-south-1b' AND time_bucket > now() - interval '10 minutes'",
                        []) > 0
                })
            let replica = try #require(try await call("POST", "/replicas", "{}").json["replica_id"] as? String)
            let commands = try await call("GET", "/pending-commands?instance_id=\(primary)").json["commands"] as? [[String: Any]]
            let command = try #require(commands?.first?["command_id"] as? String)
            let chunk = Data("fuzzed state".utf8)
            let sha = StateShippingTests.chunkName(chunk)
            #expect(
                try await ingest.send("PUT", "/api/agents/\(agent)/state/chunks/\(sha)", token: token, contentType: "application/octet-stream", body: chunk)
                    .status < 300)
            let version = try await call(
                "POST", "/state/versions",
                #"{"manifest": {"kind": "file", "store": "spotguard", "files": [{"path": "state", "size": \#(chunk.count), "chunks": ["\#(sha)"]}]}}"#)
            #expect(version.status == 201, "state version: \(version.status)")
            // a switch report: the notifier writes its notification
            let now = Date()
            let switched = try await call(
                "POST", "/switch-report",
                #"{"old_instance": {"instance_id": "i-0f0f0f0f0f0f0f0f2", "mode": "spot", "pool_id": "m5.large.me-south-1b"}, "new_instance": {"instance_id": "i-0f0f0f0f0f0f0f0f3", "mode": "ondemand", "instance_type": "m5.large"}, "timing": {"initiated_at": "\#(Timestamp.format(now - 120))"}}"#
            )
            #expect(switched.status == 202)
            var notification: String?
            #expect(
                try await TestStack.eventually {
                    let listed = try await console.send("GET", "/api/client/\(client)/notifications", token: token).json["items"] as? [[String: Any]]
                    notification = listed?.first?["id"] as? String
                    return notification != nil
                })
            let target = try await ingest.send("POST", "/api/admin/clients", token: admin, json: #"{"name": "Fuzzed by the admin routes"}"#)
            return (
                token,
                [
                    "clientId": client, "agentId": agent, "replicaId": replica, "commandId": command, "sha256": sha,
                    "notificationId": try #require(notification),
                ],
                try #require(target.json["client_id"] as? String).lowercased()
            )
        }

        @Test func ingestConsoleAndSEFAnswerEveryGeneratedRequestAsDocumented() async throws {
            // a long poll answers an idle agent after 1 s instead of 25 (schemathesis times out at 20)
            let ingest = try await ServiceProcess.start(
                "spotguard-ingest", portVariable: "SPOTGUARD_INGEST_PORT", environment: ["SPOTGUARD_LONG_POLL_SECONDS": "1"])
            let services = [
                ingest, try await ServiceProcess.start("spotguard-replicas", portVariable: "SPOTGUARD_REPLICAS_PORT"), try await ServiceProcess.console(),
                try await ServiceProcess.start("spotguard-sef", portVariable: "SPOTGUARD_SEF_PORT"),
                try await ServiceProcess.start("spotguard-notifier", portVariable: "SPOTGUARD_NOTIFIER_PORT"),
            ]
            let (console, sef) = (services[2], services[3])
            do {
                let admin = try TestStack.env.require("SPOTGUARD_ADMIN_TOKEN")
                let store = try await TestStack.store()
                let (token, ids, adminClient) = try await fixtures(ingest: ingest, console: console, admin: admin, store: store)
                await store.shutdown()
                let ingestCases = try await fuzz(
                    ingest, token: token, admin: admin, identifiers: ids, name: "ingest",
                    exclusions: [
                        // a gzip body has no serializer in schemathesis; AgentTests and ReplicaTests send real ones
                        "--exclude-path-regex", "state-transfer$",
                        // an agent token's own route (a client token is refused): EnrollmentTests rotates one
                        "--exclude-operation-id", "postAgentToken",
                    ],
                    beyondSchema: [
                        // a signed identity document
                        "postAgentsEnroll",
                        // times within the last 7 days and at most 5 minutes ahead
                        "postAgentHeartbeat", "postAgentPricingReport",
                        // those times, and a region, zone, pool and type that agree
                        "postAgentSwitchReport", "postAgentsRegister",
                        // a chunk list that matches each file's size; a location for the s3 store only
                        "postAgentStateVersions",
                        // a body whose SHA-256 is the path's
                        "putAgentStateChunk",
                        // what the agent's and its replica's state allow now, which the fuzzing itself
                        // changes (a promotion moves the primary, a deletion ends the replica, a result
                        // closes the command): the current primary, a lifecycle step, a mode the others
                        // allow; a full run once got only refusals for two of these in one order
                        "postAgentTerminationImminent", "postAgentInterruption", "postAgentReplicaSyncStatus", "postAgentReplicaPromote",
                        "deleteAgentReplica", "postAgentReplicas", "postAgentCreateEmergencyReplica", "postAgentManualReplicaEnable",
                        "postAgentManualReplicaDisable", "postAgentManualSwitch", "postAgentConfig", "postAgentCommandResult",
                        "postAgentCommandLease",
                    ],
                    // the submitting agent (source_agent_id), besides the times and a location that agrees
                    namedInBody: ["postPricingSubmit"])
                let consoleCases = try await fuzz(
                    console, token: token, admin: admin, adminClient: adminClient, identifiers: ids, name: "console",
                    // deleting the one agent every other case names would leave them nothing to reach; RegressionTests deletes one
                    exclusions: ["--exclude-operation-id", "deleteAgent"],
                    // a pool of the agent's own instance type and region; the agent's and replica's state
                    beyondSchema: ["postClientAgentForceSwitch", "postClientAgentConfig", "postClientAgentReplicaPromote", "deleteClientAgentReplica"])
                // the SEF's operations routes, its admin jobs with the admin token
                let sefCases = try await fuzz(sef, token: admin, admin: admin, identifiers: [:], name: "sef")
                print(
                    "schemathesis: \(ingestCases) cases against ingest, \(consoleCases) against the console, \(sefCases) against the SEF, every one answered as documented"
                )
                #expect(ingestCases >= 1000)
                #expect(consoleCases >= 1000)
                #expect(sefCases >= 7)
            } catch {
                for s in services { _ = await s.stop() }
                throw error
            }
            for s in services { #expect(await s.stop() == 0, "a service did not shut down cleanly after the fuzzing") }
        }
    }
}
