#if canImport(Glibc)
import Glibc
#endif

/// The process's limit on open files, raised at start from its soft to its hard value.
///
/// Many hosts start processes with a soft limit of 1,024 (and a hard one far above). Ingest
/// holds a connection per agent's long-poll and per report in flight, so under that default it
/// stops accepting past about a thousand connections: agents time out instead of being answered
/// or refused. A soft limit is the process's own to raise up to the hard one.
public enum OpenFiles {
    /// The limit now in force, after raising the soft one to the hard one when it was lower.
    @discardableResult
    public static func raiseToHardLimit() -> UInt64 {
        var limit = rlimit()
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        guard getrlimit(resource, &limit) == 0 else { return 0 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(resource, &raised) == 0 { return UInt64(raised.rlim_cur) }
        }
        return UInt64(limit.rlim_cur)
    }
}
