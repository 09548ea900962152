import Foundation

/// One minute (or sample period) of a soak run (`spotguard-bench soak`): what each service
/// process held and what the load saw.
public struct SoakSample: Codable, Sendable, Equatable {
    /// Seconds since the run began.
    public var at: Double
    /// Resident memory per service, MiB.
    public var rssMebibytes: [String: Double]
    /// Open file descriptors (sockets included) per service.
    public var descriptors: [String: Int]
    /// Connections to the database, all clients.
    public var databaseConnections: Int
    /// Ready + unacknowledged messages per queue.
    public var queues: [String: Int]
    /// Bytes per table (a partitioned table with its partitions), the largest.
    public var tableBytes: [String: Int]
    /// The period's requests, answers other than 202 among them, and the p99 of the 202s, ms.
    public var requests: Int
    public var refused: Int
    public var p99ms: Double

    public init(
        at: Double, rssMebibytes: [String: Double], descriptors: [String: Int], databaseConnections: Int, queues: [String: Int], tableBytes: [String: Int],
        requests: Int, refused: Int, p99ms: Double
    ) {
        self.at = at
        self.rssMebibytes = rssMebibytes
        self.descriptors = descriptors
        self.databaseConnections = databaseConnections
        self.queues = queues
        self.tableBytes = tableBytes
        self.requests = requests
        self.refused = refused
        self.p99ms = p99ms
    }
}

/// The soak's pass rule (issue text: no monotonic growth in memory or descriptors, p99 within
/// 20 % of the first ten minutes). Growth is judged on medians of the run's first and last
/// thirds after the first sample (start-up), so one noisy minute neither fails nor passes a run:
/// memory may grow by 20 % and 8 MiB at most, descriptors by 20 and 20 %, and the last third's
/// median p99 may be at most 20 % above the first third's (the first ten minutes in a run of
/// thirty or more).
public enum SoakJudge {
    public static func failures(_ samples: [SoakSample]) -> [String] {
        let steady = Array(samples.dropFirst())
        guard steady.count >= 3 else { return ["too few samples to judge (\(samples.count))"] }
        let third = max(1, steady.count / 3)
        let (first, last) = (Array(steady.prefix(third)), Array(steady.suffix(third)))
        var out: [String] = []
        for service in Set(steady.flatMap(\.rssMebibytes.keys)).sorted() {
            let a = median(first.compactMap { $0.rssMebibytes[service] })
            let b = median(last.compactMap { $0.rssMebibytes[service] })
            if b > a * 1.2 && b > a + 8 { out.append(String(format: "%@: memory grew from %.1f to %.1f MiB", service, a, b)) }
            let fa = median(first.compactMap { $0.descriptors[service].map(Double.init) })
            let fb = median(last.compactMap { $0.descriptors[service].map(Double.init) })
            if fb > fa * 1.2 && fb > fa + 20 { out.append(String(format: "%@: descriptors grew from %.0f to %.0f", service, fa, fb)) }
        }
        let tenMinutes = steady.filter { $0.at <= (steady.first?.at ?? 0) + 600 }
        let baseline = median((steady.count >= 30 ? tenMinutes : first).map(\.p99ms))
        let late = median(last.map(\.p99ms))
        if late > baseline * 1.2 { out.append(String(format: "p99 rose from %.1f ms to %.1f ms", baseline, late)) }
        return out
    }

    static func median(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return 0 }
        let s = values.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
}

/// The soak's curves as one SVG: memory per service (MiB) above, the load's p99 (ms) below,
/// minutes along.
public enum SoakChart {
    public static func svg(_ samples: [SoakSample], title: String) -> String {
        let (width, panel, left, top) = (900.0, 260.0, 70.0, 40.0)
        let minutes = max(samples.last.map { $0.at / 60 } ?? 1, 1)
        let services = Set(samples.flatMap(\.rssMebibytes.keys)).sorted()
        let colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
        var out = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(top * 2 + panel * 2 + 60))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(left)" y="22" font-size="15">\(escape(title))</text>

            """
        func panelAt(_ y0: Double, label: String, series: [(String, String, [Double])]) {
            let peak = max(series.flatMap(\.2).max() ?? 1, 1) * 1.1
            let plotWidth = width - left - 190
            out += "<rect x=\"\(left)\" y=\"\(y0)\" width=\"\(plotWidth)\" height=\"\(panel)\" fill=\"none\" stroke=\"#999\"/>\n"
            out += "<text x=\"10\" y=\"\(y0 + panel / 2)\" transform=\"rotate(-90 14 \(y0 + panel / 2))\">\(escape(label))</text>\n"
            for k in 0...4 {
                let v = peak * Double(k) / 4
                let y = y0 + panel - panel * Double(k) / 4
                out += String(format: "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%.0f</text>\n", left - 6, y + 4, v)
            }
            for (i, (name, colour, values)) in series.enumerated() {
                let points = zip(samples, values).map { s, v in
                    String(format: "%.1f,%.1f", left + plotWidth * (s.at / 60) / minutes, y0 + panel - panel * v / peak)
                }
                out += "<polyline fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\" points=\"\(points.joined(separator: " "))\"/>\n"
                out += "<text x=\"\(left + plotWidth + 10)\" y=\"\(y0 + 14 + Double(i) * 16)\" fill=\"\(colour)\">\(escape(name))</text>\n"
            }
            out += String(
                format: "<text x=\"%.0f\" y=\"%.0f\">0</text><text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">%.0f min</text>\n",
                left, y0 + panel + 16, left + plotWidth, y0 + panel + 16, minutes)
        }
        panelAt(
            top, label: "resident memory, MiB",
            series: services.enumerated().map { i, s in (s, colours[i % colours.count], samples.map { $0.rssMebibytes[s] ?? 0 }) })
        panelAt(top + panel + 50, label: "p99 of 202 answers, ms", series: [("p99", "#333333", samples.map(\.p99ms))])
        return out + "</svg>\n"
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
