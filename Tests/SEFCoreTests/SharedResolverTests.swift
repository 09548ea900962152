import Foundation
import SEFCore
import SpotModels
import Testing

/// Cross-client resolution: one client cannot move what another sees.
@Suite struct SharedResolverTests {
    let policy = SEFPolicy()
    let a = UUID()
    let b = UUID()
    let c = UUID()

    func value(_ client: UUID, _ price: Double, _ source: PriceSourceType = .primary, confidence: Double = 1) -> ClientValue {
        ClientValue(
            clientId: client,
            resolved: ResolvedBucket(
                spotPrice: price, onDemandPrice: 0.096, confidence: confidence, sourceType: source, averagedDualSource: false, used: [UUID()]))
    }

    @Test func aPoolOnlyOneClientMeasuresIsThatClientsToReport() {
        let o = SharedResolver.resolve([value(a, 0.05)], context: .init(neighbours: [a: [0.01, 0.02]]), policy: policy)
        #expect(o.shared?.spotPrice == 0.05 && o.accepted == [a] && !o.disputed)
    }

    @Test func anInventedPriceWhereOthersMeasuredAroundIsNotTaken() {
        // B measured the pool around the bucket at 0.03; A alone says 0.30 (or 0.003)
        for invented in [0.30, 0.003] {
            let o = SharedResolver.resolve([value(a, invented)], context: .init(neighbours: [b: [0.030, 0.031, 0.029]]), policy: policy)
            #expect(o.shared == nil && o.accepted.isEmpty && o.disputed)
        }
        // within the factor of the others' prices it is taken
        let o = SharedResolver.resolve([value(a, 0.05)], context: .init(neighbours: [b: [0.030, 0.031]]), policy: policy)
        #expect(o.shared?.spotPrice == 0.05)
    }

    @Test func twoAgreeingClientsGiveTheirMedianAndTheLowerConfidence() {
        let o = SharedResolver.resolve([value(a, 0.030), value(b, 0.032, .replicaManual, confidence: 0.95)], context: .init(), policy: policy)
        #expect(o.shared?.spotPrice == 0.031 && o.shared?.confidence == 0.95 && o.shared?.sourceType == .primary)
        #expect(o.accepted == [a, b] && !o.disputed && o.shared?.used.count == 2)
    }

    @Test func twoDisagreeingClientsAreDecidedByThePoolsHistory() {
        let values = [value(a, 0.30), value(b, 0.031)]
        let o = SharedResolver.resolve(values, context: .init(history: 0.030), policy: policy)
        #expect(o.shared?.spotPrice == 0.031 && o.accepted == [b] && o.disputed)
        // in either order
        #expect(SharedResolver.resolve(values.reversed(), context: .init(history: 0.030), policy: policy) == o)
        // without history, the client that reported the pool first; without that, neither
        let incumbent = SharedResolver.resolve(values, context: .init(incumbent: b), policy: policy)
        #expect(incumbent.shared?.spotPrice == 0.031 && incumbent.accepted == [b] && incumbent.disputed)
        let none = SharedResolver.resolve(values, context: .init(), policy: policy)
        #expect(none.shared == nil && none.disputed)
    }

    @Test func withThreeClientsTheOutlierIsDropped() {
        let o = SharedResolver.resolve([value(a, 9.99), value(b, 0.030), value(c, 0.031)], context: .init(), policy: policy)
        #expect(o.shared?.spotPrice == 0.0305 && o.accepted == [b, c] && o.disputed)
    }

    @Test func theResultIsAFunctionOfTheSetOfValues() {
        let values = [value(a, 0.030), value(b, 0.031), value(c, 0.0305)]
        let first = SharedResolver.resolve(values, context: .init(), policy: policy)
        for order in [[2, 0, 1], [1, 2, 0], [0, 2, 1]] {
            #expect(SharedResolver.resolve(order.map { values[$0] }, context: .init(), policy: policy) == first)
        }
    }
}
