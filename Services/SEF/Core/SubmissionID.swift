import Crypto
import Foundation
import SpotModels

extension PricingReport {
    /// The submission id of one pool's price in this report: a name-based UUID (RFC 9562
    /// version 5) of the report id and the pool, so every redelivery derives the same id.
    public func submissionId(for pool: PoolID) -> UUID {
        let namespace = withUnsafeBytes(of: reportId.uuid) { Array($0) }
        var hash = Array(Insecure.SHA1.hash(data: namespace + Array(pool.rawValue.utf8)).prefix(16))
        hash[6] = (hash[6] & 0x0F) | 0x50
        hash[8] = (hash[8] & 0x3F) | 0x80
        return hash.withUnsafeBytes { UUID(uuid: $0.load(as: uuid_t.self)) }
    }
}
