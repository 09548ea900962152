import Foundation
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#endif

/// Gives the heap's free pages back to the system every `period`, in every service.
///
/// glibc's allocator keeps what a peak freed: a free page below a live allocation, and all of a
/// thread's arena (one per thread that allocated, up to 8 per core), stays resident until
/// `malloc_trim`. The decision engine after passes over 50,000 pools (~64 MB of heap at the
/// peak) stayed at 159–226 MB resident while waiting for the next. A trim walks the arenas and
/// takes milliseconds; every 30 s it brings a service back to its idle size within half a
/// minute of the work ending. The peak itself is the work's.
///
/// A trim does not reach the top of a thread's arena, and glibc raises the size it leaves
/// there with each large block freed (to twice the largest, up to 64 MB): after 1 MiB state
/// chunks went through ingest, each of its database threads kept 4 MB that way. So an arena's
/// top is cut past 1 MiB and a block of 256 KiB or more that no free space holds is mapped on
/// its own: fixed values, which also stop glibc's raising. Measured, not unit-tested: what a
/// test process's arenas already hold decides where its blocks land (docs/benchmarks.md).
public final class HeapTrim: Service, Sendable {
    let worker: PeriodicWorker

    public init(every period: Duration = .seconds(30)) {
        worker = PeriodicWorker("heap-trim", every: period, runAtStart: false)
        Self.fixThresholds()
    }

    /// `M_MMAP_THRESHOLD` 256 KiB and `M_TRIM_THRESHOLD` 1 MiB; false where that is not glibc.
    @discardableResult
    public static func fixThresholds() -> Bool {
        #if canImport(Glibc)
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return false }
        let mallopt = unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32) -> Int32).self)
        let (trimThreshold, mmapThreshold): (Int32, Int32) = (-1, -3)  // malloc.h's M_TRIM_THRESHOLD, M_MMAP_THRESHOLD
        return mallopt(mmapThreshold, 256 << 10) == 1 && mallopt(trimThreshold, 1 << 20) == 1
        #else
        return false
        #endif
    }

    public func run() async throws {
        await worker.run { Self.trim() }
    }

    /// Returns the heap's free pages to the system now; true when any were returned.
    @discardableResult
    public static func trim() -> Bool {
        guard let mallocTrim = Self.mallocTrim else { return false }
        return mallocTrim(0) == 1
    }

    /// glibc's `malloc_trim(size_t pad)`, which Swift's Glibc module does not declare; nil on
    /// another C library.
    private static let mallocTrim: (@convention(c) (Int) -> Int32)? = {
        #if canImport(Glibc)
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)
        #else
        return nil
        #endif
    }()

    /// The process's resident set now, in bytes (0 where /proc is not there).
    public static func residentBytes() -> Int {
        let fields = ((try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8)) ?? "").split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        #if canImport(Glibc)
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
        #else
        return pages * 4096
        #endif
    }
}
