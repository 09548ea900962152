import Foundation

// The price report's hand-written wire forms (WireFast.swift): read from an agent's HTTP body,
// written to the bus inside its envelope, read back from the bus by the SEF. Members are
// written in the encoder's sorted order.

extension PoolPrice: WireWritable {
    public func write(_ w: inout WireWriter) {
        w.beginObject()
        w.key("pool_id")
        w.raw(poolId)
        w.key("price")
        w.number(price)
        w.endObject()
    }

    private static let keys = WireKeys("pool_id", "price")

    static func read(_ r: inout WireReader) -> PoolPrice? {
        var poolId: PoolID?
        var price: Double?
        let read = r.object(Self.keys) { r, key in
            switch key {
            case 0: poolId = r.raw(PoolID.self)  // in keys' order
            default: price = r.number()
            }
            return true
        }
        guard read, let poolId, let price else { return nil }
        return PoolPrice(poolId: poolId, price: price)
    }
}

extension PricingReport: WireWritable, WireReadable {
    public func write(_ w: inout WireWriter) {
        w.beginObject()
        w.key("agent_id")
        w.uuid(agentId)
        w.key("client_id")
        w.uuid(clientId)
        w.member("instance_id", ifPresent: instanceId) { $0.raw($1) }
        w.key("observed_at")
        w.date(observedAt)
        w.member("on_demand_price", ifPresent: onDemandPrice) { $0.number($1) }
        w.key("pools")
        w.beginArray()
        for pool in pools { pool.write(&w) }
        w.endArray()
        w.key("received_at")
        w.date(receivedAt)
        w.key("report_id")
        w.uuid(reportId)
        w.endObject()
    }

    private enum Member: Int { case reportId, clientId, agentId, observedAt, receivedAt, instanceId, onDemandPrice, pools }
    private static let keys = WireKeys("report_id", "client_id", "agent_id", "observed_at", "received_at", "instance_id", "on_demand_price", "pools")

    public static func read(_ r: inout WireReader, routingKey: String?) -> PricingReport? {
        var reportId: UUID?
        var clientId: UUID?
        var agentId: UUID?
        var instanceId: InstanceID?
        var pools: [PoolPrice]?
        var onDemandPrice: Double?
        var observedAt: Date?
        var receivedAt: Date?
        let read = r.object(Self.keys) { r, key in
            switch Member(rawValue: key)! {
            case .reportId: reportId = r.uuid()
            case .clientId: clientId = r.uuid()
            case .agentId: agentId = r.uuid()
            case .observedAt: observedAt = r.date()
            case .receivedAt: receivedAt = r.date()
            case .instanceId:
                guard let read = r.optional({ $0.raw(InstanceID.self) }) else { return false }
                instanceId = read
                return true
            case .onDemandPrice:
                guard let read = r.optional({ $0.number() }) else { return false }
                onDemandPrice = read
                return true
            case .pools:
                var list: [PoolPrice] = []
                guard r.array({ r in PoolPrice.read(&r).map { list.append($0) } != nil }) else { return false }
                pools = list
                return true
            }
            return true
        }
        guard read, let reportId, let clientId, let agentId, let pools, let observedAt, let receivedAt else { return nil }
        return PricingReport(
            reportId: reportId, clientId: clientId, agentId: agentId, instanceId: instanceId, pools: pools,
            onDemandPrice: onDemandPrice, observedAt: observedAt, receivedAt: receivedAt)
    }
}

extension PricingSubmission: WireWritable {
    public func write(_ w: inout WireWriter) {
        w.beginObject()
        w.key("client_id")
        w.uuid(clientId)
        w.key("observed_at")
        w.date(observedAt)
        w.member("on_demand_price", ifPresent: onDemandPrice) { $0.number($1) }
        w.key("pool_id")
        w.raw(poolId)
        w.key("received_at")
        w.date(receivedAt)
        w.key("source_agent_id")
        w.uuid(sourceAgentId)
        w.member("source_instance_id", ifPresent: sourceInstanceId) { $0.raw($1) }
        w.key("source_type")
        w.raw(sourceType)
        w.key("spot_price")
        w.number(spotPrice)
        w.key("submission_id")
        w.uuid(submissionId)
        w.key("submitted_at")
        w.date(submittedAt)
        w.endObject()
    }
}

