import Foundation
import SpotModels

extension PricingReport {
    /// The submission id of one pool's price in this report: name-based on the report id and
    /// the pool, so every redelivery derives the same id.
    public func submissionId(for pool: PoolID) -> UUID {
        UUID.nameBased(in: reportId, pool.rawValue)
    }
}
