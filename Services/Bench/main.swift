import Foundation
import Logging
import SpotBus
import SpotModels
import SpotRuntime
import SpotStore

/// Raw rates of the broker and the database this machine gives, measured the way SpotGuard
/// uses them, so `deploy/bench.sh` can print ingest throughput as a ratio of each.
///
///     spotguard-bench publish MESSAGES WINDOW   confirmed persistent publishes per second
///     spotguard-bench copy ROWS                 COPY rows per second into a price-shaped table
await ServiceCommand.main(
    executable: "spotguard-bench",
    serve: { _, _, _ in throw ConfigurationError(variable: "command", problem: "must be publish or copy") },
    extra: [
        "publish": (
            usage: "MESSAGES WINDOW: confirmed publishes per second with WINDOW in flight",
            run: { args, env, logger in
                let messages = args.first.flatMap(Int.init) ?? 20_000
                let window = args.dropFirst().first.flatMap(Int.init) ?? 200
                let queue = "spotguard.bench.\(UUID().uuidString.prefix(8).lowercased())"
                let publisher = BusPublisher(
                    endpoint: try env.amqp(), topology: .standard.adding(.init(name: queue, bindings: ["bench.#"])), logger: logger)
                publisher.start()
                while !publisher.isConnected { try await Task.sleep(for: .milliseconds(20)) }
                // a body the size of a three-pool pricing report envelope
                let body = Array(String(repeating: "x", count: 520).utf8)
                let started = ContinuousClock.now
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for lane in 0..<window {
                        group.addTask {
                            var i = lane
                            while i < messages {
                                try await publisher.publish(OutgoingMessage(routingKey: "bench.price", body: body, messageId: "\(queue)-\(i)"))
                                i += window
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                let seconds = (ContinuousClock.now - started).seconds
                print(String(format: "publish_confirmed_per_second=%.0f messages=%d window=%d", Double(messages) / seconds, messages, window))
                try await publisher.deleteQueue(queue)
                await publisher.shutdown()
            }
        ),
        "copy": (
            usage: "ROWS: COPY rows per second into a table shaped like spot_price_snapshots",
            run: { args, env, logger in
                let rows = args.first.flatMap(Int.init) ?? 200_000
                try await ServiceCommand.withStore(env: env, applicationName: "spotguard-bench", logger: logger) { store in
                    let table = "bench_copy_\(UInt32.random(in: 0...UInt32.max))"
                    try await store.withConnection {
                        try $0.executeScript(
                            """
                            CREATE TABLE \(table) (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, pool_id text NOT NULL,
                                price numeric(12,6) NOT NULL, captured_at timestamptz NOT NULL, report_id uuid NOT NULL,
                                UNIQUE (report_id, pool_id))
                            """)
                    }
                    let start = Date()
                    var batch: [[(any PGEncodable)?]] = []
                    batch.reserveCapacity(rows)
                    for i in 0..<rows {
                        batch.append(["t3.medium.us-east-1\(["a", "b", "c"][i % 3])", 0.03 + Double(i % 100) / 10_000, start, UUID()])
                    }
                    let all = batch
                    let started = ContinuousClock.now
                    let written = try await store.withConnection {
                        try $0.copy(into: table, columns: ["pool_id", "price", "captured_at", "report_id"], rows: all)
                    }
                    let seconds = (ContinuousClock.now - started).seconds
                    print(String(format: "copy_rows_per_second=%.0f rows=%d", Double(written) / seconds, written))
                    try await store.withConnection { try $0.executeScript("DROP TABLE \(table)") }
                }
            }
        ),
    ])

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
