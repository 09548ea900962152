import Foundation

/// The features the learned engine looks at for one pool at one hour, from its last day of
/// hourly prices (24, oldest first, the price now last) and its place in the market. One definition serves
/// training, the back-test and the live pass.
public enum PriceFeatures {
    public static let names = [
        "log_price_to_on_demand", "change_1h", "change_24h", "volatility_6h", "vs_mean_24h", "vs_max_24h", "rank_in_market",
        "hour_sin", "hour_cos",
    ]

    public static func vector(hourly: [Double], onDemand: Double, rank: Int, marketSize: Int, hourOfDay: Int) -> [Double] {
        guard let price = hourly.last, price > 0, onDemand > 0 else { return Array(repeating: 0, count: names.count) }
        let day = hourly.suffix(24)
        let six = Array(hourly.suffix(6))
        let mean6 = six.reduce(0, +) / Double(six.count)
        let sd6 = (six.map { ($0 - mean6) * ($0 - mean6) }.reduce(0, +) / Double(six.count)).squareRoot()
        let mean24 = day.reduce(0, +) / Double(day.count)
        let angle = 2 * Double.pi * Double(hourOfDay) / 24
        return [
            log(price / onDemand),
            hourly.count >= 2 ? price / hourly[hourly.count - 2] - 1 : 0,
            price / day.first! - 1,
            mean6 > 0 ? sd6 / mean6 : 0,
            price / mean24 - 1,
            (day.max() ?? price) / price - 1,
            marketSize > 1 ? Double(rank) / Double(marketSize - 1) : 0,
            sin(angle), cos(angle),
        ]
    }
}

/// Logistic regression for "the pool's price rises by at least `riseThreshold` within the next
/// `horizonHours`", with the standardisation it was fitted with; `meanRise` is the mean relative
/// change of the next hours' mean price when that happened, so P × meanRise is the expected rise.
///
/// The threshold is the market's own: the 90th percentile of the rises seen in training (at
/// least 0.2 %). A fixed 10 % would never fire on calm markets (January 2024 in us-east-1 has
/// no 6-hour rise above 1.4 %) and fire constantly on wild ones.
public struct RiseModel: Codable, Sendable, Equatable {
    public var features: [String]
    public var means: [Double]
    public var scales: [Double]
    public var weights: [Double]
    public var bias: Double
    public var horizonHours: Int
    public var riseThreshold: Double
    public var meanRise: Double
    public var samples: Int
    public var positives: Int
    /// Evaluated on the last fifth of the hours, fitted on the rest before the final fit on all.
    public var holdoutLogLoss: Double
    public var holdoutBaseLogLoss: Double
    public var holdoutAuc: Double

    public init(
        features: [String], means: [Double], scales: [Double], weights: [Double], bias: Double, horizonHours: Int, riseThreshold: Double,
        meanRise: Double, samples: Int, positives: Int, holdoutLogLoss: Double, holdoutBaseLogLoss: Double, holdoutAuc: Double
    ) {
        self.features = features
        self.means = means
        self.scales = scales
        self.weights = weights
        self.bias = bias
        self.horizonHours = horizonHours
        self.riseThreshold = riseThreshold
        self.meanRise = meanRise
        self.samples = samples
        self.positives = positives
        self.holdoutLogLoss = holdoutLogLoss
        self.holdoutBaseLogLoss = holdoutBaseLogLoss
        self.holdoutAuc = holdoutAuc
    }

    public func probability(_ x: [Double]) -> Double {
        var z = bias
        for i in weights.indices { z += weights[i] * (x[i] - means[i]) / scales[i] }
        return 1 / (1 + exp(-z))
    }

    /// One training example.
    public struct Sample: Sendable {
        public var x: [Double]
        /// The highest price of the next hours relative to now, minus 1.
        public var maxRise: Double
        public var rose = false
        /// The next hours' mean price relative to now, minus 1.
        public var futureChange: Double
        public var hour: Int
    }

    /// Examples from hourly price series: for every pool and hour with a day of history and
    /// `horizon` hours of future, the features and how far the price rose.
    /// `markets` groups the pools that compete (one instance type in one region).
    public static func samples(
        prices: [String: [Double?]], markets: [[String]], onDemand: [String: Double], startHour: Date, horizon: Int = 6
    ) -> [Sample] {
        var out: [Sample] = []
        let calendar = Calendar(identifier: .gregorian)
        let utc = TimeZone(identifier: "UTC")!
        let hours = prices.values.map(\.count).max() ?? 0
        guard hours > 24 + horizon else { return [] }
        for market in markets {
            guard let od = market.lazy.compactMap({ onDemand[$0] }).first else { continue }
            for t in 23..<(hours - horizon) {
                let now = market.compactMap { p -> (String, Double)? in prices[p]?[t].map { (p, $0) } }.sorted { ($0.1, $0.0) < ($1.1, $1.0) }
                let hourOfDay = calendar.dateComponents(in: utc, from: startHour.addingTimeInterval(Double(t) * 3600)).hour ?? 0
                for (rank, (pool, price)) in now.enumerated() {
                    let series = prices[pool]!
                    let history = series[max(0, t - 23)...t].compactMap { $0 }
                    let future = series[(t + 1)...(t + horizon)].compactMap { $0 }
                    guard history.count >= 24, future.count == horizon else { continue }
                    out.append(
                        Sample(
                            x: PriceFeatures.vector(hourly: history, onDemand: od, rank: rank, marketSize: now.count, hourOfDay: hourOfDay),
                            maxRise: (future.max() ?? price) / price - 1,
                            futureChange: future.reduce(0, +) / Double(future.count) / price - 1, hour: t))
                }
            }
        }
        return out
    }

