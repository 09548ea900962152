import SpotModels
import SpotStore

/// The pools SpotGuard knows (`spot_pools`), created on first sight: a pool id names its type,
/// region and zone, so there is nothing else to know to create one.
public enum Pools {
    public static func ensure(_ pools: [PoolID], on conn: PGConnection) throws {
        // in id order, so concurrent transactions take the rows' locks in the same order
        let unique = Set(pools).sorted { $0.rawValue < $1.rawValue }
        guard !unique.isEmpty else { return }
        _ = try conn.execute(
            """
            INSERT INTO spot_pools (id, pool_name, instance_type, region, az)
            SELECT id, id, t, r, z FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(id, t, r, z)
            ON CONFLICT (id) DO NOTHING
            """,
            [
                PGArray(unique.map(\.rawValue)), PGArray(unique.map(\.instanceType.rawValue)), PGArray(unique.map(\.region.rawValue)),
                PGArray(unique.map(\.az.rawValue)),
            ])
    }
}
