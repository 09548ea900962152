import Foundation
import SEFCore
import SpotMarket
import SpotModels
import SpotStore

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Replays a price-history CSV (`timestamp,region,az,instance_type,...,spot_price,...`)
/// through the real ingest → bus → SEF path, with outages cut out of it, and scores the
/// SEF's fills against the prices that were cut.
///
/// Each row of the file becomes one 5-minute bucket, in file order, ending a few minutes ago
/// (the hourly files thus play 12 times faster than they happened, so every bucket carries a
/// real hourly move and the fills are tested on real price dynamics). Every time step sends
/// one pricing report per instance type (the pools of its zones, like an agent), minus the
/// pools in an outage; a share of the kept points is sent again as replica submissions.
enum Replay {
    struct Point: Codable {
        var pool: String
        var bucket: Int64
        var price: Double
    }

    struct Truth: Codable {
        var dropped: [Point]
        var sentPoints: Int
        var pools: [String]
    }

    /// Outage lengths in buckets, drawn so every fill method gets work: a 10-minute gap (one
    /// bucket) 40 %, 15–30 minutes 30 %, 35 minutes – 2.5 hours 25 %, over 4 hours 5 %.
    static func outageLength(_ rng: inout SplitMix64) -> Int {
        switch Double.random(in: 0..<1, using: &rng) {
        case ..<0.40: 1
        case ..<0.70: Int.random(in: 2...5, using: &rng)
        case ..<0.95: Int.random(in: 6...30, using: &rng)
        default: Int.random(in: 48...60, using: &rng)
        }
    }

    static func load(csv path: String, rows limit: Int?) throws -> (steps: [String], prices: [String: [String: Double]]) {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var header: [String] = []
        var prices: [String: [String: Double]] = [:]  // timestamp -> pool -> price
        for line in text.split(whereSeparator: \.isNewline) {
            let f = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            if header.isEmpty {
                header = f
                continue
            }
            guard let ti = header.firstIndex(of: "timestamp"), let ai = header.firstIndex(of: "az"),
                let ii = header.firstIndex(of: "instance_type"), let pi = header.firstIndex(of: "spot_price"),
                f.count == header.count, let price = Double(f[pi]), price > 0,
                let pool = PoolID(rawValue: "\(f[ii]).\(f[ai])")
            else { continue }
            prices[f[ti], default: [:]][pool.rawValue] = price
        }
        var steps = prices.keys.sorted()
        if let limit { steps = Array(steps.prefix(limit)) }
        return (steps, prices)
    }

    static func send(
        csv: String, rows: Int?, dropShare: Double, replicaShare: Double, seed: UInt64, ingest: String, token: String, agent: String,
        truthFile: String
    ) async throws {
        let (steps, prices) = try load(csv: csv, rows: rows)
        let pools = Set(prices.values.flatMap(\.keys)).sorted()
        var rng = SplitMix64(seed: seed)
        // outages per pool: start with a probability that gives the wanted dropped share
        let meanLength = 0.40 * 1 + 0.30 * 3.5 + 0.25 * 18 + 0.05 * 54
        let startChance = dropShare / (meanLength * (1 - dropShare))
        var dropped: Set<String> = []  // "pool|step"
        for pool in pools {
            var k = 1  // the first bucket is always measured, so every outage has a left edge
            while k < steps.count - 1 {
                if Double.random(in: 0..<1, using: &rng) < startChance {
                    let n = outageLength(&rng)
                    for j in k..<min(k + n, steps.count - 1) { dropped.insert("\(pool)|\(j)") }
                    k += n + 1
                } else {
                    k += 1
                }
            }
        }
        let now = Date().timeIntervalSince1970
        let firstBucket = Int64((now - 600) / 300) * 300 - Int64(steps.count - 1) * 300
        var truth = Truth(dropped: [], sentPoints: 0, pools: pools)
        var requests: [(String, String)] = []  // path, body
        for (k, step) in steps.enumerated() {
            let bucket = firstBucket + Int64(k) * 300
            let observed = Timestamp.format(Date(timeIntervalSince1970: TimeInterval(bucket + 60)))
            let byType = Dictionary(grouping: prices[step] ?? [:], by: { PoolID(rawValue: $0.key)!.instanceType.rawValue })
            for (_, entries) in byType.sorted(by: { $0.key < $1.key }) {
                var kept: [String] = []
                for (pool, price) in entries.sorted(by: { $0.key < $1.key }) {
                    if dropped.contains("\(pool)|\(k)") {
                        truth.dropped.append(Point(pool: pool, bucket: bucket, price: price))
                        continue
                    }
                    kept.append(#"{"id": "\#(pool)", "price": \#(price)}"#)
                    truth.sentPoints += 1
                    if Double.random(in: 0..<1, using: &rng) < replicaShare {
                        let replicaObserved = Timestamp.format(Date(timeIntervalSince1970: TimeInterval(bucket + 90)))
                        requests.append(
                            (
                                "/api/pricing/submit",
                                #"{"submission_id": "\#(UUID())", "source_agent_id": "\#(agent)", "source_type": "replica-automatic", "pool_id": "\#(pool)", "spot_price": \#(price), "observed_at": "\#(replicaObserved)"}"#
                            ))
                        truth.sentPoints += 1
                    }
                }
                guard !kept.isEmpty else { continue }
                requests.append(
                    (
                        "/api/agents/\(agent)/pricing-report",
                        #"{"report_id": "\#(UUID())", "pools": [\#(kept.joined(separator: ", "))], "observed_at": "\#(observed)"}"#
                    ))
            }
        }
        // eight senders in parallel, each in order; retried on 503 like an agent would
        let lanes = 8
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<lanes {
                let mine = stride(from: lane, to: requests.count, by: lanes).map { requests[$0] }
                group.addTask {
                    for (path, body) in mine { try await post(ingest + path, token: token, body: body) }
                }
            }
            try await group.waitForAll()
        }
        try JSONEncoder().encode(truth).write(to: URL(fileURLWithPath: truthFile))
        print("replay_sent requests=\(requests.count) points=\(truth.sentPoints) dropped=\(truth.dropped.count) pools=\(pools.count) buckets=\(steps.count)")
    }

