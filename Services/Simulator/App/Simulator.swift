import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import SimulatorCore
import SpotMarket
import Synchronization
import UnixSignals

/// `spotguard-sim run`: the simulated region, its fleet and the control API, until stopped or
/// until `--sim-hours` simulated hours have passed (then the report).
public enum Simulator {
    public static func market(_ c: SimConfiguration) throws -> Market {
        guard let prices = c.pricesFile else { return try Market.synthetic(seed: c.seed, region: c.region) }
        guard let onDemandFile = c.onDemandFile else { throw SimConfiguration.Invalid(description: "--prices needs --on-demand (on-demand prices per type)") }
        let advisor = try c.advisorFile.map { try AdvisorBand.table(json: Data(contentsOf: URL(fileURLWithPath: $0))) }
        return try Market.replay(
            csv: String(contentsOfFile: prices, encoding: .utf8), region: c.region, onDemand: OnDemandPrices.read(onDemandFile, region: c.region),
            advisor: advisor, seed: c.seed)
    }

    public static func run(_ configuration: SimConfiguration, logger: Logger) async throws {
        let market = try market(configuration)
        let types = configuration.types.isEmpty ? Array(market.instanceTypes.prefix(2)) : configuration.types
        for t in types where market.onDemand[t] == nil { throw SimConfiguration.Invalid(description: "the market has no instance type \(t)") }
        let clock = SimClock(wallStart: Date(), simStart: market.history.start, hourSeconds: configuration.hourSeconds)
        let cloud = try Cloud(configuration: configuration, market: market, clock: clock, logger: logger)
        let fleet = Fleet(cloud: cloud, configuration: configuration, logger: logger)
        let authenticator = RequestAuthenticator(keys: [
            configuration.accessKeyId: (configuration.secretAccessKey, nil),
            cloud.instanceRole.accessKeyId: (cloud.instanceRole.secretAccessKey, cloud.instanceRole.token),
        ])
        let router = Router()
        EC2Endpoint(cloud: cloud, authenticator: authenticator).addRoutes(to: router)
        Control(cloud: cloud, fleet: fleet, configuration: configuration).addRoutes(to: router)
        let (started, signal) = AsyncStream.makeStream(of: Int.self)
        var quiet = logger
        quiet.logLevel = .warning
        let app = Application(
            router: router, configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "AmazonEC2"),
            onServerRunning: { channel in signal.yield(channel.localAddress?.port ?? 0) }, logger: quiet)
        let loop = SimLoop(cloud: cloud, fleet: fleet, configuration: configuration, types: types, started: started, logger: logger)
        let group = ServiceGroup(
            configuration: .init(
                services: [
                    .init(service: app),
                    .init(service: loop, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup),
                ], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        if let failure = loop.failure.withLock({ $0 }) { throw failure }
    }
}

/// Boots the fleet once the endpoint listens, then drives the clock: ticks every 200 ms,
/// replacements every second, and the end of a `--sim-hours` run.
final class SimLoop: Service, Sendable {
    let cloud: Cloud
    let fleet: Fleet
    let configuration: SimConfiguration
    let types: [String]
    let started: AsyncStream<Int>
    let logger: Logger
    let failure = Mutex<(any Error)?>(nil)

    init(cloud: Cloud, fleet: Fleet, configuration: SimConfiguration, types: [String], started: AsyncStream<Int>, logger: Logger) {
        self.cloud = cloud
        self.fleet = fleet
        self.configuration = configuration
        self.types = types
        self.started = started
        self.logger = logger
    }

    func run() async throws {
        do {
            try await cancelWhenGracefulShutdown { try await self.simulate() }
        } catch is CancellationError {
        } catch {
            failure.withLock { $0 = error }
            logger.error("simulator stopped", metadata: ["error": "\(error)"])
        }
        await cloud.shutdownAll()
    }

