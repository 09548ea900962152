import Foundation
import SpotCloud
import Synchronization

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

    /// Requests in flight at most, each on a connection of its own (a request waiting in the
    /// client for a connection would count the client's queue as the server's answer time).
    static let connections = 1024

    /// Its own connections, and an agent's timeout: a request ingest has not answered by the
    /// time an agent gives up is a timeout. Foundation's client, not the agents' own
    /// (`HTTPClientTransport`): its waiting connections spin the client's CPU, which starves
    /// ingest into saturation on a shared machine — with the agents' client on 512 connections
    /// ingest answered the whole flood 202 (docs/benchmarks.md).
    static let session: URLSession = {
        let c = URLSessionConfiguration.ephemeral
        c.httpMaximumConnectionsPerHost = connections
        c.timeoutIntervalForRequest = HTTPClientTransport.agentTimeout
        return URLSession(configuration: c)
    }()

    func run(_ load: ChaosLoad, tally: ChaosTally, seconds: Double) async {
        let end = tally.now() + seconds
        let inFlight = Counter()
        await withTaskGroup(of: Void.self) { group in
            var owed = 0.0
            var last = tally.now()
            while last < end {
                try? await Task.sleep(for: .milliseconds(10))
                let now = tally.now()
                let rate = max(100, 2 * Double(tally.answered("202", since: now - 1)))
                // a stalled loop catches up at most one second's requests at once
                owed = min(rate, owed + rate * (now - last))
                last = now
                while owed >= 1, inFlight.value < Self.connections, let index = tally.randomAccepted() {
                    owed -= 1
                    let request = ChaosSender.request(load.messages[index], ingest: ingest, token: token)
                    inFlight.add(1)
                    group.addTask {
                        let start = tally.now()
                        let status = await ChaosSender.status(of: request, session: Self.session)
                        tally.record(.init(start: start, end: tally.now(), outcome: status == 0 ? "error" : String(status)))
                        inFlight.add(-1)
                    }
                }
                // past the cap, what is owed is not begun (the client is at its limit, not the server)
                if inFlight.value >= Self.connections { owed = 0 }
            }
        }
    }

    /// Requests in flight, shared with their tasks.
    final class Counter: Sendable {
        private let count = Mutex(0)
        var value: Int { count.withLock { $0 } }
        func add(_ n: Int) { count.withLock { $0 += n } }
    }
}

extension ChaosBench.FaultFigure {
    /// What the saturation must show: the excess refused (a 503 or 429 seen — else ingest was
    /// never saturated) and every attempt answered 202, 503 or 429 within an agent's timeout (no
    /// timeout, no reset). How long the refusals took is reported (`slowestRefusalMs`), not
    /// judged: on a machine shared with the load and the consumers it is more than the plan's
    /// second (docs/benchmarks.md).
    var overloadFailures: [String] {
        guard fault.hasPrefix("ingest saturated") else { return [] }
        var failures: [String] = []
        if (answers["503"] ?? 0) + (answers["429"] ?? 0) == 0 { failures.append("\(fault): nothing refused, so never saturated: \(answers)") }
        for (answer, count) in answers where !["202", "503", "429"].contains(answer) { failures.append("\(fault): \(count) answered \(answer)") }
        return failures
    }
}
