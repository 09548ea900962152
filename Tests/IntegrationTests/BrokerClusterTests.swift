import Foundation
import SpotBus
import SpotModels
import SpotStore
import Synchronization
import Testing

extension IntegrationTests {
    /// The broker as three RabbitMQ nodes in one cluster (quorum queues with a member on each):
    /// the node that leads the SEF's queue is killed (SIGKILL) while agents report through
    /// ingest, and nothing is lost or doubled. The short form of the `ha` fault run.
    @Suite struct BrokerClusterTests {
        @Test func losingTheNodeThatLeadsTheSEFQueueLosesNothing() async throws {
            let cluster = try await TestStack.stackOutput("broker-cluster").split(separator: "\n").last.map(String.init) ?? ""
            #expect(AMQPURL.nodes(cluster).count == 3, "three nodes: \(cluster)")
            // the queues exist (a connection declares them), and the node leading the SEF's
            // queue comes first in the URL: every connection goes to the node that dies
            try await withPublisher(topology: .standard) { _ in }
            let leader = try await TestStack.stackOutput("broker-leader", ["spotguard.sef"])
            let url = AMQPURL.leading(cluster, with: (Int(leader) ?? 1) - 1)
            let killedNode = Slot<String>()
            do {
                let store = try await TestStack.store()
                let environment = ["SPOTGUARD_AMQP_URL": url]
                let ingest = try await ServiceProcess.start("spotguard-ingest", portVariable: "SPOTGUARD_INGEST_PORT", environment: environment)
                try await ServiceProcess.with(ingest) { ingest in
                    let sef = try await ServiceProcess.start("spotguard-sef", portVariable: "SPOTGUARD_SEF_PORT", environment: environment)
                    try await ServiceProcess.with(sef) { _ in
                        let fleet = try await PriceFleet.make(ingest)
                        let reports = 800
                        let start = Date().addingTimeInterval(-Double(reports) * 30 - 600)
                        let refused = Counter()
                        let accepted = Counter()
                        let firstAcceptAfterKill = Stamp()
                        let killedAt = Stamp()
                        // four agents' worth of reports at once; a refused one (503: the publish is
                        // in doubt or the broker unreachable) is sent again with its id, as the agent's spool does
                        let deadline = ContinuousClock.now + .seconds(180)
                        try await withThrowingTaskGroup(of: Void.self) { group in
                            for lane in 0..<4 {
                                group.addTask {
                                    for i in stride(from: lane, to: reports, by: 4) {
                                        let id = UUID(uuidString: String(format: "00000000-0000-4000-8000-%012d", i))!
                                        while true {
                                            let status = (try? await fleet.report([("a", 0.03), ("b", 0.031)], at: start + Double(i) * 30, id: id)) ?? -1
                                            if status == 202 {
                                                if killedAt.isSet { firstAcceptAfterKill.setOnce() }
                                                _ = accepted.increment()
                                                break
                                            }
                                            _ = refused.increment()
                                            try #require(ContinuousClock.now < deadline, "report \(i) still refused after 3 minutes (last status \(status))")
                                            try await Task.sleep(for: .milliseconds(100))
                                        }
                                        // about 100 reports a second in all, so the load outlasts the fault
                                        try await Task.sleep(for: .milliseconds(40))
                                    }
                                }
                            }
                            group.addTask {
                                _ = await TestStack.eventually(timeout: .seconds(60)) { accepted.current >= reports / 4 }
                                killedNode.set(leader)
                                // returns once the node's VM is gone
                                try await TestStack.stack("broker-node-kill", leader)
                                killedAt.setOnce()
                            }
                            try await group.waitForAll()
                        }
                        let rows = "SELECT count(*) FROM pricing_submissions_raw WHERE source_agent_id = $1::uuid"
                        let committed = await TestStack.eventually(timeout: .seconds(60)) {
                            (try? await SEFQuery.count(store, rows, [fleet.agent])) == reports * 2
                        }
                        let count = try await SEFQuery.count(store, rows, [fleet.agent])
                        #expect(committed, "every accepted price stored once: \(count) rows of \(reports * 2)")
                        let distinct = try await SEFQuery.count(
                            store, "SELECT count(DISTINCT (pool_id, observed_at)) FROM pricing_submissions_raw WHERE source_agent_id = $1::uuid", [fleet.agent])
                        #expect(distinct == count, "nothing doubled")
                        let killed = killedNode.value
                        #expect(killed != nil, "a node was killed mid-load")
                        print(
                            "broker node \(killed ?? "-") killed (SIGKILL) leading spotguard.sef: \(reports) reports, \(refused.current) refusals retried, "
                                + "first 202 after the kill in \(String(format: "%.2f", firstAcceptAfterKill.seconds(since: killedAt))) s, \(count) rows")
                    }
                }
                await store.shutdown()
            } catch {
                if let killed = killedNode.value { try? await TestStack.stack("broker-node-start", killed) }
                try? await TestStack.stack("broker-cluster-stop")
                throw error
            }
            if let killed = killedNode.value { try await TestStack.stack("broker-node-start", killed) }
            try await TestStack.stack("broker-cluster-stop")
        }
    }
}

/// Counting the nodes of an AMQP URL without the bus module's parser (the test checks what
/// the stack wrote).
enum AMQPURL {
    static func nodes(_ url: String) -> [String] {
        guard let at = url.lastIndex(of: "@"), let slash = url[at...].firstIndex(of: "/") else { return [] }
        return url[url.index(after: at)..<slash].split(separator: ",").map(String.init)
    }

    /// The same URL with node `index` first.
    static func leading(_ url: String, with index: Int) -> String {
        var nodes = nodes(url)
        guard nodes.indices.contains(index), let at = url.lastIndex(of: "@"), let slash = url[at...].firstIndex(of: "/") else { return url }
        nodes.insert(nodes.remove(at: index), at: 0)
        return String(url[...at]) + nodes.joined(separator: ",") + String(url[slash...])
    }
}

/// A value set by one task, read by others.
final class Slot<T: Sendable>: Sendable {
    private let held = Mutex<T?>(nil)
    var value: T? { held.withLock { $0 } }
    func set(_ v: T) { held.withLock { $0 = v } }
}

/// A moment set once, read from any task.
final class Stamp: Sendable {
    private let at = Mutex<ContinuousClock.Instant?>(nil)
    var isSet: Bool { at.withLock { $0 != nil } }
    func setOnce() { at.withLock { $0 = $0 ?? .now } }
    func seconds(since other: Stamp) -> Double {
        guard let a = at.withLock({ $0 }), let b = other.at.withLock({ $0 }) else { return -1 }
        let d = a - b
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
