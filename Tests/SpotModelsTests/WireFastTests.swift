import Foundation
import Testing

@testable import SpotModels

/// A seeded generator, so a failure repeats.
private struct Seeded: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

private let zones = ["us-east-1a", "us-east-1b", "eu-west-3c", "ap-southeast-2a", "me-south-1b"]
private let types = ["t3.medium", "c5.large", "m5.2xlarge", "r6gd.16xlarge", "g4dn.xlarge"]

/// Prices of every shape the shortest-form printer gives: tiny, huge, whole, long fractions.
private func price(_ g: inout Seeded) -> Double {
    switch Int.random(in: 0..<12, using: &g) {
    case 0: 0.000001
    case 1: Double(Int.random(in: 1...400, using: &g))
    case 2: Double(Int.random(in: 1...999_999, using: &g)) / 1_000_000
    case 3: Double.random(in: 0.000001...99_999, using: &g)
    case 4: 1e-6 * Double(Int.random(in: 1...9, using: &g))
    case 5: 0.1 + 0.2
    default: Double(Int.random(in: 100...99_999, using: &g)) / 10_000
    }
}

private func date(_ g: inout Seeded) -> Date {
    Date(timeIntervalSince1970: 1_700_000_000 + Double(Int.random(in: 0...90_000_000, using: &g)) + Double(Int.random(in: 0...999, using: &g)) / 1000)
}

private func report(_ g: inout Seeded) -> PricingReport {
    let pools = (0..<Int.random(in: 1...50, using: &g)).map { i in
        PoolPrice(poolId: PoolID(rawValue: "\(types[i % types.count]).\(zones[(i / types.count) % zones.count])")!, price: price(&g))
    }
    return PricingReport(
        reportId: UUID(), clientId: UUID(), agentId: UUID(),
        instanceId: Bool.random(using: &g) ? InstanceID(rawValue: "i-0123456789abcdef0")! : nil,
        pools: pools, onDemandPrice: Bool.random(using: &g) ? price(&g) : nil, observedAt: date(&g), receivedAt: date(&g))
}

private func submission(_ g: inout Seeded) -> PricingSubmission {
    PricingSubmission(
        submissionId: UUID(), clientId: UUID(), sourceAgentId: UUID(),
        sourceInstanceId: Bool.random(using: &g) ? InstanceID(rawValue: "i-0123abcd")! : nil,
        sourceType: PriceSourceType.allCases.randomElement(using: &g)!, poolId: PoolID(rawValue: "c5.large.us-east-1a")!,
        spotPrice: price(&g), onDemandPrice: Bool.random(using: &g) ? price(&g) : nil, observedAt: date(&g), submittedAt: date(&g),
        receivedAt: date(&g))
}

/// What the decoder makes of `bytes`: the value's full description, or the error's.
private func outcome<T: Decodable>(_ type: T.Type, _ bytes: [UInt8], routingKey: String?, fast: Bool) -> String {
    do {
        let value =
            fast
            ? try WireJSON.decode(T.self, from: bytes, routingKey: routingKey)
            : try WireJSON.decoder(routingKey: routingKey).decode(T.self, from: Data(bytes))
        return String(reflecting: value)
    } catch {
        return "error: \(error)"
    }
}

@Suite struct WireFastTests {
    @Test func theHandWriterGivesTheEncodersBytes() throws {
        var g = Seeded(state: 1)
        for i in 0..<500 {
            let payload: PricingReported = i % 5 == 0 ? .submission(submission(&g)) : .report(report(&g))
            let envelope = Envelope(type: payload.routingKey, occurredAt: date(&g), producer: "spotguard-ingest", payload: payload)
            let expected = Array(try WireJSON.encoder().encode(envelope))
            #expect(try WireJSON.encode(envelope) == expected, "\(String(decoding: expected, as: UTF8.self))")
        }
        // strings the encoder escapes
        let odd = Envelope(
            type: RoutingKey.pricingReported, producer: "a \"b\" \\ c/d \n\t\r\u{8}\u{C}\u{1}\u{1F} é 😀", payload: PricingReported.report(report(&g)))
        #expect(try WireJSON.encode(odd) == Array(try WireJSON.encoder().encode(odd)))
    }

    @Test func theHandReaderReadsWhatTheDecoderReads() throws {
        var g = Seeded(state: 2)
        var stepsAside = 0
        for i in 0..<300 {
            var r = report(&g)
            if i % 4 != 0 {  // most with prices the hand reader reads
                r.pools = r.pools.map { PoolPrice(poolId: $0.poolId, price: max($0.price, 0.0001)) }
                r.onDemandPrice = r.onDemandPrice.map { max($0, 0.0001) }
            }
            let envelope = Envelope(type: RoutingKey.pricingReported, occurredAt: date(&g), producer: "spotguard-ingest", payload: PricingReported.report(r))
            let bytes = try WireJSON.encode(envelope)
            // a price below 0.0001 is written with an exponent, which the hand reader leaves to the decoder
            guard case .report(let r) = envelope.payload, r.pools.allSatisfy({ $0.price >= 0.0001 }), (r.onDemandPrice ?? 1) >= 0.0001 else {
                stepsAside += 1
                continue
            }
            let read = try #require(bytes.withUnsafeBytes { WireJSON.readPlain(Envelope<PricingReported>.self, $0, RoutingKey.pricingReported) })
            let decoded = try WireJSON.decoder(routingKey: RoutingKey.pricingReported).decode(Envelope<PricingReported>.self, from: Data(bytes))
            #expect(String(reflecting: read) == String(reflecting: decoded))
            #expect(read.id == envelope.id && read.payload.clientId == envelope.payload.clientId)
        }
        #expect(stepsAside < 100)
        let body =
            #"{"pools": [{"id": "t3.medium.us-east-1a", "price": 0.0312}, {"id": "t3.medium.us-east-1b", "price": 0.001}], "on_demand_price": 0.0416, "report_id": null}"#
        let request = try #require(Array(body.utf8).withUnsafeBytes { WireJSON.readPlain(PricingReportRequest.self, $0, nil) })
        #expect(request.pools?.count == 2 && request.pools?[1].price == 0.001 && request.onDemandPrice == 0.0416 && request.reportId == nil)
    }

