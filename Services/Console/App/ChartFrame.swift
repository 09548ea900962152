import Foundation

/// What every dashboard chart shares: the `<svg role="img">` element named by its title and
/// described by a text that states the figures, the plot area and its margins, coordinates to a
/// tenth of a pixel, a value grid in round steps with its unit, and the UTC time axis.
struct ChartFrame {
    let id: String
    let width: Int
    let height: Int
    let left: Double
    let right: Double
    let top: Double
    let bottom: Double

    /// The plot area's width and height.
    var w: Double { Double(width) - left - right }
    var h: Double { Double(height) - top - bottom }

    /// A coordinate as written.
    static func f(_ v: Double) -> String { String(format: "%.1f", v) }

    /// The opening tag, the title and the description; with `box`, the plot area's background.
    func open(title: String, description: String, box: Bool = true) -> String {
        let f = Self.f
        var out = """
            <svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 \(width) \(height)" role="img" aria-labelledby="\(id)-t \(id)-d" class="chart">\
            <title id="\(id)-t">\(Self.escape(title))</title><desc id="\(id)-d">\(Self.escape(description))</desc>
            """
        if box { out += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(w))\" height=\"\(f(h))\" class=\"plot\"/>" }
        return out
    }

    /// The value grid: a line and a label at each of `values`, placed by `y`, and `unit` above
    /// the labels.
    func grid(_ values: [Double], label: (Double) -> String, unit: String, y: (Double) -> Double) -> String {
        let f = Self.f
        var out = ""
        for v in values {
            out += "<line x1=\"\(f(left))\" x2=\"\(f(left + w))\" y1=\"\(f(y(v)))\" y2=\"\(f(y(v)))\" class=\"grid\"/>"
            out += "<text x=\"\(f(left - 4))\" y=\"\(f(y(v) + 4))\" text-anchor=\"end\" class=\"axis\">\(label(v))</text>"
        }
        return out + "<text x=\"\(f(left - 4))\" y=\"\(f(top - 12))\" text-anchor=\"end\" class=\"axis unit\">\(Self.escape(unit))</text>"
    }

    /// Round UTC time labels from `from` to `to` on the baseline `baseline`, placed by `x`,
    /// none clipped at an edge, and `UTC` at the right end.
    func timeAxis(from: Date, to: Date, baseline: Double, x: (Date) -> Double) -> String {
        let f = Self.f
        var out = ""
        for (t, label) in Self.ticks(from: from, to: to) where x(t) >= left + 16 && x(t) < left + w - 24 {
            out += "<text x=\"\(f(x(t)))\" y=\"\(f(baseline))\" text-anchor=\"middle\" class=\"axis\">\(label)</text>"
        }
        return out + "<text x=\"\(f(left + w))\" y=\"\(f(baseline))\" text-anchor=\"end\" class=\"axis unit\">UTC</text>"
    }

    /// A line in the middle of the plot saying that there is nothing to draw.
    func empty(_ text: String) -> String {
        "<text x=\"\(Self.f(left + w / 2))\" y=\"\(Self.f(top + h / 2))\" text-anchor=\"middle\" class=\"empty\">\(Self.escape(text))</text>"
    }

    /// Grid values in round steps (1, 2 or 5 times a power of ten) from a multiple of the step
    /// at or below `low` to one at or above `high`, about `lines` steps apart.
    static func roundScale(low: Double, high: Double, lines: Int = 4) -> [Double] {
        let step = roundStep(max(high - low, 1e-9) / Double(lines))
        let first = (low / step).rounded(.down)
        let last = max((high / step).rounded(.up), first + 1)
        return (Int(first)...Int(last)).map { Double($0) * step }
    }

    /// The round step (1, 2 or 5 times a power of ten) at or above `raw`.
    static func roundStep(_ raw: Double) -> Double {
        let power = pow(10, (log10(raw)).rounded(.down))
        return [1.0, 2, 5, 10].map { $0 * power }.first { $0 >= raw } ?? 10 * power
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
