import Foundation
import ServiceLifecycle
import SpotModels
import Testing

@testable import SpotBus

/// SpotBus against the real private RabbitMQ. Each test binds its own quorum queue to a routing
/// key nobody else uses and deletes it afterwards.
extension IntegrationTests {
    @Suite struct BusTests {
        let key = TestStack.uniqueName("test")
        var queue: String { "spotguard.\(key)" }
        var topology: Topology { .standard.adding(.init(name: queue, bindings: ["\(key).#"])) }

        func message(_ n: Int, body: String? = nil) -> OutgoingMessage {
            OutgoingMessage(routingKey: "\(key).item", body: Array((body ?? "message \(n)").utf8), messageId: "\(key)-\(n)")
        }

        func consumer(_ inbox: Inbox, publisher: BusPublisher, handler: BusConsumer.Handler? = nil) throws -> BusConsumer {
            var config = BusConsumer.Configuration(queue: queue)
            config.retryBackoff = .milliseconds(10)
            return BusConsumer(
                endpoint: try TestStack.amqp, topology: topology, configuration: config, deadLetters: publisher,
                logger: TestStack.logger, handler: handler ?? { inbox.append($0) })
        }

        /// A cluster is one URL with every node; user, password and vhost are shared.
        @Test func aClusterURLNamesEveryNode() throws {
            let e = try #require(AMQPEndpoint(url: "amqp://svc:p%40ss@10.0.0.1:5672,rabbit-2,[fd00::3]:5673/prod"))
            #expect(e.nodes == [.init(host: "10.0.0.1", port: 5672), .init(host: "rabbit-2", port: 5672), .init(host: "fd00::3", port: 5673)])
            #expect(e.user == "svc" && e.password == "p@ss" && e.vhost == "prod")
            #expect(e.description == "amqp://svc@10.0.0.1:5672,rabbit-2:5672,[fd00::3]:5673/prod")
            #expect(AMQPEndpoint(url: "amqp://u:p@h1:5672,,h2/")?.nodes == nil, "an empty node")
            #expect(AMQPEndpoint(url: "amqp://u:p@h1:99999/") == nil)
            #expect(AMQPEndpoint(url: "http://h1/") == nil)
            #expect(AMQPEndpoint(url: "amqp://h1")?.vhost == "/")
        }

        /// A node that does not answer is passed over for the next one.
        @Test func aDeadNodeIsPassedOverForTheNext() async throws {
            var endpoint = try TestStack.amqp
            let live = endpoint.nodes[0]
            // a loopback port nothing listens on (refused at once), then the real node
            endpoint.nodes = [.init(host: "127.0.0.1", port: 1), live]
            let publisher = BusPublisher(endpoint: endpoint, topology: topology, logger: TestStack.logger)
            publisher.start()
            #expect(await TestStack.eventually(timeout: .seconds(10)) { publisher.isConnected }, "connected through the second node")
            try await publisher.publish(message(1))
            try await publisher.deleteQueue(queue)
            await publisher.shutdown()
        }

        @Test func confirmedMessageArrivesWithItsIdAndBody() async throws {
            try await withPublisher(topology: topology) { publisher in
                try await publisher.publish(message(1, body: #"{"price": 0.0312}"#))
                let inbox = Inbox()
                try await withConsumer(try consumer(inbox, publisher: publisher)) {
                    #expect(await TestStack.eventually { inbox.count == 1 })
                }
                let got = try #require(inbox.all.first)
                #expect(got.messageId == "\(key)-1")
                #expect(String(decoding: got.body, as: UTF8.self) == #"{"price": 0.0312}"#)
                #expect(got.routingKey == "\(key).item")
                #expect(!got.redelivered)
                try await publisher.deleteQueue(queue)
            }
        }

        @Test func unroutableMessageIsAnError() async throws {
            try await withPublisher(topology: topology) { publisher in
                let stray = OutgoingMessage(routingKey: "nobody.listens.\(key)", body: [1], messageId: "stray-\(key)")
                await #expect(throws: BusError(.unroutable, "no queue bound for the routing key")) {
                    try await publisher.publish(stray)
                }
                // the connection is still usable afterwards
                try await publisher.publish(message(2))
                try await publisher.deleteQueue(queue)
            }
        }

        @Test func manyPublishesInFlightAreAllConfirmedAndDelivered() async throws {
            let n = 2000
            try await withPublisher(topology: topology) { publisher in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for i in 0..<n { group.addTask { try await publisher.publish(message(i)) } }
                    try await group.waitForAll()
                }
                let inbox = Inbox()
                try await withConsumer(try consumer(inbox, publisher: publisher)) {
                    #expect(await TestStack.eventually { inbox.count >= n })
                }
                #expect(inbox.messageIds() == Set((0..<n).map { "\(key)-\($0)" }))
                try await publisher.deleteQueue(queue)
            }
        }

