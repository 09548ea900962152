import Foundation
import Testing
import ToolSupport

/// The soak's pass rule (`make soak`), on made-up curves: flat passes, a leak or a slowing
/// load fails, one noisy minute does not.
@Suite struct SoakJudgeTests {
    func curve(_ rss: (Int) -> Double, fds: (Int) -> Int = { _ in 40 }, p99: (Int) -> Double = { _ in 20 }, minutes: Int = 30) -> [SoakSample] {
        (0..<minutes).map { m in
            SoakSample(
                at: Double(m + 1) * 60, rssMebibytes: ["spotguard-sef": rss(m)], descriptors: ["spotguard-sef": fds(m)], databaseConnections: 10,
                queues: [:], tableBytes: [:], requests: 1500, refused: 0, p99ms: p99(m))
        }
    }

    @Test func aFlatRunPassesEvenWithOneNoisyMinute() {
        #expect(SoakJudge.failures(curve({ $0 == 25 ? 90 : 40 }, p99: { $0 == 27 ? 200 : 20 })).isEmpty)
    }

    @Test func aLeakFails() {
        let failures = SoakJudge.failures(curve({ 40 + Double($0) * 1.5 }))
        #expect(failures.count == 1 && failures[0].hasPrefix("spotguard-sef: memory grew"), "\(failures)")
    }

    @Test func leakedDescriptorsFail() {
        #expect(SoakJudge.failures(curve({ _ in 40 }, fds: { 40 + $0 * 3 })).first?.contains("descriptors grew") == true)
    }

    @Test func aSlowingLoadFails() {
        #expect(SoakJudge.failures(curve({ _ in 40 }, p99: { 20 + Double($0) })).first?.hasPrefix("p99 rose") == true)
    }

    @Test func theChartHasACurvePerServiceAndOneForP99() {
        let svg = SoakChart.svg(curve({ _ in 40 }), title: "a <test>")
        #expect(svg.components(separatedBy: "<polyline").count - 1 == 2)
        #expect(svg.contains("a &lt;test&gt;") && svg.hasPrefix("<svg"))
    }
}
