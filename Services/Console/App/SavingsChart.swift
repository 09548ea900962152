import Foundation

/// Daily savings as server-rendered SVG: a bar a day as tall as that day's on-demand baseline,
/// split into what was spent (spot, on-demand and replicas) and what was saved. Accessible:
/// `role="img"` with a title and a description that states the figures; the page also lists
/// them in a table.
enum SavingsChart {
    struct Day {
        /// `YYYY-MM-DD`
        var day: String
        var onDemand: Double
        var spent: Double
        var saved: Double
    }

    static func svg(id: String, days: [Day], width: Int = 720, height: Int = 200) -> String {
        let frame = ChartFrame(id: id, width: width, height: height, left: 56, right: 12, top: 26, bottom: 28)
        let (left, top, w, h, f) = (frame.left, frame.top, frame.w, frame.h, ChartFrame.f)
        // the scale's top a round number, in round steps (0, 10, 20, 30, 40, 50)
        let scale = ChartFrame.roundScale(low: 0, high: max(days.map { max($0.onDemand, $0.spent + max($0.saved, 0)) }.max() ?? 0, 0.0001))
        let high = scale.last!
        func y(_ v: Double) -> Double { top + h * (1 - v / high) }
        let slot = w / Double(max(days.count, 1))
        let saved = days.map(\.saved).reduce(0, +)
        let baseline = days.map(\.onDemand).reduce(0, +)
        let share = baseline > 0 ? String(format: " (%.1f %% of %.2f USD on demand)", 100 * saved / baseline, baseline) : ""
        let period = days.isEmpty ? "" : " from \(days.first!.day) to \(days.last!.day)"
        var out = frame.open(
            title: "Savings per day, USD", description: "\(days.count) days\(period): \(String(format: "%.2f", saved)) USD saved\(share).")
        out += frame.grid(scale, label: { String(format: "%g", $0) }, unit: "USD", y: y)
        // a label every few days, so that at most about ten show
        let every = max(1, Int((Double(days.count) / 10).rounded(.up)))
        for (i, d) in days.enumerated() {
            let x = left + slot * Double(i) + slot * 0.15
            let bar = slot * 0.7
            let spentTop = y(d.spent)
            out += "<g><title>\(d.day): saved \(String(format: "%.2f", d.saved)), spent \(String(format: "%.2f", d.spent)) USD</title>"
            out += "<rect x=\"\(f(x))\" y=\"\(f(spentTop))\" width=\"\(f(bar))\" height=\"\(f(top + h - spentTop))\" class=\"spent\"/>"
            if d.saved > 0 {
                out +=
                    "<rect x=\"\(f(x))\" y=\"\(f(y(d.spent + d.saved)))\" width=\"\(f(bar))\" height=\"\(f(spentTop - y(d.spent + d.saved)))\" class=\"saved\"/>"
            }
            out += "</g>"
            if i % every == 0 {
                out += "<text x=\"\(f(x + bar / 2))\" y=\"\(height - 8)\" text-anchor=\"middle\" class=\"axis\">\(label(d.day))</text>"
            }
        }
        if days.isEmpty { out += frame.empty("no day accounted yet") }
        return out + "</svg>"
    }

    /// `Dec 7` for `2026-12-07`.
    static func label(_ day: String) -> String {
        let parts = day.split(separator: "-")
        guard parts.count == 3, let month = Int(parts[1]), (1...12).contains(month), let d = Int(parts[2]) else { return day }
        return "\(ChartFrame.months[month - 1]) \(d)"
    }
}
