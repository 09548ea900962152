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
        let (left, right, top, bottom) = (56.0, 12.0, 26.0, 28.0)
        let w = Double(width) - left - right
        let h = Double(height) - top - bottom
        // the scale's top a round number, in round steps (0, 10, 20, 30, 40, 50)
        let tallest = max(days.map { max($0.onDemand, $0.spent + max($0.saved, 0)) }.max() ?? 0, 0.0001)
        let step = roundStep(tallest / 4)
        let lines = Int((tallest / step).rounded(.up))
        let high = step * Double(max(lines, 1))
        func y(_ v: Double) -> Double { top + h * (1 - v / high) }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        let slot = w / Double(max(days.count, 1))
        let saved = days.map(\.saved).reduce(0, +)
        let baseline = days.map(\.onDemand).reduce(0, +)
        let share = baseline > 0 ? String(format: " (%.1f %% of %.2f USD on demand)", 100 * saved / baseline, baseline) : ""
        var out = """
            <svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 \(width) \(height)" role="img" aria-labelledby="\(id)-t \(id)-d" class="chart">\
            <title id="\(id)-t">Savings per day, USD</title>\
            <desc id="\(id)-d">\(days.count) days\(days.isEmpty ? "" : " from \(days.first!.day) to \(days.last!.day)"): \
            \(String(format: "%.2f", saved)) USD saved\(share).</desc>\
            <rect x="\(f(left))" y="\(f(top))" width="\(f(w))" height="\(f(h))" class="plot"/>
            """
        for i in 0...max(lines, 1) {
            let v = step * Double(i)
            out += "<line x1=\"\(f(left))\" x2=\"\(f(left + w))\" y1=\"\(f(y(v)))\" y2=\"\(f(y(v)))\" class=\"grid\"/>"
            out += "<text x=\"\(f(left - 4))\" y=\"\(f(y(v) + 4))\" text-anchor=\"end\" class=\"axis\">\(String(format: "%g", v))</text>"
        }
        out += "<text x=\"\(f(left - 4))\" y=\"\(f(top - 12))\" text-anchor=\"end\" class=\"axis unit\">USD</text>"
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
        if days.isEmpty {
            out += "<text x=\"\(f(left + w / 2))\" y=\"\(f(top + h / 2))\" text-anchor=\"middle\" class=\"empty\">no day accounted yet</text>"
        }
        return out + "</svg>"
    }

    /// The round step (1, 2 or 5 times a power of ten) at or above `raw`.
    static func roundStep(_ raw: Double) -> Double {
        let power = pow(10, (log10(raw)).rounded(.down))
        return [1.0, 2, 5, 10].map { $0 * power }.first { $0 >= raw } ?? 10 * power
    }

    /// `Dec 7` for `2026-12-07`.
    static func label(_ day: String) -> String {
        let parts = day.split(separator: "-")
        guard parts.count == 3, let month = Int(parts[1]), (1...12).contains(month), let d = Int(parts[2]) else { return day }
        return "\(PriceChart.months[month - 1]) \(d)"
    }
}
