import SpotRuntime
import Testing

/// The one periodic loop every service uses: its wait and its wake-ups, without the clock.
@Suite struct PeriodicWorkerTests {
    @Test func theWaitStaysWithinTheJitter() {
        #expect(PeriodicWorker.wait(.seconds(10), jitter: 0.1, draw: -1) == .seconds(9))
        #expect(PeriodicWorker.wait(.seconds(10), jitter: 0.1, draw: 0) == .seconds(10))
        #expect(PeriodicWorker.wait(.seconds(10), jitter: 0.1, draw: 1) == .seconds(11))
        #expect(PeriodicWorker.wait(.seconds(10), jitter: 0.1, draw: 7) == .seconds(11), "a draw outside -1...1 is clamped")
    }

    /// The period is an hour, so every run here comes from a wake-up: none at start, one per
    /// wake, and the three wake-ups during a run make exactly one more run (`stop` ends the loop
    /// only after every run already asked for).
    @Test func wakeUpsDuringARunMakeOneMoreRun() async {
        let worker = PeriodicWorker("test", every: .seconds(3600), runAtStart: false)
        let (entered, enter) = AsyncStream.makeStream(of: Int.self)
        let (releases, release) = AsyncStream.makeStream(of: Void.self)
        let loop = Task {
            var runs = 0
            var gate = releases.makeAsyncIterator()
            await worker.run {
                runs += 1
                enter.yield(runs)
                _ = await gate.next()
            }
            return runs
        }
        var started = entered.makeAsyncIterator()
        worker.wake()
        #expect(await started.next() == 1)
        worker.wake()
        worker.wake()
        worker.wake()
        release.yield()
        #expect(await started.next() == 2)
        worker.stop()
        release.finish()
        #expect(await loop.value == 2)
    }
}