        @Test func crashedConsumersMessagesAreRedelivered() async throws {
            try await withPublisher(topology: topology) { publisher in
                for i in 0..<10 { try await publisher.publish(message(i)) }
                // a consumer that takes deliveries and dies without acking
                let taken = Inbox()
                let doomed = AMQPWorker(
                    endpoint: try TestStack.amqp, topology: topology,
                    role: ConnectionRole(confirms: false, consume: .init(queue: queue, prefetch: 100, noAck: false)),
                    confirmTimeout: .seconds(5), logger: TestStack.logger, onDelivery: { taken.append($0) })
                doomed.start()
                #expect(await TestStack.eventually { taken.count == 10 })
                await doomed.stop()

                let inbox = Inbox()
                try await withConsumer(try consumer(inbox, publisher: publisher)) {
                    #expect(await TestStack.eventually { inbox.count == 10 })
                }
                #expect(inbox.all.allSatisfy { $0.redelivered })
                #expect(inbox.all.allSatisfy { $0.deliveryCount == 1 })
                #expect(inbox.messageIds() == taken.messageIds())
                try await publisher.deleteQueue(queue)
            }
        }

        @Test func failingMessageIsRetriedThenDeadLetteredWithItsReason() async throws {
            struct Boom: Error, CustomStringConvertible { var description: String { "boom: price table locked" } }
            let deadQueue = "spotguard.\(key).dead"
            let topology = self.topology.adding(.init(name: deadQueue, bindings: ["\(key).#"], exchange: Topology.deadLetterExchange))
            let publisher = BusPublisher(endpoint: try TestStack.amqp, topology: topology, logger: TestStack.logger)
            publisher.start()
            #expect(await TestStack.eventually { publisher.isConnected })
            try await publisher.publish(message(7, body: "poison"))
            try await publisher.publish(message(8, body: "fine"))

            let attempts = Counter()
            let handled = Inbox()
            var config = BusConsumer.Configuration(queue: queue)
            config.retryBackoff = .milliseconds(10)
            let failing = BusConsumer(
                endpoint: try TestStack.amqp, topology: topology, configuration: config, deadLetters: publisher,
                logger: TestStack.logger
            ) { d in
                if String(decoding: d.body, as: UTF8.self) == "poison" {
                    attempts.increment()
                    throw Boom()
                }
                handled.append(d)
            }
            let dead = Inbox()
            let deadConsumer = BusConsumer(
                endpoint: try TestStack.amqp, topology: topology, configuration: .init(queue: deadQueue),
                deadLetters: publisher, logger: TestStack.logger
            ) { dead.append($0) }
            try await withConsumer(failing) {
                try await withConsumer(deadConsumer) {
                    #expect(await TestStack.eventually { dead.count == 1 })
                }
            }
            #expect(attempts.current == Topology.maxHandlerAttempts)
            #expect(handled.messageIds() == ["\(key)-8"])
            let letter = try #require(dead.all.first)
            #expect(letter.messageId == "\(key)-7")
            #expect(letter.headers["x-spotguard-error"] == "boom: price table locked")
            #expect(letter.headers["x-spotguard-queue"] == queue)
            #expect(letter.headers["x-spotguard-attempts"] == String(Topology.maxHandlerAttempts))
            #expect(String(decoding: letter.body, as: UTF8.self) == "poison")
            try await publisher.deleteQueue(queue)
            try await publisher.deleteQueue(deadQueue)
            await publisher.shutdown()
        }

        /// A dependency that is out (here the broker, as a handler publishing would see it) is
        /// waited for: the message is held, never handed back or dead-lettered, however many
        /// tries it takes; it is handled once the dependency is back.
        @Test func transientFailureHoldsTheMessageInsteadOfDeadLettering() async throws {
            try await withPublisher(topology: topology) { publisher in
                try await publisher.publish(message(1))
                let tries = Counter()
                let handled = Inbox()
                var config = BusConsumer.Configuration(queue: queue)
                config.retryBackoff = .milliseconds(10)
                config.outageBackoffCap = .milliseconds(20)
                let consumer = BusConsumer(
                    endpoint: try TestStack.amqp, topology: topology, configuration: config, deadLetters: publisher, logger: TestStack.logger
                ) { d in
                    // twice as many failures as a message may cost before it is dead-lettered
                    if tries.increment() <= 2 * Topology.maxHandlerAttempts { throw BusError(.notConnected, "the database is restarting") }
                    handled.append(d)
                }
                try await withConsumer(consumer) {
                    #expect(await TestStack.eventually { handled.count == 1 })
                }
                #expect(handled.all.first?.deliveryCount == 0, "held, not handed back to the queue")
                let dead = try await DeadLetters.list(endpoint: try TestStack.amqp, queue: queue, logger: TestStack.logger)
                #expect(dead.isEmpty)
                try await publisher.deleteQueue(queue)
            }
        }

