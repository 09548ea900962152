import Metrics
import ServiceLifecycle

/// Every periodic loop of the services: runs its body every `period` — each wait drawn within
/// ±`jitter` of it, so copies started together drift apart — and at once when woken. One run at
/// a time; wake-ups during a run make one more. A run in progress finishes on graceful
/// shutdown, then the loop ends. Each run is counted and timed
/// (`spotguard_worker_runs_total{worker}`, `spotguard_worker_run_seconds{worker}`). Work that
/// must happen once however many copies run claims a row inside the body (`ScheduledJobs`,
/// `FOR UPDATE SKIP LOCKED`); the worker only decides when to look.
public final class PeriodicWorker: Sendable {
    public let name: String
    let period: Duration
    let jitter: Double
    let runAtStart: Bool
    private let wakeUps: AsyncStream<Void>
    private let wakeUp: AsyncStream<Void>.Continuation

    /// - Parameter runAtStart: run once as soon as `run` starts, rather than after a period.
    public init(_ name: String, every period: Duration, jitter: Double = 0.1, runAtStart: Bool = true) {
        self.name = name
        self.period = period
        self.jitter = min(max(jitter, 0), 0.5)
        self.runAtStart = runAtStart
        (wakeUps, wakeUp) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Run now (or right after the run in progress).
    public func wake() { wakeUp.yield() }

    /// Ends the loop after the run in progress (and one already asked for by a wake-up).
    public func stop() { wakeUp.finish() }

    /// The wait before a timed run for a draw in -1...1: the period stretched by at most
    /// ±jitter.
    public static func wait(_ period: Duration, jitter: Double, draw: Double) -> Duration {
        period * (1 + jitter * min(max(draw, -1), 1))
    }

    /// Runs `body` until cancelled or shut down gracefully; call it once.
    public func run(_ body: () async -> Void) async {
        let (period, jitter, wakeUp) = (self.period, self.jitter, self.wakeUp)
        let runs = Counter(label: "spotguard_worker_runs_total", dimensions: [("worker", name)])
        let seconds = Timer(label: "spotguard_worker_run_seconds", dimensions: [("worker", name)])
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: Self.wait(period, jitter: jitter, draw: Double.random(in: -1...1)))
                    wakeUp.yield()
                }
            }
            if runAtStart { wakeUp.yield() }
            for await _ in wakeUps.cancelOnGracefulShutdown() {
                let started = ContinuousClock.now
                await body()
                runs.increment()
                seconds.record(duration: ContinuousClock.now - started)
            }
            group.cancelAll()
        }
    }
}
