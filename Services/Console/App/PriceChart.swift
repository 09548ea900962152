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
        let frame = ChartFrame(id: id, width: width, height: height, left: 56, right: 12, top: 26, bottom: 28)
        let (left, top, w, h, f) = (frame.left, frame.top, frame.w, frame.h, ChartFrame.f)
        let prices = points.map(\.price) + (onDemand.map { [$0] } ?? [])
        let scale = ChartFrame.roundScale(low: (prices.min() ?? 0) * 0.95, high: max((prices.max() ?? 1) * 1.05, 0.0001))
        let (low, high) = (scale.first!, scale.last!)
        let span = max(to.timeIntervalSince(from), 1)
        func x(_ d: Date) -> Double { left + w * d.timeIntervalSince(from) / span }
        func y(_ p: Double) -> Double { top + h * (1 - (p - low) / (high - low)) }

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
        let range = points.isEmpty ? "" : String(format: ", from %.4f to %.4f USD per hour", points.map(\.price).min()!, points.map(\.price).max()!)
        var out = frame.open(
            title: title, description: "\(points.count) five-minute prices, \(measured) measured, \(points.count - measured) interpolated\(range).")
        out += frame.grid(scale, label: { String(format: "%.4f", $0) }, unit: "USD/h", y: y)
        out += frame.timeAxis(from: from, to: to, baseline: Double(height - 8), x: x)
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
        if points.isEmpty { out += frame.empty("no clean prices in this period") }
        return out + "</svg>"
    }
}
