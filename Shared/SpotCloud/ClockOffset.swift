import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// How far this machine's clock is off the servers it talks to, learned from their answers'
/// `Date` headers, and the time corrected by it.
///
/// An instance whose clock drifted (no NTP, a bad image) would otherwise stamp its reports with
/// the wrong time: ten minutes ahead, ingest refuses them as `timestamp_in_future`; behind, its
/// prices land in the wrong buckets; and AWS refuses requests signed more than five minutes off
/// (`RequestExpired`, `RequestTimeTooSkewed`). The header has whole seconds, so an estimate is
/// only taken when it differs from the current offset by more than that resolution and half the
/// round trip: a clock that is right stays uncorrected instead of jittering by a second.
public final class ClockOffset: Sendable {
    /// The process's clock correction, shared by the agent API and the AWS clients.
    public static let shared = ClockOffset()

    private let seconds = Mutex<TimeInterval>(0)
    /// This machine's clock (the system's; a test gives one that is off).
    public let local: @Sendable () -> Date

    public init(local: @escaping @Sendable () -> Date = { Date() }) { self.local = local }

    /// Seconds to add to the local clock (positive: it is behind).
    public var offset: TimeInterval { seconds.withLock { $0 } }

    /// The servers' time.
    public func now() -> Date { local().addingTimeInterval(offset) }

    /// Learns from one exchange sent and answered at `sent` and `received` by the local clock;
    /// `header` is the answer's `Date` (RFC 1123). Returns whether the offset changed.
    @discardableResult
    public func observe(header: String?, sent: Date, received: Date) -> Bool {
        guard let header, let server = Self.parse(header), received >= sent else { return false }
        let halfTrip = received.timeIntervalSince(sent) / 2
        // the server answered at some time in [server, server + 1 s), the local midpoint is the best guess of when
        let estimate = server.timeIntervalSince1970 + 0.5 - (sent.timeIntervalSince1970 + halfTrip)
        return seconds.withLock { current in
            guard abs(estimate - current) > 1 + halfTrip else { return false }
            current = abs(estimate) > 1 + halfTrip ? estimate.rounded() : 0
            return true
        }
    }

    /// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110's IMF-fixdate), nil when it is not one.
    static func parse(_ text: String) -> Date? {
        let f = text.split(separator: " ")
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        guard f.count == 6, f[5] == "GMT", let day = Int32(f[1]), let month = months.firstIndex(of: String(f[2])), let year = Int32(f[3]) else { return nil }
        let hms = f[4].split(separator: ":").compactMap { Int32($0) }
        guard hms.count == 3, (1...31).contains(day), (0...23).contains(hms[0]), (0...59).contains(hms[1]), (0...60).contains(hms[2]) else { return nil }
        var parts = tm()
        (parts.tm_year, parts.tm_mon, parts.tm_mday) = (year - 1900, Int32(month), day)
        (parts.tm_hour, parts.tm_min, parts.tm_sec) = (hms[0], hms[1], hms[2])
        return Date(timeIntervalSince1970: TimeInterval(timegm(&parts)))
    }
}
