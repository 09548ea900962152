import Foundation
import Testing

extension IntegrationTests {
    /// What a service shows an operator's tools: its log as JSON lines, and Prometheus series
    /// under Prometheus's naming conventions.
    @Suite struct ObservabilityTests {
        /// `SPOTGUARD_LOG_FORMAT=json`: every line a service writes is one JSON object, and each
        /// HTTP request is one `info` line once answered, with its status, its time and its id.
        @Test func jsonLogsAreOneObjectALineWithAnAccessLine() async throws {
            let output = FileManager.default.temporaryDirectory.appendingPathComponent("json-log-\(UUID()).txt").path
            defer { try? FileManager.default.removeItem(atPath: output) }
            let ingest = try await ServiceProcess.start(
                "spotguard-ingest", portVariable: "SPOTGUARD_INGEST_PORT", environment: ["SPOTGUARD_LOG_FORMAT": "json", "SPOTGUARD_LOG_LEVEL": "info"],
                output: output)
            try await ServiceProcess.with(ingest) { ingest in
                let live = try await ingest.send("GET", "/health/live")
                // a refusal is logged with the status the client got, and the query is left out
                let refused = try await ingest.send("GET", "/api/agents/x/pending-commands?token=secret%22quoted")
                #expect(live.status == 200 && refused.status == 401, "\(live.status) \(refused.status)")
            }
            let lines = try String(contentsOfFile: output, encoding: .utf8).split(separator: "\n")
            #expect(lines.count >= 3, "\(lines)")
            let objects = lines.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
            #expect(objects.count == lines.count, "lines that are not one JSON object: \(lines.filter { !$0.hasPrefix("{") })")
            #expect(objects.allSatisfy { $0["time"] is String && $0["level"] is String && $0["logger"] is String && $0["message"] is String })
            let requests = objects.filter { $0["message"] as? String == "request" }
            let live = requests.first { $0["http.path"] as? String == "/health/live" }
            #expect(live?["http.method"] as? String == "GET" && live?["http.status"] as? String == "200" && live?["level"] as? String == "info", "\(requests)")
            #expect((live?["hb.request.id"] as? String)?.isEmpty == false, "\(live ?? [:])")
            #expect(Double(live?["http.duration_ms"] as? String ?? "") != nil, "\(live ?? [:])")
            let refused = requests.first { ($0["http.path"] as? String)?.hasSuffix("/pending-commands") == true }
            #expect(refused?["http.status"] as? String == "401", "\(requests)")
            #expect(!lines.contains { $0.contains("secret") }, "the query stays out of the log")
        }

        /// Request series named as Prometheus names things (`_total`, `_seconds`), by route
        /// pattern rather than path, and `spotguard_build_info` naming the revision.
        @Test func metricsFollowPrometheusConventions() async throws {
            try await ServiceProcess.withIngest { ingest in
                _ = try await ingest.send("GET", "/health/live")
                _ = try await ingest.send("GET", "/api/agents/7f0c5e2a-0000-4000-8000-000000000001/pending-commands")
                let text = String(decoding: try await ingest.send("GET", "/metrics").body, as: UTF8.self)
                let lines = text.split(separator: "\n").filter { !$0.hasPrefix("#") }
                func series(_ name: String, _ labels: [String]) -> [Substring] {
                    lines.filter { $0.hasPrefix(name + "{") && labels.allSatisfy($0.contains) }
                }
                #expect(!series("spotguard_http_requests_total", [#"route="/health/live""#, #"status="200""#, #"method="GET""#]).isEmpty, "\(lines)")
                #expect(
                    !series("spotguard_http_requests_total", [#"route="/api/agents/{"#, #"}/pending-commands""#, #"status="401""#]).isEmpty,
                    "a route's pattern, not its path: \(lines.filter { $0.contains("pending-commands") })")
                #expect(!lines.contains { $0.contains("7f0c5e2a") }, "no id in a series")
                #expect(!series("spotguard_http_request_duration_seconds_bucket", [#"route="/health/live""#]).isEmpty)
                #expect(
                    lines.contains { $0.hasPrefix("spotguard_build_info{") && $0.contains("revision=") && ($0.hasSuffix(" 1") || $0.hasSuffix(" 1.0")) },
                    "\(lines)")
                let foreign = lines.filter { $0.hasPrefix("hb_") || $0.hasPrefix("http_server_") }
                #expect(foreign.isEmpty, "Hummingbird's own names: \(foreign)")
            }
        }

        /// deploy/grafana's dashboard asks only for series the services record: every metric a
        /// query names (a histogram's `_bucket`, `_sum` and `_count` by its own name) is a label
        /// some `Counter`, `Timer`, `Gauge` or `Meter` in the services' code is made with.
        @Test func theGrafanaDashboardNamesOnlyMetricsTheServicesRecord() throws {
            let root = TestStack.repoRoot
            let dashboard = try #require(
                try JSONSerialization.jsonObject(with: Data(contentsOf: root.appendingPathComponent("deploy/grafana/spotguard-services.json")))
                    as? [String: Any])
            let panels = try #require(dashboard["panels"] as? [[String: Any]])
            let queries = panels.flatMap { ($0["targets"] as? [[String: Any]] ?? []).compactMap { $0["expr"] as? String } }
            #expect(panels.count >= 10 && queries.count >= panels.count, "\(panels.count) panels, \(queries.count) queries")
            var recorded: Set<String> = []
            for directory in ["Shared", "Services"] {
                let base = root.appendingPathComponent(directory)
                for case let file as String in FileManager.default.enumerator(atPath: base.path) ?? .init() where file.hasSuffix(".swift") {
                    let text = try String(contentsOf: base.appendingPathComponent(file), encoding: .utf8)
                    recorded.formUnion(text.matches(of: /label:\s*"(spotguard_[a-z0-9_]+)"/).map { String($0.1) })
                }
            }
            #expect(recorded.contains("spotguard_http_requests_total") && recorded.contains("spotguard_sef_points_total"), "\(recorded.sorted())")
            var unknown: [String] = []
            for query in queries {
                for name in query.matches(of: /spotguard_[a-z0-9_]+/).map({ String($0.0) }) {
                    let metric = name.replacing(/_(bucket|sum|count)$/, with: "")
                    if !recorded.contains(name) && !recorded.contains(metric) { unknown.append(name) }
                }
            }
            #expect(unknown.isEmpty, "queried but never recorded: \(unknown)")
        }
    }
}
