import Foundation
import Hummingbird
import Logging
import SEFCore
import ServiceLifecycle
import SpotBus
import SpotModels
import SpotRuntime
import SpotStore

/// Everything one `spotguard-sef` process runs.
public struct SEFService: Sendable {
    public let pipeline: PricingPipeline
    public let maintenance: Maintenance
    public let relay: OutboxRelay
    public let consumer: BusConsumer
    public let publisher: BusPublisher
    public let retention: RetentionService

    public init(configuration: SEFConfiguration, store: PostgresStore, amqp: AMQPEndpoint, logger: Logger) {
        let prices = PriceRepository(configuration: configuration)
        publisher = BusPublisher(endpoint: amqp, logger: logger)
        relay = OutboxRelay(store: store, publisher: publisher, logger: logger, name: configuration.workerName)
        let relay = self.relay
        pipeline = PricingPipeline(store: store, prices: prices, notify: { relay.notify() })
        maintenance = Maintenance(store: store, prices: prices, notify: { relay.notify() }, configuration: configuration, logger: logger)
        retention = .sef(configuration: configuration, store: store, logger: logger)
        var consumerConfiguration = BusConsumer.Configuration(queue: "spotguard.sef")
        // one batch more than are handled at once, so the next is already here while they commit
        consumerConfiguration.prefetch = UInt16(min((configuration.concurrency + 1) * configuration.batch, Int(UInt16.max)))
        consumerConfiguration.concurrency = configuration.concurrency
        consumerConfiguration.maxBatch = configuration.batch
        let pipeline = self.pipeline
        consumer = BusConsumer(
            endpoint: amqp, configuration: consumerConfiguration, deadLetters: publisher, logger: logger,
            batchHandler: { try await pipeline.handle($0) })
    }

    /// The operational HTTP endpoints (health, readiness, metrics) with the workers as services.
    public func application(configuration: SEFConfiguration, store: PostgresStore, logger: Logger) -> some ApplicationProtocol {
        let (consumer, publisher) = (self.consumer, self.publisher)
        return workerApplication(
            name: "spotguard-sef", host: configuration.host, port: configuration.port, http: configuration.http,
            brokerConnected: { consumer.isConnected && publisher.isConnected }, store: store,
            services: [publisher, relay, consumer, maintenance, retention], logger: logger
        ) { router in
            router.get("/openapi.yaml") { _, _ in OpenAPIDocument.response(Bundle.module) }
            if let token = configuration.adminToken { addAdminRoutes(to: router, token: token, store: store) }
        }
    }

    /// The operator controls over HTTP, behind the admin token; the same claims as the CLI.
    func addAdminRoutes(to router: Router<ServiceRequestContext>, token: String, store: PostgresStore) {
        let maintenance = self.maintenance
        @Sendable func json<T: Encodable>(_ value: T) throws -> Response {
            Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(bytes: try WireJSON.encoder().encode(value))))
        }
        router.post("/admin/gap-scan") { request, _ in
            try APIError.requireAdmin(request.headers[.authorization], token: token)
            return try json(try await maintenance.scanDuePools(force: true))
        }
        router.post("/admin/refresh-ml") { request, _ in
            try APIError.requireAdmin(request.headers[.authorization], token: token)
            return try json(try await maintenance.refreshMLDataset(force: true))
        }
        router.post("/admin/check-quality") { request, _ in
            try APIError.requireAdmin(request.headers[.authorization], token: token)
            return try json(try await maintenance.checkQuality(force: true))
        }
        router.get("/admin/review") { request, _ in
            try APIError.requireAdmin(request.headers[.authorization], token: token)
            return try json(["items": try await SEFCommand.review(store)])
        }
    }
}
