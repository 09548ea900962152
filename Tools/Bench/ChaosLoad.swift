import Foundation
import SEFCore
import SpotMarket
import SpotModels
import Synchronization

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The price load of the fault suite: one agent's pricing reports over 8 pools every 10 s or less,
/// with gaps, repeated readings, replica submissions that agree or disagree, and resends of
/// earlier messages under their own ids, as an agent's spool produces after a lost answer.
struct ChaosLoad: Sendable {
    struct Message: Sendable {
        var path: String
        var body: Data
        /// The submission ids its rows carry in `pricing_submissions_raw`.
        var rows: [UUID]
    }

    /// The unique messages, and the order they are sent in (indices; resends repeat one).
    var messages: [Message]
    var sends: [Int]
    var base: Date

    static let zones = ["a", "b", "c", "d"]
    static let sizes = ["large", "xlarge"]

    static func pools(_ family: String) -> [String] {
        sizes.flatMap { size in zones.map { "\(family).\(size).us-east-1\($0)" } }
    }

    /// The same prices, times and shape for every family (`seed` fixed), so two runs compare;
    /// the ids differ by family (a submission id is unique across all of SpotGuard).
    static func make(sends total: Int, family: String, agent: String, base: Date, seed: UInt64 = 20_261_202) -> ChaosLoad {
        var rng = SplitMix64(seed: seed)
        var ids = SplitMix64(seed: family.utf8.reduce(14_695_981_039_346_656_037) { ($0 ^ UInt64($1)) &* 1_099_511_628_211 })
        let pools = pools(family)
        var price = Dictionary(uniqueKeysWithValues: pools.enumerated().map { ($0.element, 0.04 + 0.002 * Double($0.offset)) })
        let uniqueTotal = total - total / 10  // a tenth of the sends are resends
        var messages: [Message] = []
        var k = 0
        while messages.count < uniqueTotal {
            let t = base.addingTimeInterval(TimeInterval(k) * step(sends: total))
            for p in pools { price[p] = max(0.005, (price[p]! * Double.random(in: 0.995...1.005, using: &rng) * 10_000).rounded() / 10_000) }
            // gaps of 10 to 40 minutes in one pool at a time, one in each 50 minutes
            let second = Int(t.timeIntervalSince(base))
            let cycle = second / 3000
            let gapPool = pools[cycle % pools.count]
            let inGap = second % 3000 >= 1000 && second % 3000 < 1000 + 600 + (cycle % 4) * 600
            let present = pools.filter { !(inGap && $0 == gapPool) }
            let reportId = UUID(using: &ids)
            let report = PricingReport(
                reportId: reportId, clientId: reportId, agentId: reportId, instanceId: nil, pools: [], onDemandPrice: nil, observedAt: t, receivedAt: t)
            let entries = present.map { #"{"id": "\#($0)", "price": \#(price[$0]!)}"# }.joined(separator: ", ")
            messages.append(
                Message(
                    path: "/api/agents/\(agent)/pricing-report",
                    body: Data(
                        #"{"report_id": "\#(reportId)", "pools": [\#(entries)], "on_demand_price": 0.096, "observed_at": "\#(Timestamp.format(t))"}"#.utf8),
                    rows: present.map { report.submissionId(for: PoolID(rawValue: $0)!) }))
            if k % 9 == 4, messages.count < uniqueTotal {  // a replica's reading: agreeing, or 2 % off
                let pool = present[Int.random(in: 0..<present.count, using: &rng)]
                let off = Bool.random(using: &rng) ? 1.0 : 1.02
                let id = UUID(using: &ids)
                let source = Bool.random(using: &rng) ? "replica-automatic" : "replica-manual"
                messages.append(
                    Message(
                        path: "/api/pricing/submit",
                        body: Data(
                            """
                            {"submission_id": "\(id)", "source_agent_id": "\(agent)", "source_instance_id": "i-0a1b2c3d4e5f60718",
                             "source_type": "\(source)", "pool_id": "\(pool)", "spot_price": \((price[pool]! * off * 10_000).rounded() / 10_000),
                             "observed_at": "\(Timestamp.format(t.addingTimeInterval(3)))"}
                            """.utf8),
                        rows: [id]))
            }
            k += 1
        }
        // resends: an earlier message again, somewhere after its first send
        var sends = Array(messages.indices)
        for _ in 0..<(total - messages.count) {
            let original = Int.random(in: 0..<messages.count, using: &rng)
            let at = Int.random(in: (original + 1)...sends.count, using: &rng)
            sends.insert(original, at: at)
        }
        return ChaosLoad(messages: messages, sends: sends, base: base)
    }

    /// Seconds between two reports: as many as spread the load over 166 hours (inside ingest's
    /// 7-day limit on a report's age), at most 240 (so every 5-minute bucket outside a gap has a
    /// report). 10,000 sends span 6.8 days; most of the load is older than the SEF's 24-hour gap
    /// scan, so only order-independent recomputation keeps every run's clean data identical.
    static func step(sends: Int) -> TimeInterval { max(1, min(240, (166 * 3600 / TimeInterval(sends)).rounded(.down))) }

    /// How many seconds of prices `sends` messages cover (at most), for choosing `base`.
    static func span(sends: Int) -> TimeInterval { TimeInterval(sends) * step(sends: sends) }
}

extension UUID {
    /// A random (version 4) UUID from a seeded generator, so a load is the same every run.
    init(using rng: inout SplitMix64) {
        var bytes = (0..<16).map { _ in UInt8.random(in: 0...255, using: &rng) }
        bytes[6] = (bytes[6] & 0x0F) | 0x40
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        self = bytes.withUnsafeBytes { UUID(uuid: $0.load(as: uuid_t.self)) }
    }
}

/// What happened to every HTTP attempt of a run, from the senders' lanes.
final class ChaosTally: Sendable {
    struct Attempt: Sendable {
        var start: Double
        var end: Double
        /// "202", another status, or "error" (no answer: refused, reset, timed out)
        var outcome: String
    }

    private struct State {
        var attempts: [Attempt] = []
        var accepted = Set<Int>()
        var resendsAccepted = 0
        var rejected = 0
        var gaveUp = 0
        var done = 0
        var fillers = 0
    }

    private let state = Mutex(State())
    let origin = ContinuousClock.now

    func now() -> Double { (ContinuousClock.now - origin) / .seconds(1) }

    func record(_ attempt: Attempt) { state.withLock { $0.attempts.append(attempt) } }

    /// - Parameter scheduled: a send of the load's order (counted in `done`), not a filler resend.
    func finish(_ index: Int, accepted: Bool, rejected: Bool, scheduled: Bool) {
        state.withLock { s in
            if scheduled { s.done += 1 } else { s.fillers += 1 }
            if accepted {
                if !s.accepted.insert(index).inserted { s.resendsAccepted += 1 }
            } else if rejected {
                s.rejected += 1
            } else {
                s.gaveUp += 1
            }
        }
    }

    /// Attempts answered `outcome` that ended at `since` or later (attempts are recorded as they end).
    func answered(_ outcome: String, since: Double) -> Int {
        state.withLock { s in
            var count = 0
            for attempt in s.attempts.reversed() {
                if attempt.end < since { break }
                if attempt.outcome == outcome { count += 1 }
            }
            return count
        }
    }

    var done: Int { state.withLock { $0.done } }
    var fillers: Int { state.withLock { $0.fillers } }
    func randomAccepted() -> Int? { state.withLock { $0.accepted.randomElement() } }
    var accepted: Set<Int> { state.withLock { $0.accepted } }
    var attempts: [Attempt] { state.withLock { $0.attempts } }
    var counts: (resendsAccepted: Int, rejected: Int, gaveUp: Int) {
        state.withLock { ($0.resendsAccepted, $0.rejected, $0.gaveUp) }
    }
}

/// Sends a load the way an agent's spool does: each message again, with its own id, after a
/// lost or refused answer (503, 429, 5xx, no answer), with backoff, until 202 or `patience`.
struct ChaosSender: Sendable {
    let ingest: String
    let token: String
    let lanes: Int
    var patience: Double = 300

    static let session: URLSession = {
        let c = URLSessionConfiguration.ephemeral
        c.httpMaximumConnectionsPerHost = 64
        c.timeoutIntervalForRequest = 10
        return URLSession(configuration: c)
    }()

    /// `open(i)` says whether the `i`-th send may go (the fault schedule holds later segments
    /// until their fault has begun), `open(nil)` whether the schedule is over. While a lane is
    /// held it resends messages already accepted, as a spool does after lost answers, so the
    /// load goes on through every fault; resends change no row.
    func send(_ load: ChaosLoad, tally: ChaosTally, open: @escaping @Sendable (Int?) async -> Bool) async {
        await withTaskGroup(of: Void.self) { group in
            for lane in 0..<lanes {
                group.addTask {
                    func fill() async {
                        if let again = tally.randomAccepted() {
                            await deliver(load.messages[again], index: again, tally: tally, scheduled: false)
                        } else {
                            try? await Task.sleep(for: .milliseconds(20))
                        }
                    }
                    for position in stride(from: lane, to: load.sends.count, by: lanes) {
                        while await !open(position) { await fill() }
                        let index = load.sends[position]
                        await deliver(load.messages[index], index: index, tally: tally, scheduled: true)
                    }
                    while await !open(nil) { await fill() }
                }
            }
        }
    }

    static func request(_ message: ChaosLoad.Message, ingest: String, token: String) -> URLRequest {
        var request = URLRequest(url: URL(string: ingest + message.path)!)
        request.httpMethod = "POST"
        request.httpBody = message.body
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        return request
    }

    /// The answer's status; 0 for none (refused, reset, timed out).
    static func status(of request: URLRequest, session: URLSession) async -> Int {
        guard let (_, response) = try? await session.data(for: request) else { return 0 }
        return (response as? HTTPURLResponse)?.statusCode ?? 0
    }

    private func deliver(_ message: ChaosLoad.Message, index: Int, tally: ChaosTally, scheduled: Bool) async {
        let request = Self.request(message, ingest: ingest, token: token)
        let first = tally.now()
        var backoff = 0.05
        while true {
            let start = tally.now()
            let status = await Self.status(of: request, session: Self.session)
            tally.record(.init(start: start, end: tally.now(), outcome: status == 0 ? "error" : String(status)))
            if status == 202 { return tally.finish(index, accepted: true, rejected: false, scheduled: scheduled) }
            if (400..<500).contains(status) && status != 429 && status != 408 {
                return tally.finish(index, accepted: false, rejected: true, scheduled: scheduled)
            }
            if tally.now() - first > patience { return tally.finish(index, accepted: false, rejected: false, scheduled: scheduled) }
            try? await Task.sleep(for: .seconds(backoff * Double.random(in: 0.5...1.0)))
            backoff = min(2, backoff * 2)
        }
    }
}
