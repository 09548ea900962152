import Foundation

/// A price history as server-rendered SVG: measured stretches as a solid line, interpolated
/// ones dashed in another colour (and named in the legend), breaks where buckets are missing,
/// the on-demand price as a reference line. Accessible: `role="img"` with a title and a
/// description that states the figures.
enum PriceChart {
    struct Point {
        var time: Date
        var price: Double
        var interpolated: Bool
    }

    static func svg(id: String, title: String, points: [Point], onDemand: Double?, from: Date, to: Date, width: Int = 720, height: Int = 220) -> String {
        let (left, right, top, bottom) = (56.0, 12.0, 12.0, 28.0)
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
        let days = Int((span / 86_400).rounded(.up))
        var utc = Calendar(identifier: .gregorian)
        utc.timeZone = TimeZone(identifier: "UTC")!
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        for d in 0...max(days, 1) {
            let t = from.addingTimeInterval(Double(d) * 86_400)
            guard t <= to else { break }
            guard x(t) < left + w - 24 else { continue }  // no label clipped at the right edge
            out +=
                "<text x=\"\(f(x(t)))\" y=\"\(height - 8)\" text-anchor=\"middle\" class=\"axis\">\(months[utc.component(.month, from: t) - 1]) \(utc.component(.day, from: t))</text>"
        }
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

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "\"", with: "&quot;")
    }
}
