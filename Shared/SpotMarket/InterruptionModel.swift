import Foundation

/// The chance per hour that a spot instance in a pool is interrupted: one estimate, shared by
/// the decision engine (live pass and back-test) and the replica coordinator.
///
/// A Beta–Binomial per pool. The prior is the Spot Advisor band of the pool's instance type
/// (its monthly rate over 730 hours), worth `priorInstanceHours` of observation; the fleet's
/// own record updates it: interruptions (a termination notice counts 1, a rebalance
/// recommendation `rebalanceWeight`) over instance-hours in the pool, replicas included. The
/// record decays with a half-life of `halfLifeHours`, so what happened weeks ago weighs little
/// and a pool without news drifts back to its prior: one interruption in a pool the fleet left
/// can never keep it out for good (the ratchet an undecayed record has — a pool nobody runs in
/// collects no exposure to dilute its one interruption).
public struct InterruptionModel: Sendable, Equatable, Codable {
    public var priorInstanceHours = 720.0
    public var halfLifeHours = 168.0
    public var rebalanceWeight = 0.25
    /// The rate assumed without an Advisor band: the middle band (10–15 %), unknown is not safe.
    public var unknownMonthlyRate = 0.125

    public init() {}

    /// The fleet's decayed record in one pool.
    public struct Evidence: Sendable, Equatable, Codable {
        /// Decayed count of interruptions (rebalance recommendations weighted).
        public var interruptions: Double
        /// Decayed instance-hours in the pool.
        public var exposureHours: Double

        public init(interruptions: Double = 0, exposureHours: Double = 0) {
            self.interruptions = interruptions
            self.exposureHours = exposureHours
        }
    }

    /// The weight of evidence `ageHours` old.
    public func weight(ageHours: Double) -> Double {
        guard ageHours.isFinite, ageHours > 0 else { return 1 }
        return exp2(-ageHours / halfLifeHours)
    }

    /// The decayed instance-hours of an instance that ran from `startAgoHours` until
    /// `endAgoHours` before now (0 while it still runs): the integral of the weight over that time.
    public func exposure(startAgoHours: Double, endAgoHours: Double) -> Double {
        let (a, b) = (max(0, min(startAgoHours, endAgoHours)), max(0, max(startAgoHours, endAgoHours)))
        guard a.isFinite, b.isFinite else { return 0 }
        let tau = halfLifeHours / M_LN2
        return tau * (exp(-a / tau) - exp(-b / tau))
    }

    /// One hour later: every piece of evidence weighs a little less (the back-test's update).
    public func aged(_ e: Evidence, hours: Double = 1) -> Evidence {
        let w = weight(ageHours: hours)
        return Evidence(interruptions: e.interruptions * w, exposureHours: e.exposureHours * w)
    }

    /// The prior's hourly rate for a band.
    public func priorHourly(_ band: AdvisorBand?) -> Double { (band?.monthlyRate ?? unknownMonthlyRate) / 730 }

    /// The posterior mean chance of an interruption per instance-hour.
    public func hourly(band: AdvisorBand?, evidence: Evidence) -> Double {
        let k = evidence.interruptions.isFinite ? max(0, evidence.interruptions) : 0
        let n = evidence.exposureHours.isFinite ? max(0, evidence.exposureHours) : 0
        return min(1, (priorHourly(band) * priorInstanceHours + k) / (priorInstanceHours + n))
    }

    /// The same as a monthly rate (730 hours), the Advisor's unit.
    public func monthly(band: AdvisorBand?, evidence: Evidence) -> Double { min(1, hourly(band: band, evidence: evidence) * 730) }
}
