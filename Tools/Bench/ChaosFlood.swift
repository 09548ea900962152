import Foundation

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Ingest saturated (reliability plan L1, at 2x saturation): for a while, requests begun in an open loop —
/// whatever is still in flight — at twice the rate ingest answered 202 in the second before (at
/// least 100 a second), each a resend of a message already accepted (no row changes) and none
/// retried, as a fleet-wide event makes every agent report at once. Ingest's admission limit
/// must refuse the excess (503 `overloaded`), never let it queue into a timeout.
struct ChaosFlood: Sendable {
    let ingest: String
    let token: String

    /// Its own connections, as many as the flood needs: a client-side queue would hide the
    /// server's answer times.
    static let session: URLSession = {
        let c = URLSessionConfiguration.ephemeral
        c.httpMaximumConnectionsPerHost = 1024
        c.timeoutIntervalForRequest = 10
        return URLSession(configuration: c)
    }()

    func run(_ load: ChaosLoad, tally: ChaosTally, seconds: Double) async {
        let end = tally.now() + seconds
        await withTaskGroup(of: Void.self) { group in
            var owed = 0.0
            var last = tally.now()
            while last < end {
                try? await Task.sleep(for: .milliseconds(10))
                let now = tally.now()
                owed += max(100, 2 * Double(tally.answered("202", since: now - 1))) * (now - last)
                last = now
                while owed >= 1, let index = tally.randomAccepted() {
                    owed -= 1
                    let request = ChaosSender.request(load.messages[index], ingest: ingest, token: token)
                    group.addTask {
                        let start = tally.now()
                        let status = await ChaosSender.status(of: request, session: Self.session)
                        tally.record(.init(start: start, end: tally.now(), outcome: status == 0 ? "error" : String(status)))
                    }
                }
            }
        }
    }
}

extension ChaosBench.FaultFigure {
    /// What the saturation must show: the excess refused (a 503 or 429 seen — else ingest was
    /// never saturated) and every attempt answered 202, 503 or 429 (no timeout, no reset). How
    /// long the refusals took is reported (`slowestRefusalMs`), not judged: on a machine shared
    /// with the load and the consumers it is more than the plan's second (docs/benchmarks.md).
    var overloadFailures: [String] {
        guard fault.hasPrefix("ingest saturated") else { return [] }
        var failures: [String] = []
        if (answers["503"] ?? 0) + (answers["429"] ?? 0) == 0 { failures.append("\(fault): nothing refused, so never saturated: \(answers)") }
        for (answer, count) in answers where !["202", "503", "429"].contains(answer) { failures.append("\(fault): \(count) answered \(answer)") }
        return failures
    }
}
