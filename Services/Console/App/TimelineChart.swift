import Foundation
import SpotModels

/// The last days' moves as server-rendered SVG: a row per kind (failover, automatic switch,
/// manual, emergency, rebalance) and a mark per move at its time, so that a burst of failovers
/// stands out. Accessible: `role="img"` with a title and a description that counts each kind;
/// the page lists every move below it.
enum TimelineChart {
    struct Move {
        var time: Date
        var trigger: SwitchTrigger
    }

    /// Failovers first: they are what an operator looks for.
    static let rows: [SwitchTrigger] = [.failover, .emergency, .rebalance, .autoSwitch, .manual]

    static func svg(id: String, moves: [Move], from: Date, to: Date, width: Int = 720) -> String {
        let rowHeight = 22.0
        let frame = ChartFrame(id: id, width: width, height: Int(8 + rowHeight * Double(rows.count) + 28), left: 150, right: 12, top: 8, bottom: 28)
        let (left, top, w, f) = (frame.left, frame.top, frame.w, ChartFrame.f)
        let span = max(to.timeIntervalSince(from), 1)
        func x(_ d: Date) -> Double { left + w * d.timeIntervalSince(from) / span }
        let counts = rows.map { kind in (kind, moves.filter { $0.trigger == kind }.count) }
        let summary = counts.map { "\($0.1) \(Wording.of($0.0.rawValue).lowercased())" }.joined(separator: ", ")
        var out = frame.open(
            title: "Moves from \(ConsoleController.time(from)) to \(ConsoleController.time(to))",
            description: "\(moves.count) move\(moves.count == 1 ? "" : "s"): \(summary).", box: false)
        for (i, (kind, count)) in counts.enumerated() {
            let y = top + rowHeight * Double(i)
            out += "<rect x=\"\(f(left))\" y=\"\(f(y))\" width=\"\(f(w))\" height=\"\(f(rowHeight - 4))\" class=\"plot\"/>"
            out +=
                "<text x=\"\(f(left - 6))\" y=\"\(f(y + rowHeight / 2 + 2))\" text-anchor=\"end\" class=\"axis\">\(Wording.of(kind.rawValue)) (\(count))</text>"
            for m in moves where m.trigger == kind && m.time >= from && m.time <= to {
                out +=
                    "<line x1=\"\(f(x(m.time)))\" x2=\"\(f(x(m.time)))\" y1=\"\(f(y + 2))\" y2=\"\(f(y + rowHeight - 6))\" class=\"move move-\(kind.rawValue.replacingOccurrences(of: "_", with: "-"))\"/>"
            }
        }
        return out + frame.timeAxis(from: from, to: to, baseline: top + rowHeight * Double(rows.count) + 14, x: x) + "</svg>"
    }
}
