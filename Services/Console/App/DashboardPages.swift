import Foundation
import SpotModels
import SpotRuntime

/// What each dashboard page shows, as the dictionaries its template reads. Text is formatted
/// here; the templates only lay it out (and escape it).
extension ConsoleController {
    func overview(_ client: UUID) async throws -> Page {
        let today = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 / 86_400).rounded(.down) * 86_400)
        let allTime = try await savingsReport(client, from: today.addingTimeInterval(-365 * 86_400), to: today)
        let counts = try await fleet.counts(client)
        func percent(_ m: Money) -> String { m.savingsPercent.map { String(format: "%.1f %%", $0) } ?? "—" }
        var content: [String: Any] = [
            "savedTotal": Self.money(allTime.total.savings), "savedTotalPercent": percent(allTime.total),
            "savedMonth": Self.money(allTime.monthToDate.savings), "savedMonthPercent": percent(allTime.monthToDate),
            "onDemandTotal": Self.money(allTime.total.onDemandCost), "actualTotal": Self.money(allTime.total.actualCost),
            "replicaTotal": Self.money(allTime.total.replicaCost), "computedAt": Self.time(allTime.computedAt),
        ]
        content["agentsOnline"] = counts.agentsOnline
        content["agentsOffline"] = counts.agentsOffline
        content["agentsTotal"] = counts.agents
        content["instancesSpot"] = counts.instancesSpot
        content["instancesOnDemand"] = counts.instancesOnDemand
        content["replicasReady"] = counts.replicasReady
        content["replicasSyncing"] = counts.replicasNotReady
        // the agents that saved most: a fleet of thousands is read on the agents pages
        let top = allTime.agents.sorted { $0.money.savings > $1.money.savings }.prefix(Self.overviewAgents)
        content["perAgent"] = top.map { a -> [String: Any] in
            [
                "name": a.logicalAgentId, "agentId": a.agentId.lowercased, "saved": Self.money(a.money.savings), "percent": percent(a.money),
                "actual": Self.money(a.money.actualCost), "onDemand": Self.money(a.money.onDemandCost),
            ]
        }
        if allTime.agents.count > top.count {
            content["perAgentOf"] = ["shown": top.count, "of": allTime.agents.count]
        }
        content["hasSavings"] = !allTime.agents.isEmpty
        // the last 30 days accounted, as a chart and as the table it is drawn from
        let recent = allTime.daily.suffix(30).map {
            SavingsChart.Day(
                day: $0.day, onDemand: $0.money.onDemandCost, spent: $0.money.actualCost + $0.money.replicaCost, saved: $0.money.savings)
        }
        content["savingsChart"] = SavingsChart.svg(id: "savings-chart", days: Array(recent))
        content["savingsDays"] = recent.reversed().map { d -> [String: Any] in
            ["day": d.day, "saved": Self.money(d.saved), "spent": Self.money(d.spent), "onDemand": Self.money(d.onDemand)]
        }
        return Page(template: "overview", title: "Overview", content: content)
    }

    /// Agents shown on the overview's savings table and on one agents page.
    static let overviewAgents = 25
    static let agentsPerPage = 50

    /// One page of the client's agents in name order, after the name `after`.
    func agentsPage(_ client: UUID, after: String? = nil, alert: String?) async throws -> Page {
        var agents = try await fleet.agents(client, after: after, limit: Self.agentsPerPage + 1)
        let more = agents.count > Self.agentsPerPage
        agents = Array(agents.prefix(Self.agentsPerPage))
        let replicas = Dictionary(
            grouping: try await fleet.replicas(client, of: agents.map(\.id), activeOnly: true), by: \.agentId)
        var content: [String: Any] = [
            "hasAgents": !agents.isEmpty,
            "agents": agents.map { a in
                [
                    "id": a.id.lowercased, "name": a.logicalAgentId, "status": a.status.rawValue, "statusText": Wording.of(a.status.rawValue),
                    "online": a.status == .online,
                    "instance": a.instanceId ?? "—", "pool": a.poolId ?? "—", "mode": a.mode.map(Wording.of) ?? "—",
                    "heartbeat": Self.ago(a.lastHeartbeatAt),
                    "autoSwitch": a.autoSwitchEnabled, "autoTerminate": a.autoTerminateEnabled, "manualReplica": a.manualReplicaEnabled,
                    "replicas": (replicas[a.id] ?? []).map(replicaRow), "hasReplicas": replicas[a.id] != nil,
                ] as [String: Any]
            },
        ]
        if more, let last = agents.last {
            content["nextAfter"] = last.logicalAgentId.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
        }
        if after != nil { content["notFirst"] = true }
        return Page(template: "agents", title: "Agents", alert: alert, content: content)
    }

    func replicaRow(_ r: FleetViews.ReplicaView) -> [String: Any] {
        [
            "id": r.id.lowercased, "agentId": r.agentId.lowercased, "type": Wording.of(r.replicaType), "status": r.status,
            "statusText": Wording.of(r.status), "sync": Wording.of(r.syncStatus),
            "progress": Int(r.stateTransferProgress.rounded()), "instance": r.instanceId ?? "launching…", "pool": r.poolId ?? "—",
            "cost": Self.price(r.hourlyCost), "ready": r.isReady, "latency": r.syncLatencyMs.map { "\($0) ms" } ?? "—",
        ]
    }

    /// `draft`: a refused traffic form's text, shown again in the open form to be corrected.
    func agentPage(
        _ agent: FleetViews.AgentView, client: UUID, alert: String?, draft: (elasticIps: String, targetGroups: String, dnsRecords: String)? = nil
    ) async throws -> Page {
        let choices = try await fleet.switchChoices(for: agent)
        let replicas = try await fleet.replicas(client, of: [agent.id], activeOnly: true)
        let traffic = try await fleet.traffic(agent.id)
        let entries: [[String: Any]] =
            traffic.config.elasticIps.map { ["kind": "Elastic IP", "target": $0.allocationId] }
            + traffic.config.targetGroups.map { ["kind": "target group", "target": $0.arn + ($0.port.map { " port \($0)" } ?? "")] }
            + traffic.config.dnsRecords.map { ["kind": "DNS record", "target": "\($0.name) A (TTL \($0.ttl) s)"] }
        let form = draft ?? traffic.config.formText
        return Page(
            template: "agent", title: agent.logicalAgentId, alert: alert,
            content: [
                "trafficEntries": entries, "hasTraffic": !entries.isEmpty, "trafficAt": agent.instanceId ?? "—",
                "hasLastMove": traffic.lastMove != nil, "lastMoveTo": traffic.movedTo ?? "—", "lastMoveAt": Self.ago(traffic.movedAt),
                "lastMoveMs": traffic.lastMove.map { "\($0.movedMs) ms" } ?? "—", "lastMoveDone": traffic.lastMove?.moved ?? false,
                "lastMoveSteps": (traffic.lastMove?.steps ?? []).map {
                    ["kind": Wording.of($0.kind), "target": $0.target, "status": Wording.of($0.status), "attempts": $0.attempts]
                },
                "fenced": traffic.fencedAt.map { Self.ago($0) } ?? "not yet", "formElasticIps": form.elasticIps,
                "formTargetGroups": form.targetGroups, "formDnsRecords": form.dnsRecords, "trafficFormOpen": entries.isEmpty || draft != nil,
                "id": agent.id.lowercased, "name": agent.logicalAgentId, "status": agent.status.rawValue, "statusText": Wording.of(agent.status.rawValue),
                "instance": agent.instanceId ?? "—", "type": agent.instanceType ?? "—", "pool": agent.poolId ?? "—", "mode": agent.mode.map(Wording.of) ?? "—",
                "heartbeat": Self.ago(agent.lastHeartbeatAt), "manualReplica": agent.manualReplicaEnabled,
                "autoSwitch": agent.autoSwitchEnabled, "hasReadyReplica": replicas.contains(where: \.isReady),
                "replicas": replicas.map(replicaRow), "onDemandNow": agent.mode == "ondemand",
                "pools": choices.map { c in
                    [
                        "poolId": c.poolId, "az": c.az, "price": Self.price(c.spotPrice), "onDemand": Self.price(c.onDemandPrice),
                        "risk": c.riskScore.map { String(format: "%.0f %%", $0 * 100) } ?? "—",
                        "riskHigh": (c.riskScore ?? 0) >= 0.3, "source": c.dataSource ?? "no data", "sourceText": Wording.of(c.dataSource ?? "no data"),
                        "interpolated": c.dataSource == "interpolated", "current": c.isCurrent, "at": Self.ago(c.priceAt),
                    ] as [String: Any]
                },
            ])
    }

    func switchesPage(_ client: UUID) async throws -> Page {
        let page = try await switchPage(client, limit: 100, before: nil, agent: nil)
        let now = Date()
        let week = now.addingTimeInterval(-7 * 86_400)
        let timeline = TimelineChart.svg(id: "moves-chart", moves: try await moveTimes(client, since: week), from: week, to: now)
        func side(_ s: SwitchSide) -> [String: Any] {
            [
                "instance": s.instanceId ?? "—", "where": [s.instanceType, s.az, s.mode.map(Wording.of)].compactMap { $0 }.joined(separator: " "),
                "price": Self.price(s.spotPrice), "confidence": s.priceConfidence.map { String(format: "%.2f", $0) } ?? "—",
                "source": s.priceDataSource ?? "unknown", "sourceText": Wording.of(s.priceDataSource ?? "unknown"),
                "interpolated": s.priceDataSource == "interpolated",
            ]
        }
        return Page(
            template: "switches", title: "Switch history",
            content: [
                "hasSwitches": !page.switches.isEmpty, "movesChart": timeline,
                "switches": page.switches.map { s in
                    var row: [String: Any] = [
                        "time": Self.time(s.initiatedAt), "agent": s.logicalAgentId, "trigger": Wording.of(s.eventTrigger.rawValue), "old": side(s.old),
                        "new": side(s.new),
                        "savings": s.savingsImpact.map { String(format: "$%.4f/h", $0) } ?? "—", "savingsConfidence": s.savingsConfidence ?? "—",
                        "duration": s.totalSeconds.map { String(format: "%.1f s", $0) } ?? "—",
                    ]
                    if let reason = s.reason { row["reason"] = reason }
                    return row
                },
            ])
    }

    /// Each pool's chart over `range`, its axis fitted to the data: a pool with an hour of
    /// prices gets an hour-wide chart, not a sliver at the right edge of a week.
    func pricesPage(_ client: UUID, range: PriceChart.Range) async throws -> Page {
        var charts: [[String: Any]] = []
        for (i, pool) in try await fleet.pools(client).prefix(12).enumerated() {
            let prices = try await fleet.prices(pool, seconds: range.seconds)
            let svg = PriceChart.svg(
                id: "chart-\(i)", title: "\(pool): spot price, last \(range.words)",
                points: prices.points.map { .init(time: $0.time, price: $0.spotPrice, interpolated: $0.dataSource == "interpolated") },
                onDemand: prices.points.last?.onDemandPrice, from: max(prices.from, prices.points.first?.time ?? prices.from), to: prices.to)
            charts.append([
                "pool": pool, "svg": svg, "buckets": prices.points.count,
                "interpolatedShare": prices.interpolatedShare.map { String(format: "%.1f %%", $0 * 100) } ?? "—",
            ])
        }
        let ranges = PriceChart.Range.allCases.map { ["value": $0.rawValue, "label": $0.rawValue, "current": $0 == range] as [String: Any] }
        return Page(
            template: "prices", title: "Price history",
            content: ["charts": charts, "hasCharts": !charts.isEmpty, "ranges": ranges, "rangeWords": range.words])
    }

    func notificationsPage(_ client: UUID) async throws -> Page {
        let items = try await fleet.notifications(client, unreadOnly: false, limit: 200)
        return Page(
            template: "notifications", title: "Notifications",
            content: [
                "hasNotifications": !items.isEmpty, "unread": items.filter { !$0.isRead }.count,
                "notifications": items.map { n in
                    [
                        "id": n.id.lowercased, "severity": n.severity, "title": n.title, "message": n.message, "read": n.isRead,
                        "repeated": n.occurrences > 1, "occurrences": n.occurrences, "time": Self.time(n.lastOccurredAt),
                        "first": Self.time(n.createdAt), "delivery": n.deliveryStatus,
                    ] as [String: Any]
                },
            ])
    }
}