    /// Whatever the bytes, the hand reader and the decoder agree: the same value or the same
    /// error (the hand reader steps aside for anything it does not read).
    @Test func anyInputReadsAsTheDecoderReadsIt() throws {
        var g = Seeded(state: 3)
        let envelope = Envelope(type: RoutingKey.pricingReported, producer: "spotguard-ingest", payload: PricingReported.report(report(&g)))
        let wire = String(decoding: try WireJSON.encode(envelope), as: UTF8.self)
        let pool = #"{"id": "t3.medium.us-east-1a", "price": 0.0312}"#
        let request = #"{"pools": [\#(pool)], "on_demand_price": 0.0416, "observed_at": "2026-11-23T10:00:00Z", "instance_id": "i-0123abcd"}"#
        let envelopes = [
            wire,
            wire.replacingOccurrences(of: ",", with: " ,\n "),  // whitespace
            wire.replacingOccurrences(of: "spotguard-ingest", with: #"spotguard\/ingest"#),  // an escape
            wire.replacingOccurrences(of: #""producer""#, with: #""extra":[1,{"a":null}],"producer""#),  // a member nobody reads
            wire.replacingOccurrences(of: #""pool_id""#, with: #""poolId""#),  // another spelling
            wire.replacingOccurrences(of: #""schema_version":2"#, with: #""schema_version":1"#),
            wire.replacingOccurrences(of: #""schema_version":2"#, with: #""schema_version":2.0"#),
            wire.replacingOccurrences(of: #""type":"pricing.reported""#, with: #""type":"pricing.submitted""#),
            wire.replacingOccurrences(of: #""price":[0-9.e-]+"#, with: #""price":1e400"#, options: .regularExpression),  // out of range
            wire.replacingOccurrences(of: #""price":[0-9.e-]+"#, with: #""price":-0.0e+2"#, options: .regularExpression),
            wire.replacingOccurrences(of: #""price":[0-9.e-]+"#, with: #""price":1\#(String(repeating: "0", count: 400))"#, options: .regularExpression),
            wire.replacingOccurrences(of: #""id":""#, with: #""id":"x","id":""#),  // a repeated key
            wire + " x",
        ]
        let requests = [
            request, #"{"pools": null}"#, #"{"pools": [null]}"#, #"{"pools": [{"id": null, "price": null}]}"#, #"{"pools": [{}]}"#,
            #"{"pools": [{"id": 3, "price": "0.1"}]}"#, #"{"pools": [{"id": "t3.medium.us-east-1a", "price": 2E+400}]}"#,
            #"{"pools": [], "on_demand_price": -0}"#, #"{"pools": [\#(pool)], "observed_at": "yesterday"}"#,
            #"{"pools": [\#(pool)], "report_id": "\u0041"}"#, #"{"pools": [\#(pool)],}"#, "[]", "", #"{"pools": [01]}"#,
        ]
        var inputs = envelopes.map { (Array($0.utf8), true) } + requests.map { (Array($0.utf8), false) }
        // and every input again with one byte changed, dropped or doubled, many times over
        for (bytes, isEnvelope) in inputs where !bytes.isEmpty {
            for _ in 0..<150 {
                var mutated = bytes
                let at = Int.random(in: 0..<mutated.count, using: &g)
                switch Int.random(in: 0..<3, using: &g) {
                case 0: mutated[at] = Array(#"{}[],:"0123456789.eE-+ nul\"#.utf8).randomElement(using: &g)!
                case 1: mutated.remove(at: at)
                default: mutated.insert(mutated[at], at: at)
                }
                inputs.append((mutated, isEnvelope))
            }
        }
        var fastHits = 0
        for (bytes, isEnvelope) in inputs {
            if isEnvelope {
                let key = RoutingKey.pricingReported
                #expect(
                    outcome(Envelope<PricingReported>.self, bytes, routingKey: key, fast: true)
                        == outcome(Envelope<PricingReported>.self, bytes, routingKey: key, fast: false), "\(String(decoding: bytes, as: UTF8.self))")
                if bytes.withUnsafeBytes({ WireJSON.readPlain(Envelope<PricingReported>.self, $0, key) }) != nil { fastHits += 1 }
            } else {
                #expect(
                    outcome(PricingReportRequest.self, bytes, routingKey: nil, fast: true)
                        == outcome(PricingReportRequest.self, bytes, routingKey: nil, fast: false), "\(String(decoding: bytes, as: UTF8.self))")
                if bytes.withUnsafeBytes({ WireJSON.readPlain(PricingReportRequest.self, $0, nil) }) != nil { fastHits += 1 }
            }
        }
        // the comparison means something only if the hand reader took many of them
        #expect(fastHits >= 75, "\(fastHits) of \(inputs.count)")
    }
}
