import SpotModels
import SpotStore

/// The pools SpotGuard knows (`spot_pools`), created on first sight: a pool id names its type,
/// region and zone, so there is nothing else to know to create one.
public enum Pools {
    public static func ensure(_ pools: [PoolID], on conn: PGConnection) throws {
        for pool in Set(pools).sorted(by: { $0.rawValue < $1.rawValue }) {
            _ = try conn.execute(
                "INSERT INTO spot_pools (id, pool_name, instance_type, region, az) VALUES ($1, $1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
                [pool.rawValue, pool.instanceType.rawValue, pool.region.rawValue, pool.az.rawValue])
        }
    }
}
