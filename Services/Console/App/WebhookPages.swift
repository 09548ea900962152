import Foundation
import Hummingbird
import SpotFleet
import SpotModels
import SpotRuntime

/// The dashboard's webhooks page: the client's subscriptions with their delivery backlog, a
/// form to add one (its secret shown once, on the answer), and deletion after a question. It
/// creates and deletes through the same functions as the API; both need an `admin` session.
extension ConsoleController {
    func addWebhookPages(to router: Router<ServiceRequestContext>) {
        router.get("/webhooks") { request, _ in
            try await withSession(request) { session, _ in try render(try await webhooksPage(session.clientId), session) }
        }
        router.post("/webhooks") { request, _ in
            try await withSession(request, form: true, scope: .admin) { session, form in
                let events = (form["events"] ?? "").split { $0 == "," || $0.isWhitespace }.map(String.init)
                do {
                    let made = try await createWebhook(
                        session.clientId, WebhookRequest(url: form["url"], secret: nil, events: events, format: form["format"]))
                    // answered here, not redirected: the secret is shown this once
                    var page = try await webhooksPage(session.clientId)
                    page.content["made"] = ["url": made.url, "secret": made.secret ?? ""]
                    return try render(page, session)
                } catch let e as APIError where (400..<500).contains(e.status.code) {
                    var page = try await webhooksPage(session.clientId, draft: form)
                    page.alert = e.message
                    page.status = e.status
                    return try render(page, session)
                }
            }
        }
        router.post("/webhooks/:webhookId/delete") { request, context in
            try await withSession(request, form: true, scope: .admin) { session, form in
                let id = try pathUUID("webhookId", context, notFound: "webhook_not_found")
                guard let hook = try await webhooks(session.clientId).first(where: { $0.id == id }) else {
                    throw APIError(.notFound, code: "webhook_not_found", message: "no such webhook")
                }
                if let ask = try confirmFirst(
                    form, session, action: "/webhooks/\(id.lowercased)/delete", back: "/webhooks", question: "Delete the webhook to \(hook.url)?",
                    consequence: "Nothing more is sent to it, and its \(hook.pending) pending deliveries are dropped.", button: "Delete")
                {
                    return ask
                }
                try await deleteWebhook(session.clientId, id)
                return Self.redirect("/webhooks")
            }
        }
    }

    /// The client's webhooks; `draft` refills the form after a refusal.
    func webhooksPage(_ client: UUID, draft: [String: String] = [:]) async throws -> Page {
        let hooks = try await webhooks(client)
        let format = draft["format"] ?? "json"
        return Page(
            template: "webhooks", title: "Webhooks",
            content: [
                "hasWebhooks": !hooks.isEmpty,
                "webhooks": hooks.map { h -> [String: Any] in
                    [
                        "id": h.id.lowercased, "url": h.url, "events": h.events.isEmpty ? "every event" : h.events.joined(separator: ", "),
                        "format": h.format == "slack" ? "Slack" : "JSON", "created": Self.time(h.createdAt), "pending": h.pending, "dead": h.dead,
                    ]
                },
                "draftUrl": draft["url"] ?? "", "draftEvents": draft["events"] ?? "",
                "formats": [("json", "JSON (signed)"), ("slack", "Slack")].map { ["value": $0.0, "label": $0.1, "selected": $0.0 == format] },
            ])
    }
}
