import Foundation

/// Simulated time: the market runs `3600 / hourSeconds` times faster than the wall clock,
/// from `simStart` (the first hour of the price history) at `wallStart`.
///
/// Only the market is accelerated — prices, interruption chances, capacity. Everything the
/// product itself times (heartbeats, the two-minute notice, failover) happens on the wall clock,
/// because that is the clock the product runs on.
public struct SimClock: Sendable {
    public let wallStart: Date
    public let simStart: Date
    /// Wall seconds per simulated hour.
    public let hourSeconds: Double

    public init(wallStart: Date, simStart: Date, hourSeconds: Double) {
        precondition(hourSeconds > 0)
        self.wallStart = wallStart
        self.simStart = simStart
        self.hourSeconds = hourSeconds
    }

    public var speed: Double { 3600 / hourSeconds }

    public func sim(_ wall: Date) -> Date { simStart.addingTimeInterval(wall.timeIntervalSince(wallStart) * speed) }
    public func wall(_ sim: Date) -> Date { wallStart.addingTimeInterval(sim.timeIntervalSince(simStart) / speed) }

    /// Simulated hours since the start (fractional).
    public func simHours(_ wall: Date) -> Double { wall.timeIntervalSince(wallStart) / hourSeconds }
    /// The index of the simulated hour running at `wall`.
    public func hour(_ wall: Date) -> Int { Int(simHours(wall).rounded(.down)) }
    /// The wall time at which simulated hour `h` begins.
    public func wallTime(ofHour h: Int) -> Date { wallStart.addingTimeInterval(Double(h) * hourSeconds) }
}