    private func simulate() async throws {
        var port = 0
        for await p in started {
            port = p
            break
        }
        let url = "http://\(configuration.host):\(port)"
        let fleet = self.fleet
        await cloud.setEndpoint(url) { notice in
            if !notice.drill { Task { _ = await fleet.watch(notice) } }
        }
        try Data((url + "\n").utf8).write(to: configuration.directory.appendingPathComponent("address"))
        say("spotguard-sim: EC2 endpoint and control API on \(url) (status: \(url)/sim/status)")
        try await fleet.bootstrap(types: types)
        let summary = await fleet.summary
        say(
            "spotguard-sim: fleet of \(summary.workloads.count) workloads (\(types.joined(separator: ", "))) for client \(summary.clientId); one simulated hour every \(configuration.hourSeconds) s"
        )
        var lastMaintain = Date()
        while !Task.isCancelled {
            let now = Date()
            await cloud.tick(now: now)
            if now.timeIntervalSince(lastMaintain) >= 1 {
                lastMaintain = now
                await fleet.maintain(now: now)
            }
            if let hours = configuration.simHours, cloud.clock.simHours(now) >= hours {
                try await finish()
                return
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    /// The end of a timed run: no new interruptions, the notices given run their course, then
    /// the report.
    private func finish() async throws {
        await cloud.stopFaults()
        let limit = Date().addingTimeInterval(configuration.noticeSeconds + configuration.rebalanceLeadSeconds + 20)
        while Date() < limit {
            await cloud.tick()
            if await cloud.awaitingTermination == 0, await fleet.watching == 0 { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        let report = await Report.make(cloud: cloud, fleet: fleet)
        let data = try Report.encoder.encode(report)
        if let file = configuration.reportFile { try data.write(to: URL(fileURLWithPath: file)) }
        say(report.text)
    }
}

/// A line on standard output, written at once (a log file sees progress as it happens).
func say(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }

/// A run's result: the bill against on-demand, what happened, and every notice's outcome.
struct Report: Codable, Sendable {
    var seed: UInt64
    var hourSeconds: Double
    var simulatedHours: Double
    var wallStart: Date
    var wallEnd: Date
    var pools: [String]
    var bill: Bill
    var savingsPercent: Double?
    var counters: [String: Int]
    var fleet: Fleet.Summary

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        e.dateEncodingStrategy = .iso8601
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return e
    }()

    static func make(cloud: Cloud, fleet: Fleet) async -> Report {
        let now = Date()
        let bill = await cloud.bill
        return Report(
            seed: cloud.configuration.seed, hourSeconds: cloud.clock.hourSeconds, simulatedHours: cloud.clock.simHours(now), wallStart: cloud.clock.wallStart,
            wallEnd: now, pools: cloud.market.pools, bill: bill, savingsPercent: bill.savingsPercent, counters: await cloud.counters, fleet: await fleet.summary
        )
    }

    var text: String {
        let n = fleet.notices.filter { !$0.drill }
        let ready = n.filter(\.readyReplicaAtNotice)
        let over = n.filter { $0.outcome == "failed_over" }
        let promoted = over.compactMap(\.promotedMs).sorted()
        return """
            spotguard-sim report: \(String(format: "%.1f", simulatedHours)) simulated hours in \(String(format: "%.0f", wallEnd.timeIntervalSince(wallStart))) s, seed \(seed)
              bill: spot $\(String(format: "%.4f", bill.spot)) + on-demand $\(String(format: "%.4f", bill.onDemand)) (replicas $\(String(format: "%.4f", bill.replicas))) vs all on-demand $\(String(format: "%.4f", bill.baseline)): savings \(savingsPercent.map { String(format: "%.1f %%", $0) } ?? "-")
              interruptions: \(counters["termination_notice", default: 0]) notices (\(counters["rebalance_recommendation", default: 0]) rebalance recommendations), \(ready.count) found a ready replica, \(over.count) failed over\(promoted.isEmpty ? "" : String(format: " (promotion after notice: median %.0f ms, max %.0f ms)", promoted[promoted.count / 2], promoted.last!))
              launches \(counters["launch", default: 0]), capacity shortages \(counters["capacity_shortage", default: 0]), replacements \(fleet.replacements), images \(counters["image", default: 0])
            """
    }
}
