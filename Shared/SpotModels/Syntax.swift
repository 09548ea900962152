/// Byte-level checks for the identifiers agents send on every request. Swift's Regex costs
/// about 50 µs a match on this machine kind, which would dominate the ingest path.
enum Syntax {
    static func isLower(_ b: UInt8) -> Bool { b >= 97 && b <= 122 }
    static func isDigit(_ b: UInt8) -> Bool { b >= 48 && b <= 57 }
    static func isHex(_ b: UInt8) -> Bool { isDigit(b) || (b >= 97 && b <= 102) }

    /// `[a-z][a-z0-9-]*\.[a-z0-9]+`. Slices, not splits: a pool id is read per price point.
    static func isInstanceType<C: BidirectionalCollection<UInt8>>(_ u: C) -> Bool {
        guard let dot = u.firstIndex(of: 46), u.lastIndex(of: 46) == dot else { return false }  // one "."
        let family = u[..<dot], size = u[u.index(after: dot)...]
        guard let first = family.first, isLower(first), !size.isEmpty else { return false }
        return family.allSatisfy { isLower($0) || isDigit($0) || $0 == 45 } && size.allSatisfy { isLower($0) || isDigit($0) }
    }

    /// `[a-z]{2}(-gov)?-[a-z]+-[0-9]{1,2}`
    static func isRegion<C: BidirectionalCollection<UInt8>>(_ u: C) -> Bool {
        guard let first = u.firstIndex(of: 45), let last = u.lastIndex(of: 45), first != last else { return false }  // "-"
        let area = u[..<first], number = u[u.index(after: last)...]
        var name = u[u.index(after: first)..<last]
        if let dash = name.firstIndex(of: 45) {
            guard name[..<dash].elementsEqual("gov".utf8) else { return false }
            name = name[name.index(after: dash)...]
        }
        return area.count == 2 && area.allSatisfy(isLower) && !name.isEmpty && name.allSatisfy(isLower)
            && (1...2).contains(number.count) && number.allSatisfy(isDigit)
    }

    /// `i-` followed by 8 to 17 lowercase hex digits.
    static func isInstanceID(_ s: String) -> Bool {
        let u = s.utf8
        guard u.count >= 10, u.count <= 19, u.starts(with: "i-".utf8) else { return false }
        return u.dropFirst(2).allSatisfy(isHex)
    }

    /// Letters, digits and `._:@/-`.
    static func isIdentifier(_ s: String) -> Bool {
        !s.isEmpty
            && s.utf8.allSatisfy { b in
                isLower(b) || isDigit(b) || (b >= 65 && b <= 90) || b == 46 || b == 95 || b == 58 || b == 64 || b == 47 || b == 45
            }
    }

    /// Dotted-quad IPv4.
    static func isIPv4(_ s: String) -> Bool {
        let parts = s.utf8.split(separator: 46, omittingEmptySubsequences: false)
        return parts.count == 4
            && parts.allSatisfy { p in
                (1...3).contains(p.count) && p.allSatisfy(isDigit) && (Int(String(decoding: p, as: UTF8.self)) ?? 256) <= 255
            }
    }

    /// Hex digits, colons and (for an embedded IPv4 tail) dots, with at least one colon.
    static func isIPv6(_ s: String) -> Bool {
        s.utf8.count <= 45 && s.utf8.contains(58)
            && s.utf8.allSatisfy { isDigit($0) || ($0 >= 97 && $0 <= 102) || ($0 >= 65 && $0 <= 70) || $0 == 58 || $0 == 46 }
    }
}