        /// A message that cannot be decoded is dead-lettered on its first delivery (no retry can
        /// change it) with the reason; once the consumer is fixed, `replay` sends it back to its
        /// queue only, where it arrives under its first routing key and id; a second replay
        /// finds nothing more to send.
        @Test func undecodableMessageIsDeadLetteredAtOnceAndReplayedToItsQueue() async throws {
            struct Price: Codable, Sendable { var price: Double }
            try await withPublisher(topology: topology) { publisher in
                try await publisher.publish(message(1, body: #"{"price": "a lot"}"#))
                let tries = Counter()
                let strict = BusConsumer(
                    endpoint: try TestStack.amqp, topology: topology, configuration: .init(queue: queue),
                    deadLetters: publisher, logger: TestStack.logger
                ) { d in
                    tries.increment()
                    _ = try WireJSON.decoder().decode(Price.self, from: Data(d.body))
                }
                var dead: [DeadLetters.Letter] = []
                try await withConsumer(strict) {
                    _ = await TestStack.eventually {
                        dead = (try? await DeadLetters.list(endpoint: try TestStack.amqp, queue: queue, logger: TestStack.logger)) ?? []
                        return !dead.isEmpty
                    }
                }
                #expect(tries.current == 1)
                let letter = try #require(dead.first)
                #expect(dead.count == 1 && letter.messageId == "\(key)-1" && letter.routingKey == "\(key).item" && letter.attempts == 1)
                #expect(letter.reason?.hasPrefix("invalid_message: ") == true, "\(letter.reason ?? "-")")

                let inbox = Inbox()
                try await withConsumer(try consumer(inbox, publisher: publisher)) {
                    let replayed = try await DeadLetters.replay(endpoint: try TestStack.amqp, queue: queue, logger: TestStack.logger)
                    #expect(replayed.map(\.messageId) == ["\(key)-1"])
                    #expect(await TestStack.eventually { inbox.count == 1 })
                    let again = try await DeadLetters.replay(endpoint: try TestStack.amqp, queue: queue, logger: TestStack.logger)
                    #expect(again.isEmpty)
                }
                let back = try #require(inbox.all.first)
                #expect(back.routingKey == "\(key).item" && back.exchange == Topology.eventsExchange && back.messageId == "\(key)-1")
                #expect(String(decoding: back.body, as: UTF8.self) == #"{"price": "a lot"}"#)
                try await publisher.deleteQueue(queue)
            }
        }

        /// A reply to a requester whose connection is gone is dropped by the broker when it is
        /// published without the mandatory flag (as the responder does); with it, the broker
        /// returns it and the publish fails — which once logged a line per late reply.
        @Test func aReplyToARequesterThatIsGoneIsDropped() async throws {
            try await withPublisher(topology: topology) { publisher in
                let requests = Inbox()
                try await withConsumer(try consumer(requests, publisher: publisher)) {
                    let requester = BusRequester(endpoint: try TestStack.amqp, topology: topology, logger: TestStack.logger)
                    requester.start()
                    #expect(await TestStack.eventually { requester.isConnected })
                    _ = try? await requester.request(routingKey: "\(key).ask", body: [1], deadline: .milliseconds(300))
                    await requester.shutdown()
                    #expect(await TestStack.eventually { requests.count == 1 })
                }
                let replyTo = try #require(requests.all.first?.replyTo)
                var reply = OutgoingMessage(exchange: "", routingKey: replyTo, body: [2], messageId: "\(key)-reply")
                reply.persistent = false
                await #expect(throws: BusError.self) { try await publisher.publish(reply) }
                reply.mandatory = false
                try await publisher.publish(reply)
                try await publisher.deleteQueue(queue)
            }
        }

        /// A broker that stops reading (paused with SIGSTOP) cannot stall a publisher: with far
        /// more bytes in flight than the socket buffers hold, every publish still ends by its
        /// confirm deadline, and publishing works again once the broker is back.
        @Test func aPausedBrokerCannotHangPublishers() async throws {
            let publisher = BusPublisher(endpoint: try TestStack.amqp, topology: topology, confirmTimeout: .seconds(2), logger: TestStack.logger)
            publisher.start()
            #expect(await TestStack.eventually { publisher.isConnected })
            let body = Array(repeating: UInt8(ascii: "x"), count: 256 * 1024)
            try await TestStack.stack("broker-pause")
            let resume = Task {
                // whatever happens to the publishes, the broker runs again after 20 s
                try? await Task.sleep(for: .seconds(20))
                try? await TestStack.stack("broker-resume")
            }
            let slowest = await withTaskGroup(of: Duration.self) { group in
                for i in 0..<96 {
                    group.addTask {
                        let started = ContinuousClock.now
                        var m = OutgoingMessage(routingKey: "\(key).bulk", body: body, messageId: "\(key)-bulk-\(i)")
                        m.persistent = false
                        _ = try? await publisher.publish(m)
                        return ContinuousClock.now - started
                    }
                }
                return await group.reduce(Duration.zero) { max($0, $1) }
            }
            resume.cancel()
            try await TestStack.stack("broker-resume")
            #expect(slowest < .seconds(3), "a publish took \(slowest) with a 2 s confirm deadline")
            // back to normal once the broker reads again
            #expect(await TestStack.eventually(timeout: .seconds(30)) { (try? await publisher.publish(message(1))) != nil })
            try await publisher.deleteQueue(queue)
            await publisher.shutdown()
        }

        @Test func requestGetsItsReplyAndAMissingResponderTimesOut() async throws {
            try await withPublisher(topology: topology) { publisher in
                let responder = BusConsumer.responder(
                    endpoint: try TestStack.amqp, topology: topology, configuration: .init(queue: queue), publisher: publisher,
                    logger: TestStack.logger
                ) { request in Array(String(decoding: request.body, as: UTF8.self).uppercased().utf8) }
                let requester = BusRequester(endpoint: try TestStack.amqp, topology: topology, logger: TestStack.logger)
                requester.start()
                #expect(await TestStack.eventually { requester.isConnected })
                try await withConsumer(responder) {
                    let reply = try await requester.request(routingKey: "\(key).ask", body: Array("failover now".utf8), deadline: .seconds(5))
                    #expect(String(decoding: reply.body, as: UTF8.self) == "FAILOVER NOW")
                }
                // nobody answers now: the caller gets a timeout at its deadline, not a hang
                let started = ContinuousClock.now
                await #expect(throws: BusError.self) {
                    _ = try await requester.request(routingKey: "\(key).ask", body: [1], deadline: .milliseconds(300))
                }
                #expect(ContinuousClock.now - started < .seconds(5))
                await requester.shutdown()
                try await publisher.deleteQueue(queue)
            }
        }

        @Test func gracefulShutdownFinishesTheHandlerAndReturnsTheRest() async throws {
            try await withPublisher(topology: topology) { publisher in
                for i in 0..<5 { try await publisher.publish(message(i)) }
                let started = Counter()
                let handled = Inbox()
                let slow = try consumer(handled, publisher: publisher) { d in
                    started.increment()
                    try await Task.sleep(for: .milliseconds(500))
                    handled.append(d)
                }
                let group = ServiceGroup(services: [slow], gracefulShutdownSignals: [], cancellationSignals: [], logger: TestStack.logger)
                try await withThrowingTaskGroup(of: Void.self) { tasks in
                    tasks.addTask { try await group.run() }
                    #expect(await TestStack.eventually { started.current == 1 })
                    await group.triggerGracefulShutdown()
                    try await tasks.waitForAll()
                }
                // the message in hand was finished and acked; the prefetched rest went back
                #expect(started.current == 1)
                #expect(handled.count == 1)
                let rest = Inbox()
                try await withConsumer(try consumer(rest, publisher: publisher)) {
                    _ = await TestStack.eventually { rest.count >= 4 }
                    try await Task.sleep(for: .milliseconds(300))
                }
                #expect(rest.count == 4)
                #expect(rest.messageIds().union(handled.messageIds()) == Set((0..<5).map { "\(key)-\($0)" }))
                #expect(rest.messageIds().isDisjoint(with: handled.messageIds()))
                try await publisher.deleteQueue(queue)
            }
        }

        @Test func brokerRestartReconnectsAndLosesNoConfirmedMessage() async throws {
            try await withPublisher(topology: topology) { publisher in
                for i in 0..<100 { try await publisher.publish(message(i)) }
                try await TestStack.stack("broker-restart")
                #expect(await TestStack.eventually(timeout: .seconds(60)) { publisher.isConnected })
                for i in 100..<200 { try await publisher.publish(message(i)) }
                let inbox = Inbox()
                try await withConsumer(try consumer(inbox, publisher: publisher)) {
                    #expect(await TestStack.eventually { inbox.count >= 200 })
                }
                #expect(inbox.messageIds() == Set((0..<200).map { "\(key)-\($0)" }))
                try await publisher.deleteQueue(queue)
            }
        }
    }
}
