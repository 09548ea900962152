import Foundation
import HTTPTypes
import Hummingbird
import Mustache
import NIOCore
import SpotFleet
import SpotModels
import SpotRuntime
import SpotStore

/// The dashboard: server-rendered pages (Mustache) that work without JavaScript. A login with
/// the client token opens a session (HttpOnly, SameSite=Strict cookie); every form carries the
/// session's CSRF token and every POST checks it.
extension ConsoleController {
    struct Page {
        var status: HTTPResponse.Status = .ok
        var template: String
        var title: String
        var alert: String? = nil
        var content: [String: Any]
        /// A page to read: it offers to keep itself up to date (`reading(_:_:)`), and does every
        /// `seconds` when they are set.
        var refresh: (seconds: Int?, on: String, off: String)? = nil
    }

    struct NavItem {
        var href: String
        var label: String
        var current: Bool
    }

    static let navigation = [
        ("/overview", "Overview"), ("/agents", "Agents"), ("/switches", "Switches"), ("/prices", "Prices"), ("/notifications", "Notifications"),
        ("/webhooks", "Webhooks"),
    ]

    func addDashboard(to router: Router<ServiceRequestContext>) {
        router.get("/") { request, _ in
            try await sessions.find(Self.cookie(request, Sessions.cookie)) == nil ? Self.redirect("/login") : Self.redirect("/overview")
        }
        for (name, type, bytes) in [("console.css", "text/css", Self.stylesheet), ("live.js", "text/javascript", Self.liveScript)] {
            router.get("/static/\(name)") { _, _ in
                Response(
                    status: .ok, headers: [.contentType: "\(type); charset=utf-8", .cacheControl: "max-age=300"],
                    body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
            }
        }
        router.get("/login") { _, _ in try loginPage(error: nil, status: .ok) }
        router.post("/login") { request, _ in
            let form = try await Self.form(request)
            guard Sessions.tokensMatch(form["csrf"], Self.cookie(request, Sessions.loginCookie) ?? "") else {
                return try loginPage(error: "The form expired; please try again.", status: .forbidden)
            }
            let found: (clientId: UUID, scope: ClientScope, keyId: String)
            do {
                found = try await directory.credential("Bearer \(form["token"] ?? "")")
            } catch let e as APIError where e.status == .unauthorized {
                return try loginPage(error: "That token is not valid.", status: .unauthorized)
            }
            let (cookie, _) = try await sessions.create(client: found.clientId, scope: found.scope, keyId: found.keyId)
            var response = Self.redirect("/overview")
            response.headers.append(HTTPField(name: .setCookie, value: sessions.setCookie(Sessions.cookie, cookie, maxAge: sessions.sessionMaxAge)))
            response.headers.append(HTTPField(name: .setCookie, value: sessions.setCookie(Sessions.loginCookie, "", path: "/login", maxAge: 0)))
            return response
        }
        router.post("/logout") { request, _ in
            try await withSession(request, form: true, scope: .read) { _, _ in
                try await sessions.end(Self.cookie(request, Sessions.cookie))
                var response = Self.redirect("/login")
                response.headers.append(HTTPField(name: .setCookie, value: sessions.setCookie(Sessions.cookie, "", maxAge: 0)))
                return response
            }
        }
        router.get("/overview") { request, _ in
            try await withSession(request) { session, _ in try render(try await reading(request) { try await overview(session.clientId) }, session) }
        }
        router.get("/agents") { request, _ in
            try await withSession(request) { session, _ in
                let after = request.uri.queryParameters["after"].map(String.init)
                guard (after?.utf8.count ?? 0) <= 255 else {
                    throw APIError(.badRequest, code: "out_of_range", message: "after must be an agent name of at most 255 bytes", field: "after")
                }
                return try render(try await agentsPage(session.clientId, after: after, alert: nil), session)
            }
        }
        router.get("/agents/:agentId") { request, context in
            try await withSession(request) { session, _ in
                let agent = try await fleet.agent(try pathUUID("agentId", context, notFound: "agent_not_found"), of: session.clientId)
                return try render(try await agentPage(agent, client: session.clientId, alert: nil), session)
            }
        }
        router.post("/agents/:agentId/config") { request, context in
            try await withSession(request, form: true) { session, form in
                let agent = try await fleet.agent(try pathUUID("agentId", context, notFound: "agent_not_found"), of: session.clientId)
                func flag(_ name: String) throws -> Bool? {
                    guard let v = form[name] else { return nil }
                    guard v == "on" || v == "off" else { throw APIError(.badRequest, code: "invalid_value", message: "\(name) must be on or off", field: name) }
                    return v == "on"
                }
                let change = ConfigChange(
                    autoSwitchEnabled: try flag("auto_switch_enabled"), autoTerminateEnabled: try flag("auto_terminate_enabled"),
                    manualReplicaEnabled: try flag("manual_replica_enabled"), autoReplicaEnabled: try flag("auto_replica_enabled"))
                return try await afterAction(try await applyConfig(change, client: session.clientId, agent: agent), session, back: "/agents") {
                    try await agentsPage(session.clientId, alert: $0)
                }
            }
        }
        router.post("/agents/:agentId/switch") { request, context in
            try await withSession(request, form: true) { session, form in
                let agent = try await fleet.agent(try pathUUID("agentId", context, notFound: "agent_not_found"), of: session.clientId)
                let target = form["target_pool_id"].map { "pool \($0)" } ?? (form["target_mode"] == "ondemand" ? "on-demand capacity" : "the best pool")
                let consequence =
                    form["target"] == "replica"
                    ? "The manual replica becomes the primary: the traffic moves to it and the current primary is fenced."
                    : "An instance is launched on \(target) from an image of \(agent.instanceId ?? "the current instance"), the traffic moves "
                        + "to it, and the current instance stops serving."
                if let ask = try confirmFirst(
                    form, session, action: "/agents/\(agent.id.lowercased)/switch", back: "/agents/\(agent.id.lowercased)",
                    question: "Switch \(agent.logicalAgentId) now?", consequence: consequence, button: "Switch")
                {
                    return ask
                }
                let body = ForceSwitch(target: form["target"], targetMode: form["target_mode"], targetPoolId: form["target_pool_id"])
                return try await afterAction(
                    try await forceSwitch(body, client: session.clientId, agent: agent), session, back: "/agents/\(agent.id.lowercased)"
                ) {
                    try await agentPage(agent, client: session.clientId, alert: $0)
                }
            }
        }
        router.post("/agents/:agentId/traffic") { request, context in
            try await withSession(request, form: true) { session, form in
                let agent = try await fleet.agent(try pathUUID("agentId", context, notFound: "agent_not_found"), of: session.clientId)
                let reply: APIReply
                do {
                    let traffic = try TrafficConfig(
                        formElasticIps: form["elastic_ips"] ?? "", targetGroups: form["target_groups"] ?? "", dnsRecords: form["dns_records"] ?? "")
                    reply = try await replicas.call(
                        ReplicaRequest(
                            operation: .setTraffic, clientId: session.clientId, agentId: agent.id,
                            body: String(decoding: try WireJSON.encoder().encode(traffic), as: UTF8.self)))
                } catch let e as ValidationError {
                    reply = try Self.refusal(400, e.code, e.message, field: e.field)
                }
                return try await afterAction(reply, session, back: "/agents/\(agent.id.lowercased)") {
                    try await agentPage(
                        agent, client: session.clientId, alert: $0,
                        draft: (form["elastic_ips"] ?? "", form["target_groups"] ?? "", form["dns_records"] ?? ""))
                }
            }
        }
        router.post("/agents/:agentId/replicas/:replicaId/:action") { request, context in
            try await withSession(request, form: true) { session, form in
                let agent = try await fleet.agent(try pathUUID("agentId", context, notFound: "agent_not_found"), of: session.clientId)
                let replica = try pathUUID("replicaId", context, notFound: "replica_not_found")
                let operation: ReplicaOperation
                let question: (String, String)
                switch context.parameters.get("action") {
                case "promote":
                    operation = .promoteReplica
                    question = (
                        "Promote this replica of \(agent.logicalAgentId)?",
                        "Replica \(replica.lowercased) becomes the primary: the traffic moves to its instance and the current primary is fenced."
                    )
                case "delete":
                    operation = .deleteReplica
                    question = (
                        "Delete this replica of \(agent.logicalAgentId)?",
                        "Replica \(replica.lowercased) is terminated; until another is ready the agent has no standby to fail over to."
                    )
                default: throw APIError(.notFound, code: "not_found", message: "no such action")
                }
                if let ask = try confirmFirst(
                    form, session, action: "/agents/\(agent.id.lowercased)/replicas/\(replica.lowercased)/\(context.parameters.get("action") ?? "")",
                    back: "/agents", question: question.0, consequence: question.1, button: operation == .promoteReplica ? "Promote" : "Delete")
                {
                    return ask
                }
                let reply = try await replicas.call(ReplicaRequest(operation: operation, clientId: session.clientId, agentId: agent.id, replicaId: replica))
                return try await afterAction(reply, session, back: "/agents") { try await agentsPage(session.clientId, alert: $0) }
            }
        }
        router.get("/switches") { request, _ in
            try await withSession(request) { session, _ in try render(try await reading(request) { try await switchesPage(session.clientId) }, session) }
        }
        router.get("/prices") { request, _ in
            try await withSession(request) { session, _ in
                let raw = request.uri.queryParameters["range"].map(String.init) ?? PriceChart.Range.week.rawValue
                guard let range = PriceChart.Range(rawValue: raw) else {
                    let allowed = PriceChart.Range.allCases.map(\.rawValue).joined(separator: ", ")
                    throw APIError(.badRequest, code: "invalid_value", message: "range must be one of \(allowed)", field: "range")
                }
                return try render(try await reading(request) { try await pricesPage(session.clientId, range: range) }, session)
            }
        }
        router.get("/notifications") { request, _ in
            try await withSession(request) { session, _ in
                try render(try await reading(request) { try await notificationsPage(session.clientId) }, session)
            }
        }
        router.post("/notifications/read") { request, _ in
            try await withSession(request, form: true, scope: .read) { session, form in
                var id: UUID?
                if let raw = form["notification_id"] {
                    guard let parsed = UUID(uuidString: raw) else {
                        throw APIError(.badRequest, code: "invalid_value", message: "notification_id must be a UUID", field: "notification_id")
                    }
                    id = parsed
                }
                _ = try await fleet.markRead(session.clientId, id)
                return Self.redirect("/notifications")
            }
        }
    }

    // MARK: plumbing

    /// Runs `body` for a logged-in visitor (else: to the login page). With `form`, the body is
    /// read as a form and its CSRF token must match the session's (else 403). The session's
    /// scope must cover `scope` (default: `operate` for a form, which changes the fleet, else
    /// `read`) or the answer is 403 `insufficient_scope`.
    func withSession(
        _ request: Request, form: Bool = false, scope: ClientScope? = nil, _ body: (Sessions.Session, [String: String]) async throws -> Response
    ) async throws -> Response {
        guard let session = try await sessions.find(Self.cookie(request, Sessions.cookie)) else { return Self.redirect("/login") }
        try session.scope.require(scope ?? (form ? .operate : .read))
        var fields: [String: String] = [:]
        if form {
            fields = try await Self.form(request)
            guard Sessions.tokensMatch(fields["csrf"], session.csrf) else {
                throw APIError(.forbidden, code: "csrf_failed", message: "the form's CSRF token is missing or wrong; reload the page")
            }
        }
        return try await body(session, fields)
    }

    /// A destructive action asks first: a form without `confirmed=yes` is answered with a page
    /// that says what will happen, the same form to confirm it, and a way back (no script: the
    /// pages' policy allows none). Nil once confirmed.
    func confirmFirst(
        _ form: [String: String], _ session: Sessions.Session, action: String, back: String, question: String, consequence: String, button: String
    ) throws -> Response? {
        guard form["confirmed"] != "yes" else { return nil }
        let fields = form.filter { $0.key != "csrf" && $0.key != "confirmed" }.sorted { $0.key < $1.key }.map { ["name": $0.key, "value": $0.value] }
        return try render(
            Page(
                template: "confirm", title: question,
                content: ["question": question, "consequence": consequence, "action": action, "fields": fields, "back": back, "button": button]),
            session)
    }

    /// After a form action: back to the page on success (303), or the page again with the
    /// refusal's message and its status.
    func afterAction(
        _ reply: APIReply, _ session: Sessions.Session, back: String, page: (String) async throws -> Page
    ) async throws -> Response {
        if (200..<300).contains(reply.status) { return Self.redirect(back) }
        let message = JSONValue.parse(reply.body)?["error"]?["message"]?.string ?? "The action failed (HTTP \(reply.status))."
        var p = try await page(message)
        p.status = HTTPResponse.Status(code: reply.status)
        return try render(p, session)
    }

    func render(_ page: Page, _ session: Sessions.Session?) throws -> Response {
        var object = page.content
        object["title"] = page.title
        if let alert = page.alert { object["alert"] = alert }
        object["csrf"] = session?.csrf ?? ""
        object["loggedIn"] = session != nil
        object["nav"] = Self.navigation.map { NavItem(href: $0.0, label: $0.1, current: $0.0 == "/\(page.template)") }
        if page.status == .ok, let refresh = page.refresh {
            object["refresh"] = ["reload": refresh.seconds != nil, "on": refresh.on, "off": refresh.off]
            object["refreshSeconds"] = refresh.seconds
            object["asOf"] = Self.time(Date())
        }
        guard let html = templates.render(object, withTemplate: page.template) else {
            throw APIError(.internalServerError, code: "template_missing", message: "no template \(page.template)")
        }
        var headers = Self.pageHeaders
        headers[.contentType] = "text/html; charset=utf-8"
        return Response(status: page.status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    func loginPage(error: String?, status: HTTPResponse.Status) throws -> Response {
        let token = Self.randomHex(32)
        var response = try render(Page(status: status, template: "login", title: "Log in", alert: error, content: ["loginCsrf": token]), nil)
        response.headers.append(HTTPField(name: .setCookie, value: sessions.setCookie(Sessions.loginCookie, token, path: "/login", maxAge: 3600)))
        return response
    }

    /// A page only to read keeps up by itself when its reader asks (`?refresh=30`, or another
    /// number of seconds from 5 to 3600): `live.js` fetches it again that often and replaces what
    /// is below its heading, or without script a refresh meta tag reloads it. On, it says so and
    /// offers to stop, since an update the reader cannot stop fails WCAG 2.2.2. Pages with forms
    /// and questions never update themselves.
    func reading(_ request: Request, _ build: () async throws -> Page) async throws -> Page {
        let asked = request.uri.queryParameters["refresh"].map(String.init)
        let seconds = asked.flatMap { Int($0) }
        guard asked == nil || (seconds.map { (5...3600).contains($0) } ?? false) else {
            throw APIError(
                .badRequest, code: "invalid_value", message: "refresh must be a number of seconds from 5 to 3600, or left out", field: "refresh")
        }
        // the page's other parameters (the price period) stay as they are
        let kept = request.uri.queryParameters.filter { $0.key != "refresh" }.map { pair in
            "\(pair.key)=\(String(pair.value).addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")"
        }
        func link(_ parameters: [String]) -> String { request.uri.path + (parameters.isEmpty ? "" : "?" + parameters.joined(separator: "&")) }
        var page = try await build()
        page.refresh = (seconds, link(kept + ["refresh=\(Self.refreshSeconds)"]), link(kept))
        return page
    }

    /// What the offer to keep a page up to date proposes.
    static let refreshSeconds = 30

    static let pageHeaders: HTTPFields = [
        .contentSecurityPolicy:
            "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        HTTPField.Name("X-Content-Type-Options")!: "nosniff",
        HTTPField.Name("Referrer-Policy")!: "same-origin",
        .cacheControl: "no-store",
    ]

    static func redirect(_ location: String) -> Response {
        Response(status: .seeOther, headers: [.location: location, .cacheControl: "no-store"])
    }

    static func cookie(_ request: Request, _ name: String) -> String? {
        for header in request.headers[values: .cookie] {
            for part in header.split(separator: ";") {
                let kv = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
                if kv.count == 2, kv[0] == name { return String(kv[1]) }
            }
        }
        return nil
    }

    /// An `application/x-www-form-urlencoded` body (at most 16 KiB).
    static func form(_ request: Request) async throws -> [String: String] {
        let buffer = try await HTTPJSON.bytes(of: request, limit: 16_384)
        guard request.headers[.contentType]?.lowercased().hasPrefix("application/x-www-form-urlencoded") ?? (buffer.readableBytes == 0) else {
            throw APIError(.unsupportedMediaType, code: "unsupported_media_type", message: "send the form as application/x-www-form-urlencoded")
        }
        var fields: [String: String] = [:]
        for pair in String(buffer: buffer).split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decoded(_ s: Substring) -> String { String(s).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "" }
            fields[decoded(kv[0])] = kv.count > 1 ? decoded(kv[1]) : ""
        }
        return fields
    }

    static let stylesheet = asset("console.css")
    static let liveScript = asset("live.js")

    /// A file the pages load, from the templates folder.
    static func asset(_ name: String) -> [UInt8] {
        guard let dir = Bundle.module.url(forResource: "Templates", withExtension: nil), let data = try? Data(contentsOf: dir.appendingPathComponent(name))
        else { return [] }
        return Array(data)
    }

    // MARK: formatting

    static func time(_ d: Date?) -> String {
        guard let d else { return "—" }
        return d.formatted(Date.ISO8601FormatStyle()).replacingOccurrences(of: "T", with: " ").replacingOccurrences(of: "Z", with: " UTC")
    }

    /// Dollars; amounts under $10 with cents of cents, so a young fleet's savings show.
    static func money(_ v: Double?) -> String {
        guard let v else { return "—" }
        return String(format: abs(v) < 10 ? "$%.4f" : "$%.2f", v)
    }

    static func price(_ v: Double?) -> String {
        guard let v else { return "—" }
        return String(format: "$%.4f/h", v)
    }

    static func ago(_ d: Date?) -> String {
        guard let d else { return "never" }
        let s = Int(Date().timeIntervalSince(d))
        if s < 90 { return "\(max(s, 0)) s ago" }
        if s < 5400 { return "\(s / 60) min ago" }
        if s < 172_800 { return "\(s / 3600) h ago" }
        return "\(s / 86_400) days ago"
    }
}
