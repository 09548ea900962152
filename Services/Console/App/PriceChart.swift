import Foundation

/// A price history as server-rendered SVG: measured stretches as a solid line, interpolated
/// ones dashed in another colour (and named in the legend), breaks where buckets are missing,
/// the on-demand price as a reference line. Accessible: `role="img"` with a title and a
/// description that states the figures.
enum PriceChart {
    /// The periods the prices page offers.
    enum Range: String, CaseIterable {
        case sixHours = "6h", day = "24h", week = "7d", month = "30d"

        var seconds: Int {
            switch self {
            case .sixHours: 6 * 3600
            case .day: 86_400
            case .week: 7 * 86_400
            case .month: 30 * 86_400
            }
        }

        var words: String {
            switch self {
            case .sixHours: "6 hours"
            case .day: "24 hours"
            case .week: "7 days"
            case .month: "30 days"
            }
        }
    }

    struct Point {
        var time: Date
        var price: Double
        var interpolated: Bool
    }

    static func svg(id: String, title: String, points: [Point], onDemand: Double?, from: Date, to: Date, width: Int = 720, height: Int = 220) -> String {
        let (left, right, top, bottom) = (56.0, 12.0, 26.0, 28.0)
        let w = Double(width) - left - right
        let h = Double(height) - top - bottom
        let prices = points.map(\.price) + (onDemand.map { [$0] } ?? [])
        let low = (prices.min() ?? 0) * 0.95
        let high = max((prices.max() ?? 1) * 1.05, low + 0.0001)
        let span = max(to.timeIntervalSince(from), 1)
        func x(_ d: Date) -> Double { left + w * d.timeIntervalSince(from) / span }
        func y(_ p: Double) -> Double { top + h * (1 - (p - low) / (high - low)) }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }

        // runs of consecutive buckets (≤ 10 min apart) with the same kind
        var runs: [(interpolated: Bool, points: [Point])] = []
        for p in points {
            if var last = runs.last, let prev = last.points.last, p.time.timeIntervalSince(prev.time) <= 600 {
                if last.interpolated == p.interpolated {
                    last.points.append(p)
                    runs[runs.count - 1] = last
                } else {
                    // the new run starts where the old one ended, so the line stays joined
                    runs.append((p.interpolated, [prev, p]))
                }
            } else {
                runs.append((p.interpolated, [p]))
            }
        }
        let measured = points.filter { !$0.interpolated }.count
        let interpolated = points.count - measured
        var out = """
            <svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 \(width) \(height)" role="img" aria-labelledby="\(id)-t \(id)-d" class="chart">\
            <title id="\(id)-t">\(escape(title))</title>\
            <desc id="\(id)-d">\(points.count) five-minute prices, \(measured) measured, \(interpolated) interpolated\
            \(points.isEmpty ? "" : String(format: ", from %.4f to %.4f USD per hour", points.map(\.price).min()!, points.map(\.price).max()!)).</desc>\
            <rect x="\(f(left))" y="\(f(top))" width="\(f(w))" height="\(f(h))" class="plot"/>
            """
        for i in 0...4 {
            let p = low + (high - low) * Double(i) / 4
            out += "<line x1=\"\(f(left))\" x2=\"\(f(left + w))\" y1=\"\(f(y(p)))\" y2=\"\(f(y(p)))\" class=\"grid\"/>"
            out += "<text x=\"\(f(left - 4))\" y=\"\(f(y(p) + 4))\" text-anchor=\"end\" class=\"axis\">\(String(format: "%.4f", p))</text>"
        }
        for (t, label) in ticks(from: from, to: to) where x(t) >= left + 16 && x(t) < left + w - 24 {  // none clipped at an edge
            out += "<text x=\"\(f(x(t)))\" y=\"\(height - 8)\" text-anchor=\"middle\" class=\"axis\">\(label)</text>"
        }
        // units: the price axis, and the time zone of the time axis
        out += "<text x=\"\(f(left - 4))\" y=\"\(f(top - 12))\" text-anchor=\"end\" class=\"axis unit\">USD/h</text>"
        out += "<text x=\"\(f(left + w))\" y=\"\(height - 8)\" text-anchor=\"end\" class=\"axis unit\">UTC</text>"
        if let onDemand {
            out +=
                "<line x1=\"\(f(left))\" x2=\"\(f(left + w))\" y1=\"\(f(y(onDemand)))\" y2=\"\(f(y(onDemand)))\" class=\"ondemand\"><title>on-demand \(String(format: "%.4f", onDemand))</title></line>"
        }
        for run in runs {
            let kind = run.interpolated ? "interpolated" : "measured"
            if run.points.count == 1, let p = run.points.first {
                out += "<circle cx=\"\(f(x(p.time)))\" cy=\"\(f(y(p.price)))\" r=\"2\" class=\"\(kind)\" data-kind=\"\(kind)\"/>"
            } else {
                let path = run.points.map { "\(f(x($0.time))),\(f(y($0.price)))" }.joined(separator: " ")
                out += "<polyline points=\"\(path)\" class=\"\(kind)\" data-kind=\"\(kind)\"/>"
            }
        }
        if points.isEmpty {
            out += "<text x=\"\(f(left + w / 2))\" y=\"\(f(top + h / 2))\" text-anchor=\"middle\" class=\"empty\">no clean prices in this period</text>"
        }
        return out + "</svg>"
    }

    /// Time-axis labels from `from` to `to`: at most about seven, on round UTC times (every 5,
    /// 15 or 30 minutes, 1, 3, 6 or 12 hours, or 1, 2 or 7 days, whichever fits), as `HH:MM`,
    /// or `Mon D` at midnight and for steps of a day or more.
    static func ticks(from: Date, to: Date) -> [(Date, String)] {
        let span = max(to.timeIntervalSince(from), 60)
        let steps: [Double] = [300, 900, 1800, 3600, 10_800, 21_600, 43_200, 86_400, 172_800, 604_800]
        let step = steps.first { span / $0 <= 7 } ?? steps.last!
        var utc = Calendar(identifier: .gregorian)
        utc.timeZone = TimeZone(identifier: "UTC")!
        var out: [(Date, String)] = []
        var t = Date(timeIntervalSince1970: (from.timeIntervalSince1970 / step).rounded(.up) * step)
        while t <= to {
            let c = utc.dateComponents([.month, .day, .hour, .minute], from: t)
            // a day's first label names the day
            let midnight = c.hour == 0 && c.minute == 0
            let label =
                step < 86_400 && !midnight
                ? String(format: "%02d:%02d", c.hour ?? 0, c.minute ?? 0) : "\(months[(c.month ?? 1) - 1]) \(c.day ?? 1)"
            out.append((t, label))
            t = t.addingTimeInterval(step)
        }
        return out
    }

    static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "\"", with: "&quot;")
    }
}