    /// Fits by iteratively reweighted least squares with an L2 penalty (deterministic); the
    /// hold-out figures come from a fit on the first four fifths of the hours.
    public static func fit(_ unlabelled: [Sample], horizon: Int = 6, l2: Double = 1.0) -> RiseModel? {
        guard let n = unlabelled.first?.x.count, unlabelled.count >= 50 else { return nil }
        let rises = unlabelled.map(\.maxRise).sorted()
        let threshold = max(0.002, rises[rises.count * 9 / 10])
        let samples = unlabelled.map { s in
            var l = s
            l.rose = s.maxRise >= threshold - 1e-12
            return l
        }
        guard samples.contains(where: \.rose), samples.contains(where: { !$0.rose }) else { return nil }
        let hours = samples.map(\.hour).sorted()
        let cut = hours[hours.count * 4 / 5]
        let (train, test) = (samples.filter { $0.hour < cut }, samples.filter { $0.hour >= cut })
        var model = solve(samples, n: n, l2: l2)
        model.horizonHours = horizon
        model.riseThreshold = threshold
        if train.contains(where: \.rose), train.contains(where: { !$0.rose }), !test.isEmpty {
            let early = solve(train, n: n, l2: l2)
            let base = Double(train.filter(\.rose).count) / Double(train.count)
            func loss(_ p: Double, _ y: Bool) -> Double { -log(max(1e-12, y ? p : 1 - p)) }
            model.holdoutLogLoss = test.map { loss(early.probability($0.x), $0.rose) }.reduce(0, +) / Double(test.count)
            model.holdoutBaseLogLoss = test.map { loss(base, $0.rose) }.reduce(0, +) / Double(test.count)
            model.holdoutAuc = auc(test.map { (early.probability($0.x), $0.rose) })
        }
        return model
    }

    static func solve(_ samples: [Sample], n: Int, l2: Double) -> RiseModel {
        let m = Double(samples.count)
        var means = Array(repeating: 0.0, count: n)
        var scales = Array(repeating: 0.0, count: n)
        for s in samples { for i in 0..<n { means[i] += s.x[i] / m } }
        for s in samples { for i in 0..<n { scales[i] += (s.x[i] - means[i]) * (s.x[i] - means[i]) / m } }
        scales = scales.map { $0 > 1e-12 ? $0.squareRoot() : 1 }
        let xs = samples.map { s in [1.0] + (0..<n).map { (s.x[$0] - means[$0]) / scales[$0] } }
        let ys = samples.map { $0.rose ? 1.0 : 0.0 }
        var w = Array(repeating: 0.0, count: n + 1)
        for _ in 0..<25 {
            var h = Array(repeating: Array(repeating: 0.0, count: n + 1), count: n + 1)
            var g = Array(repeating: 0.0, count: n + 1)
            for (x, y) in zip(xs, ys) {
                var z = 0.0
                for j in 0...n { z += w[j] * x[j] }
                let p = 1 / (1 + exp(-z))
                let v = max(p * (1 - p), 1e-9)
                for j in 0...n {
                    g[j] += (y - p) * x[j]
                    for k in j...n { h[j][k] += v * x[j] * x[k] }
                }
            }
            for j in 0...n {
                for k in 0..<j { h[j][k] = h[k][j] }
                if j > 0 {  // the intercept is not penalised
                    h[j][j] += l2
                    g[j] -= l2 * w[j]
                }
            }
            guard let step = gaussianSolve(h, g) else { break }
            for j in 0...n { w[j] += step[j] }
            if step.map(abs).max() ?? 0 < 1e-8 { break }
        }
        let risers = samples.filter(\.rose)
        return RiseModel(
            features: PriceFeatures.names, means: means, scales: scales, weights: Array(w.dropFirst()), bias: w[0], horizonHours: 6,
            riseThreshold: 0.10, meanRise: risers.isEmpty ? 0 : risers.map(\.futureChange).reduce(0, +) / Double(risers.count),
            samples: samples.count, positives: risers.count, holdoutLogLoss: 0, holdoutBaseLogLoss: 0, holdoutAuc: 0)
    }