extension PricingReported: WireWritable {
    public func write(_ w: inout WireWriter) {
        switch self {
        case .report(let r): r.write(&w)
        case .submission(let s): s.write(&w)
        }
    }
}

extension Envelope: WireWritable where Payload: WireWritable {
    public func write(_ w: inout WireWriter) {
        w.beginObject()
        w.key("id")
        w.uuid(id)
        w.key("occurred_at")
        w.date(occurredAt)
        w.key("payload")
        payload.write(&w)
        w.key("producer")
        w.string(producer)
        w.key("schema_version")
        w.integer(schemaVersion)
        w.key("type")
        w.string(type)
        w.endObject()
    }
}

/// An envelope's members, in the order its reader numbers them.
private let envelopeKeys = WireKeys("id", "type", "schema_version", "occurred_at", "producer", "payload")

/// The SEF's read of a price report from the bus: schema version 2 under `pricing.reported`;
/// a submission or an older version goes through the decoder.
extension Envelope: WireReadable where Payload == PricingReported {
    public static func read(_ r: inout WireReader, routingKey: String?) -> Envelope<PricingReported>? {
        var id: UUID?
        var type: String?
        var version: Int?
        var occurredAt: Date?
        var producer: String?
        var report: PricingReport?
        let read = r.object(envelopeKeys) { r, key in
            switch key {
            case 0: id = r.uuid()  // the keys in envelopeKeys' order
            case 1: type = r.string()
            case 2: version = r.integer()
            case 3: occurredAt = r.date()
            case 4: producer = r.string()
            default:  // payload
                report = PricingReport.read(&r, routingKey: nil)
                return report != nil
            }
            return true
        }
        guard read, let id, let type, let occurredAt, let producer, let report,
            type == RoutingKey.pricingReported, routingKey == nil || routingKey == type, version == 2
        else { return nil }
        return Envelope(id: id, type: type, occurredAt: occurredAt, producer: producer, payload: .report(report))
    }
}

/// Ingest's read of an agent's report body.
extension PricingReportRequest: WireReadable {
    private static let keys = WireKeys("report_id", "instance_id", "on_demand_price", "observed_at", "pools")

    public static func read(_ r: inout WireReader, routingKey: String?) -> PricingReportRequest? {
        var request = PricingReportRequest()
        let read = r.object(Self.keys) { r, key in
            switch key {
            case 0: return r.optional { $0.string() }.map { request.reportId = $0 } != nil  // in keys' order
            case 1: return r.optional { $0.string() }.map { request.instanceId = $0 } != nil
            case 2: return r.optional { $0.number() }.map { request.onDemandPrice = $0 } != nil
            case 3: return r.optional { $0.date() }.map { request.observedAt = $0 } != nil
            default:  // pools
                if r.null() { return true }
                var pools: [Pool] = []
                guard r.array({ r in Pool.read(&r).map { pools.append($0) } != nil }) else { return false }
                request.pools = pools
                return true
            }
        }
        guard read else { return nil }
        return request
    }
}

extension PricingReportRequest.Pool {
    private static let keys = WireKeys("id", "price")

    static func read(_ r: inout WireReader) -> Self? {
        if r.null() { return nil }  // a null pool: the decoder's error
        var pool = Self()
        let read = r.object(Self.keys) { r, key in
            key == 0  // id, else price
                ? r.optional { $0.string() }.map { pool.id = $0 } != nil
                : r.optional { $0.number() }.map { pool.price = $0 } != nil
        }
        guard read else { return nil }
        return pool
    }
}
