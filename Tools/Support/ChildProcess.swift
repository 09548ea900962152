import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A child process started with posix_spawn and reaped with waitpid on a thread of its own.
/// (Foundation's `Process.waitUntilExit` can miss the exit of a script that leaves a daemon
/// behind, as `deploy/stack.sh` does with the broker.)
public final class ChildProcess: Sendable {
    public let pid: pid_t

    /// - Parameter output: a file that receives the child's standard output (and its standard
    ///   error too with `errors`), emptied first unless `appending`.
    public init(
        _ executable: String, _ arguments: [String], environment: [String: String] = ProcessInfo.processInfo.environment,
        output: String? = nil, errors: Bool = false, appending: Bool = false
    ) throws {
        var environment = environment
        // the test suite's contract check (deploy/test.sh): every process it starts records its bus traffic
        if let tap = environment["SPOTGUARD_TEST_BUS_TAP_DIR"] { environment["SPOTGUARD_BUS_TAP_DIR"] = tap }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let output {
            posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | (appending ? O_APPEND : O_TRUNC), 0o644)
            if errors { posix_spawn_file_actions_adddup2(&actions, 1, 2) }
        }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        // The child starts with no signal blocked and default dispositions: a thread of the
        // caller may block signals it handles itself (service lifecycles block SIGTERM), and a
        // child inherits that mask. Patroni started through deploy/stack.sh from a test then
        // ignored every SIGTERM, and its node could not be stopped.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, executable, &actions, &attributes, argv, envp)
        guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EINVAL) }
        self.pid = pid
    }

    /// The exit status (128 + signal when killed by a signal).
    public func exitStatus() async -> Int32 {
        await withCheckedContinuation { c in
            let pid = self.pid
            Thread {
                var status: Int32 = 0
                while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
                c.resume(returning: status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f))
            }.start()
        }
    }

    public func signal(_ sig: Int32) { kill(pid, sig) }
}