    static func gaussianSolve(_ a: [[Double]], _ b: [Double]) -> [Double]? {
        var a = a
        var b = b
        let n = b.count
        for col in 0..<n {
            guard let pivot = (col..<n).max(by: { abs(a[$0][col]) < abs(a[$1][col]) }), abs(a[pivot][col]) > 1e-12 else { return nil }
            a.swapAt(col, pivot)
            b.swapAt(col, pivot)
            for row in (col + 1)..<n {
                let f = a[row][col] / a[col][col]
                if f == 0 { continue }
                for k in col..<n { a[row][k] -= f * a[col][k] }
                b[row] -= f * b[col]
            }
        }
        var x = Array(repeating: 0.0, count: n)
        for row in stride(from: n - 1, through: 0, by: -1) {
            var s = b[row]
            for k in (row + 1)..<n { s -= a[row][k] * x[k] }
            x[row] = s / a[row][row]
        }
        return x
    }

    /// How the model does on examples it was not fitted on (another region): rises by its own
    /// threshold, the base rate its training saw.
    public struct Judged: Sendable {
        public var samples: Int
        public var positives: Int
        public var auc: Double
        public var logLoss: Double
        public var baseLogLoss: Double
    }

    public func evaluate(_ unlabelled: [Sample]) -> Judged {
        let labelled = unlabelled.map { ($0.x, $0.maxRise >= riseThreshold - 1e-12) }
        let base = samples > 0 ? min(1 - 1e-6, max(1e-6, Double(positives) / Double(samples))) : 0.5
        func loss(_ p: Double, _ y: Bool) -> Double { -log(max(1e-12, y ? p : 1 - p)) }
        let n = Double(max(1, labelled.count))
        return Judged(
            samples: labelled.count, positives: labelled.filter(\.1).count, auc: Self.auc(labelled.map { (probability($0.0), $0.1) }),
            logLoss: labelled.map { loss(probability($0.0), $0.1) }.reduce(0, +) / n, baseLogLoss: labelled.map { loss(base, $0.1) }.reduce(0, +) / n)
    }

    /// Area under the ROC curve: the chance a random riser scores above a random non-riser.
    static func auc(_ scored: [(Double, Bool)]) -> Double {
        let sorted = scored.sorted { $0.0 < $1.0 }
        var rankSum = 0.0
        var i = 0
        while i < sorted.count {
            var j = i
            while j + 1 < sorted.count, sorted[j + 1].0 == sorted[i].0 { j += 1 }
            let rank = Double(i + j) / 2 + 1
            for k in i...j where sorted[k].1 { rankSum += rank }
            i = j + 1
        }
        let pos = Double(scored.filter(\.1).count)
        let neg = Double(scored.count) - pos
        guard pos > 0, neg > 0 else { return 0.5 }
        return (rankSum - pos * (pos + 1) / 2) / (pos * neg)
    }
}

/// The cost engine, judged on the model's view of the next hours instead of the last ones:
/// each pool's expected price is its price × (1 + P(rise) × meanRise), so a pool the model
/// expects to rise is neither entered nor kept when a calmer one is cheaper, and one it expects
/// to calm is not left for a move that would not pay. Interruption pricing, escapes and the
/// hysteresis stay the cost engine's. Off by default: no agent uses it unless set to `learned`
/// (the back-test's leave-one-region-out figures say why).
public struct LearnedEngine: DecisionEngine {
    public var name: String { "learned" }
    public var model: RiseModel
    public var base: CostEngine

    public init(model: RiseModel, base: CostEngine = CostEngine()) {
        self.model = model
        self.base = base
    }

    public func riseProbabilities(_ input: DecisionInput) -> [String: Double] {
        let ranked = input.pools.sorted { ($0.price, $0.pool) < ($1.price, $1.pool) }
        var out: [String: Double] = [:]
        for (rank, p) in ranked.enumerated() {
            let hourly = p.hourly.isEmpty ? [p.price] : p.hourly
            out[p.pool] = model.probability(
                PriceFeatures.vector(
                    hourly: hourly, onDemand: input.onDemandPrice, rank: rank, marketSize: ranked.count, hourOfDay: input.hourOfDay))
        }
        return out
    }

    public func decide(_ input: DecisionInput) -> Decision {
        let probabilities = riseProbabilities(input)
        var judged = input
        judged.pools = input.pools.map { p in
            var q = p
            let factor = 1 + (probabilities[p.pool] ?? 0) * model.meanRise
            q.price = p.price * factor
            q.recentMean = p.recentMean * factor
            return q
        }
        var decision = base.decide(judged)
        if let current = input.current.pool, let p = probabilities[current] { decision.scores["rise_probability_current"] = p }
        if let target = decision.target.pool, let p = probabilities[target] { decision.scores["rise_probability_target"] = p }
        let shown = [input.current.pool, decision.target.pool].compactMap { $0 }.uniqued().compactMap { pool in
            probabilities[pool].map { "\(pool) \(String(format: "%.0f %%", $0 * 100))" }
        }
        if !shown.isEmpty {
            decision.reason += String(
                format: "; model: chance of a ≥ %.1f %% rise within %d h: %@", model.riseThreshold * 100, model.horizonHours,
                shown.joined(separator: ", "))
        }
        return decision
    }
}

extension Array where Element: Hashable {
    func uniqued() -> [Element] {
        var seen = Set<Element>()
        return filter { seen.insert($0).inserted }
    }
}
