import ArgumentParser
import Foundation
import Logging
import SpotBus
import SpotModels
import SpotRuntime
import ToolSupport

/// `spotguard-bench poison COUNT`: an integrator gone wrong. Publishes COUNT invalid messages
/// on the SEF's routing keys, 200 in flight, each confirmed: a third not JSON, a third JSON of
/// the wrong shape, a third a well-formed envelope of a schema version nobody reads. The fault
/// suite's `broker` run starts it as a process of its own while the valid load runs, without
/// the test suite's bus tap (these messages break the contract on purpose).
struct Poison: ServiceSubcommand {
    static let configuration = CommandConfiguration(abstract: "Publish COUNT invalid messages to the SEF's routing keys (the fault suite's poison storm).")
    @Argument(help: "Invalid messages to publish.") var count = 10_000

    /// The environment `poison` runs in: the caller's without the bus tap.
    static func environment(_ values: [String: String]) -> [String: String] {
        values.filter { $0.key != "SPOTGUARD_BUS_TAP_DIR" && $0.key != "SPOTGUARD_TEST_BUS_TAP_DIR" }
    }

    static func body(_ k: Int) -> (routingKey: String, body: [UInt8]) {
        let key = k % 2 == 0 ? RoutingKey.pricingSubmitted : RoutingKey.pricingReported
        let occurred = "2026-01-01T00:00:00Z"
        let text: String =
            switch k % 3 {
            case 0: "poison \(k): not JSON {"
            case 1: #"{"id": "\#(UUID().uuidString.lowercased())", "type": "\#(key)", "payload": [\#(k)]}"#
            default:
                #"{"id": "\#(UUID().uuidString.lowercased())", "type": "\#(key)", "schema_version": 99, "occurred_at": "\#(occurred)", "producer": "poison", "payload": {}}"#
            }
        return (key, Array(text.utf8))
    }

    func run(env: EnvironmentReader, logger: Logger) async throws {
        let count = self.count
        let publisher = BusPublisher(endpoint: try env.amqp(), logger: logger)
        publisher.start()
        for _ in 0..<500 where !publisher.isConnected { try await Task.sleep(for: .milliseconds(20)) }
        let started = ContinuousClock.now
        let window = 200
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<window {
                group.addTask {
                    for k in stride(from: lane, to: count, by: window) {
                        let (key, body) = Self.body(k)
                        // the broker may be down mid-storm: an unconfirmed publish is sent again
                        while true {
                            do {
                                try await publisher.publish(OutgoingMessage(routingKey: key, body: body, messageId: "poison-\(k)"))
                                break
                            } catch {
                                try await Task.sleep(for: .milliseconds(200))
                            }
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        print(String(format: "poison_published=%d seconds=%.2f", count, (ContinuousClock.now - started).seconds))
        await publisher.shutdown()
    }
}
