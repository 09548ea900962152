import Foundation
import SpotBus
import SpotModels
import SpotRuntime
import SpotStore
import Testing

extension IntegrationTests {
    /// Messages published straight onto the bus (by an integrator, not through ingest) meet the
    /// same rules at the consumer: one that breaks a domain rule is dead-lettered at its first
    /// delivery with the path and the rule, never by a database CHECK after retries, and the
    /// valid messages beside it are committed.
    @Suite struct BusEdgeTests {
        @Test func aPriceTheDomainRefusesIsDeadLetteredAtOnceWithItsPath() async throws {
            let admin = try TestStack.env.require("SPOTGUARD_ADMIN_TOKEN")
            let store = try await TestStack.store()
            try await ServiceProcess.withIngest { ingest in
                let created = try await ingest.send("POST", "/api/admin/clients", token: admin, json: #"{"name": "bus edge"}"#)
                let token = try #require(created.json["token"] as? String)
                let client = try #require((created.json["client_id"] as? String).flatMap(UUID.init(uuidString:)))
                let registered = try await ingest.send(
                    "POST", "/api/agents/register", token: token, json: #"{"logical_agent_id": "\#(TestStack.uniqueName("edge"))"}"#)
                let agent = try #require((registered.json["agent_id"] as? String).flatMap(UUID.init(uuidString:)))
                func report(_ price: Double) -> Envelope<PricingReported> {
                    let now = Date()
                    let r = PricingReport(
                        reportId: UUID(), clientId: client, agentId: agent, instanceId: nil,
                        pools: [PoolPrice(poolId: PoolID(rawValue: "m5.large.us-east-1a")!, price: price)], onDemandPrice: 0.096, observedAt: now,
                        receivedAt: now)
                    return Envelope(id: r.reportId, type: RoutingKey.pricingReported, producer: "integrator", payload: .report(r))
                }
                let (valid, negative, huge) = (report(0.031), report(-0.031), report(1e308))
                try await withSEF {
                    try await withPublisher(topology: .standard) { publisher in
                        for envelope in [negative, valid, huge] { try await publisher.publish(envelope) }
                    }
                    let ids = Set([negative.id, huge.id].map { $0.uuidString.lowercased() })
                    var dead: [DeadLetters.Letter] = []
                    #expect(
                        await TestStack.eventually(timeout: .seconds(20)) {
                            dead = ((try? await DeadLetters.list(endpoint: try TestStack.amqp, logger: TestStack.logger)) ?? [])
                                .filter { $0.messageId.map { ids.contains($0.lowercased()) } ?? false }
                            return dead.count == 2
                        }, "both invalid reports dead-lettered")
                    for letter in dead {
                        #expect(letter.queue == "spotguard.sef" && letter.attempts == 1, "\(letter)")
                        #expect(letter.reason?.hasPrefix("invalid_message: payload.pools[0].price: invalid_price") == true, "\(letter.reason ?? "-")")
                    }
                    #expect(
                        try await TestStack.eventually {
                            try await SEFQuery.count(store, "SELECT count(*) FROM pricing_submissions_raw WHERE source_agent_id = $1", [agent]) == 1
                        }, "the valid report beside them is committed")
                }
            }
            await store.shutdown()
        }
    }
}
