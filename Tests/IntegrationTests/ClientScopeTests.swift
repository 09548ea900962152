import Foundation
import SpotRuntime
import Testing

extension IntegrationTests {
    /// Client tokens with scopes: the client's own token is `admin` and makes further tokens
    /// for people and automation that should hold less.
    @Suite struct ClientScopeTests {
        /// A `read` token sees everything and changes nothing (not on the console, not on the
        /// agent API); an `operate` token runs the fleet but makes no credentials and no
        /// webhooks; an `admin` one does both; bad requests name the field; a revoked token
        /// stops working on the console and on ingest (another process, told over the bus).
        @Test func scopesBoundWhatATokenMayDo() async throws {
            let admin = try TestStack.env.require("SPOTGUARD_ADMIN_TOKEN")
            let ingest = try await ServiceProcess.ingest()
            let console = try await ServiceProcess.console()
            try await ServiceProcess.with(ingest) { ingest in
                try await ServiceProcess.with(console) { console in
                    let tag = UUID().uuidString.prefix(8).lowercased()
                    let created = try await ingest.send("POST", "/api/admin/clients", token: admin, json: #"{"name": "scopes \#(tag)"}"#)
                    let owner = try #require(created.json["token"] as? String)
                    let client = try #require(created.json["client_id"] as? String)
                    let registered = try await ingest.send("POST", "/api/agents/register", token: owner, json: #"{"logical_agent_id": "scoped-\#(tag)"}"#)
                    let agent = try #require(registered.json["agent_id"] as? String)
                    let tokens = "/api/client/\(client)/tokens"

                    func make(_ scope: String) async throws -> (token: String, key: String) {
                        let reply = try await console.send("POST", tokens, token: owner, json: #"{"name": "\#(scope) \#(tag)", "scope": "\#(scope)"}"#)
                        #expect(reply.status == 201 && reply.json["scope"] as? String == scope, "\(reply.json)")
                        return (try #require(reply.json["token"] as? String), try #require(reply.json["key_id"] as? String))
                    }
                    let read = try await make("read")
                    let operate = try await make("operate")
                    let full = try await make("admin")
                    let badScope = try await console.send("POST", tokens, token: owner, json: #"{"name": "x", "scope": "root"}"#)
                    #expect(badScope.status == 400 && badScope.errorCode == "invalid_scope" && badScope.errorField == "scope")
                    let noName = try await console.send("POST", tokens, token: owner, json: #"{"scope": "read"}"#)
                    #expect(noName.status == 400 && noName.errorCode == "invalid_name")
                    // a NUL would cut the name to nothing on its way to the database (a 500 once)
                    let cut = try await console.send("POST", tokens, token: owner, json: #"{"name": "\u0000ops", "scope": "read"}"#)
                    #expect(cut.status == 400 && cut.errorCode == "invalid_name")

                    let heartbeat = "/api/agents/\(agent)/heartbeat"
                    let online = #"{"status": "online"}"#
                    // an empty change: the scope is checked before anything is relayed to the coordinator
                    let config = "/api/client/agents/\(agent)/config"
                    let webhook = #"{"url": "https://hooks.example.com/spot", "events": ["failover.*"]}"#

                    // read: sees, changes nothing
                    #expect(try await console.send("GET", "/api/client/\(client)/agents", token: read.token).status == 200)
                    #expect(try await console.send("GET", "/api/client/agents/\(agent)", token: read.token).status == 200)
                    for (status, code) in [
                        try await console.send("POST", config, token: read.token, json: "{}"),
                        try await console.send("POST", "/api/client/\(client)/webhooks", token: read.token, json: webhook),
                        try await ingest.send("POST", heartbeat, token: read.token, json: online),
                    ].map({ ($0.status, $0.errorCode) }) {
                        #expect(status == 403 && code == "insufficient_scope")
                    }
                    let reader = Browser(base: console.base)
                    #expect(try await reader.logIn(token: read.token) == 303, "a read token opens the dashboard")
                    #expect(try await reader.request("GET", "/agents/\(agent)").status == 200)
                    #expect(try await reader.request("POST", "/agents/\(agent)/config", form: "auto_switch_enabled=on").status == 403)

                    // operate: runs the fleet, makes no credentials or webhooks
                    #expect(try await ingest.send("POST", heartbeat, token: operate.token, json: online).status == 202)
                    #expect(try await console.send("POST", config, token: operate.token, json: "{}").status == 200)
                    let operating = Browser(base: console.base)
                    #expect(try await operating.logIn(token: operate.token) == 303)
                    for reply in [
                        try await console.send("POST", tokens, token: operate.token, json: #"{"name": "more", "scope": "admin"}"#),
                        try await console.send("POST", "/api/client/\(client)/enrollments", token: operate.token, json: "{}"),
                        try await console.send("POST", "/api/client/\(client)/webhooks", token: operate.token, json: webhook),
                        try await console.send("GET", tokens, token: operate.token),
                    ] {
                        #expect(reply.status == 403 && reply.errorCode == "insufficient_scope", "\(reply.json)")
                    }

                    // admin: credentials too
                    let listed = try await console.send("GET", tokens, token: full.token)
                    #expect(listed.status == 200 && listed.json["count"] as? Int == 3 && !String(decoding: listed.body, as: UTF8.self).contains("sgt_"))
                    #expect(try await console.send("POST", "/api/client/\(client)/webhooks", token: full.token, json: webhook).status == 201)

                    // revoked: refused by the console at once and by ingest once the bus told it
                    #expect(try await console.send("DELETE", "\(tokens)/\(operate.key)", token: full.token).status == 204)
                    let again = try await console.send("DELETE", "\(tokens)/\(operate.key)", token: full.token)
                    #expect(again.status == 404 && again.errorCode == "token_not_found")
                    #expect(try await console.send("GET", "/api/client/\(client)/agents", token: operate.token).status == 401)
                    #expect(try await operating.request("GET", "/overview").status == 303, "the revoked token's dashboard session ended")
                    let refused = try await TestStack.eventually(timeout: .seconds(10)) {
                        try await ingest.send("POST", heartbeat, token: operate.token, json: online).status == 401
                    }
                    #expect(refused, "ingest still accepts a revoked token")
                    #expect(try await ingest.send("POST", heartbeat, token: full.token, json: online).status == 202)
                }
            }
        }
    }
}
