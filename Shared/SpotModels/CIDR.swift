import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 or IPv6 address block (`10.0.0.0/8`, `::1`, `192.0.2.7`).
public struct CIDR: Sendable, Equatable {
    public let bytes: [UInt8]
    public let prefix: Int

    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1).map(String.init)
        guard let address = Self.parse(parts[0]) else { return nil }
        let prefix = parts.count == 2 ? Int(parts[1]) : address.count * 8
        guard let prefix, (0...(address.count * 8)).contains(prefix) else { return nil }
        self.bytes = address
        self.prefix = prefix
    }

    public func contains(_ address: String) -> Bool {
        guard let other = Self.parse(address) else { return false }
        return contains(bytes: other)
    }

    public func contains(bytes other: [UInt8]) -> Bool {
        guard other.count == bytes.count else { return false }
        var left = prefix
        for i in 0..<bytes.count where left > 0 {
            let bits = min(8, left)
            let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
            if bytes[i] & mask != other[i] & mask { return false }
            left -= bits
        }
        return true
    }

    /// The address's bytes (4 or 16), or nil when it is not an IP address.
    public static func parse(_ text: String) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 16)
        if inet_pton(AF_INET, text, &buffer) == 1 { return Array(buffer.prefix(4)) }
        if inet_pton(AF_INET6, text, &buffer) == 1 { return buffer }
        return nil
    }
}

extension CIDR {
    /// Where a request to a customer-given URL must never go unless an operator allows it:
    /// loopback, "this network", private (RFC 1918, unique-local), shared (CGNAT), link-local
    /// (the instance metadata service at 169.254.169.254 among them), benchmarking,
    /// documentation, multicast and reserved ranges, in IPv4 and IPv6 (IPv4-mapped IPv6
    /// addresses are judged as the IPv4 address they carry).
    public static let nonPublic: [CIDR] = [
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24",
        "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4",
        "240.0.0.0/4", "::/128", "::1/128", "64:ff9b::/96", "100::/64", "2001:db8::/32", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    ].map { CIDR($0)! }

    /// True when `address` (4 or 16 bytes) lies in none of `nonPublic`, or in one of `allowed`.
    public static func isReachable(_ address: [UInt8], allowed: [CIDR] = []) -> Bool {
        var address = address
        if address.count == 16, address[0..<10].allSatisfy({ $0 == 0 }), address[10] == 0xff, address[11] == 0xff {
            address = Array(address[12...])  // IPv4-mapped
        }
        if allowed.contains(where: { $0.contains(bytes: address) }) { return true }
        return !nonPublic.contains { $0.contains(bytes: address) }
    }
}
