import SpotRuntime
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension IntegrationTests {
    /// What a peak freed stays resident until the heap is trimmed; every service trims (serialized
    /// with the other suites: a test allocating beside it would move the process's resident set).
    @Suite struct HeapTrimTests {
        /// 100 MB of small blocks, written (so resident), one more block above them, then the
        /// 100 MB freed: the block above keeps the heap from shrinking by itself, as a live
        /// allocation does in a service. A trim gives the pages back.
        @Test func aTrimGivesBackWhatAPeakFreed() {
            #if canImport(Glibc)
            let (size, count) = (512, 200_000)
            let blocks = (0..<count).map { _ in malloc(size)! }
            for block in blocks { memset(block, 1, size) }
            let above = malloc(size)!
            memset(above, 1, size)
            for block in blocks { free(block) }
            let freed = HeapTrim.residentBytes()
            HeapTrim.trim()
            let trimmed = HeapTrim.residentBytes()
            free(above)
            #expect(freed > 0 && trimmed > 0, "/proc/self/statm was not read")
            #expect(freed - trimmed > 60 << 20, "resident \(freed >> 20) MiB after the free, \(trimmed >> 20) MiB after the trim")
            #endif
        }
    }
}
