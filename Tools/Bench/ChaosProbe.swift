import Foundation
import FoundationNetworking
import Synchronization

/// A relayed replica call (ingest → bus → coordinator → database) every 200 ms through the
/// run, so an outage of the coordinator's path shows as failed calls and their longest run.
final class ReplicaProbe: Sendable {
    let url: URL
    let token: String
    let tally: ChaosTally
    private let state = Mutex((ok: 0, failed: 0, longest: 0.0, failingSince: Double?.none, stopped: false))

    init(ingest: String, token: String, agent: String, tally: ChaosTally) {
        url = URL(string: "\(ingest)/api/agents/\(agent)/replicas")!
        self.token = token
        self.tally = tally
    }

    func run() async {
        var request = URLRequest(url: url)
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        while !state.withLock({ $0.stopped }) {
            let start = tally.now()
            let ok = (try? await ChaosSender.session.data(for: request)).map { ($0.1 as? HTTPURLResponse)?.statusCode == 200 } ?? false
            state.withLock { s in
                if ok {
                    s.ok += 1
                    if let since = s.failingSince { s.longest = max(s.longest, tally.now() - since) }
                    s.failingSince = nil
                } else {
                    s.failed += 1
                    if s.failingSince == nil { s.failingSince = start }
                }
            }
            try? await Task.sleep(for: .milliseconds(200))
        }
    }

    /// Ends `run` after the call in hand (at most the session's 10 s request timeout).
    func stop() { state.withLock { $0.stopped = true } }

    var figures: (Int, Int, Double) { state.withLock { ($0.ok, $0.failed, $0.longest) } }
}