    static func post(_ url: String, token: String, body: String) async throws {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = "POST"
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = Data(body.utf8)
        for attempt in 1...20 {
            let (data, response) = try await URLSession.shared.data(for: request)
            let status = (response as? HTTPURLResponse)?.statusCode ?? 0
            if status == 202 { return }
            if status != 503 || attempt == 20 {
                throw ReplayError(message: "POST \(url) answered \(status): \(String(decoding: data, as: UTF8.self).prefix(300))")
            }
            try await Task.sleep(for: .milliseconds(100 * attempt))
        }
    }

    struct ReplayError: Error, CustomStringConvertible { var message: String; var description: String { message } }

    /// Waits until the SEF committed every sent point, then prints nothing (the caller runs
    /// the gap scan next).
    static func waitCommitted(_ store: PostgresStore, truthFile: String) async throws {
        let truth = try JSONDecoder().decode(Truth.self, from: Data(contentsOf: URL(fileURLWithPath: truthFile)))
        let deadline = ContinuousClock.now + .seconds(600)
        while ContinuousClock.now < deadline {
            let n = try await store.withConnection { conn in
                try conn.query("SELECT count(*) FROM pricing_submissions_raw WHERE pool_id = ANY($1::text[])", [PGArray(truth.pools)])
                    .first?.decode(Int.self, at: 0) ?? 0
            }
            if n >= truth.sentPoints { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw ReplayError(message: "the SEF did not commit every point within 10 minutes")
    }

    struct Filled: Sendable { var method: String; var price: Double; var before: Double; var after: Double; var start: Int64; var end: Int64 }

    /// Mean absolute percentage error of the fills against the dropped true prices, per
    /// method, beside plain linear interpolation over the same buckets.
    static func score(_ store: PostgresStore, truthFile: String) async throws {
        let truth = try JSONDecoder().decode(Truth.self, from: Data(contentsOf: URL(fileURLWithPath: truthFile)))
        let (fills, totals) = try await store.withConnection { conn in
            var fills: [String: Filled] = [:]
            for row in try conn.query(
                """
                SELECT pool_id, extract(epoch FROM time_bucket)::bigint, interpolation_method, interpolated_price, price_before,
                       price_after, extract(epoch FROM gap_start)::bigint, extract(epoch FROM gap_end)::bigint
                  FROM pricing_snapshots_interpolated WHERE pool_id = ANY($1::text[])
                """, [PGArray(truth.pools)])
            {
                fills["\(try row.decode(String.self, at: 0))|\(try row.decode(Int64.self, at: 1))"] = Filled(
                    method: try row.decode(String.self, at: 2), price: try row.decode(Double.self, at: 3),
                    before: try row.decode(Double.self, at: 4), after: try row.decode(Double.self, at: 5),
                    start: try row.decode(Int64.self, at: 6), end: try row.decode(Int64.self, at: 7))
            }
            let counts = try conn.query(
                "SELECT count(*), count(*) FILTER (WHERE data_source = 'interpolated') FROM pricing_snapshots_clean WHERE pool_id = ANY($1::text[])",
                [PGArray(truth.pools)])
            return (fills, (clean: try counts[0].decode(Int.self, at: 0), interpolated: try counts[0].decode(Int.self, at: 1)))
        }
        var errors: [String: [Double]] = [:]
        var linearErrors: [String: [Double]] = [:]
        var unfilled = 0
        for point in truth.dropped {
            guard let f = fills["\(point.pool)|\(point.bucket)"] else {
                unfilled += 1
                continue
            }
            errors[f.method, default: []].append(abs(f.price - point.price) / point.price)
            let linear = f.before + (f.after - f.before) * Double(point.bucket - f.start) / Double(f.end - f.start)
            linearErrors[f.method, default: []].append(abs(linear - point.price) / point.price)
        }
        func mape(_ v: [Double]) -> String { v.isEmpty ? "-" : String(format: "%.2f %%", 100 * v.reduce(0, +) / Double(v.count)) }
        func row(_ cells: [String]) -> String {
            zip(cells, [18, 10, 12, 24]).map { c, w in
                c.count >= w ? c : (c == cells[0] ? c.padding(toLength: w, withPad: " ", startingAt: 0) : String(repeating: " ", count: w - c.count) + c)
            }
            .joined(separator: " ")
        }
        print(row(["method", "buckets", "MAPE", "linear, same buckets"]))
        for method in InterpolationMethod.allCases.map(\.rawValue) {
            let e = errors[method] ?? []
            print(row([method, String(e.count), mape(e), mape(linearErrors[method] ?? [])]))
        }
        print(row(["not filled", String(unfilled), "", ""]))
        print(
            String(
                format: "dropped points: %d of %d (%.1f %%); interpolated share of clean rows: %.1f %% (%d of %d)",
                truth.dropped.count, truth.dropped.count + truth.sentPoints, 100 * Double(truth.dropped.count) / Double(truth.dropped.count + truth.sentPoints),
                100 * Double(totals.interpolated) / Double(max(1, totals.clean)), totals.interpolated, totals.clean))
    }
}
