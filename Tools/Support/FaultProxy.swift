import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A TCP proxy on loopback between SpotGuard's services and the broker or the database, for
/// the network faults of the reliability plan (F8) that toxiproxy would give: added latency, a
/// black hole (connections accepted, bytes taken and held, nothing forwarded either way), a reset
/// of every open connection, and closing every open connection after a few more bytes, which
/// cuts a protocol frame in half. Plain blocking sockets, two threads per connection.
public final class FaultProxy: Sendable {
    public enum Fault: Sendable, Equatable {
        case none
        /// Each chunk of bytes waits this long before it is forwarded, in both directions.
        case latency(milliseconds: Int)
        case blackHole
    }

    public let port: Int
    private let upstreamPort: Int
    private let listener: Int32
    private let state = Mutex(State())

    private struct Link {
        var client: Int32
        var upstream: Int32
        /// Bytes still forwarded before the link is cut (nil: no limit).
        var budget: Int?
        var pumpsLeft = 2
        var reset = false
    }

    private struct State {
        var fault = Fault.none
        var links: [Int: Link] = [:]
        var nextLink = 0
        var stopped = false
    }

    /// Listens on an ephemeral loopback port and forwards to 127.0.0.1:`upstreamPort`.
    public init(upstreamPort: Int) throws {
        self.upstreamPort = upstreamPort
        // close-on-exec on every socket: the services this harness spawns must not inherit them
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EMFILE) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = Self.loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 128) == 0 else {
            Glibc.close(fd)
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EADDRINUSE)
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        listener = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread { [self] in acceptLoop() }.start()
    }

    public var fault: Fault {
        get { state.withLock { $0.fault } }
        set { state.withLock { $0.fault = newValue } }
    }

    /// Every open connection ends with a TCP reset to both sides (SO_LINGER 0), as `reset_peer`.
    public func resetAll() {
        state.withLock { s in
            for (id, link) in s.links where !link.reset {
                s.links[id]?.reset = true
                Self.abort(link)
            }
        }
    }

    /// Every open connection forwards `bytes` more bytes (both directions together), then is
    /// reset: the peers see a frame cut short.
    public func cutAll(after bytes: Int) {
        state.withLock { s in
            for id in s.links.keys { s.links[id]?.budget = bytes }
        }
    }

    public func stop() {
        state.withLock { $0.stopped = true }
        shutdown(listener, Int32(SHUT_RDWR))
        resetAll()
    }

    // MARK: - Forwarding

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                Glibc.close(listener)
                return
            }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            var address = Self.loopback(port: upstreamPort)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard connected == 0 else {  // the server is down: so is the connection through us
                Self.abort(Link(client: client, upstream: upstream))
                Glibc.close(client)
                Glibc.close(upstream)
                continue
            }
            let id: Int? = state.withLock { s in
                guard !s.stopped else { return nil }
                s.nextLink += 1
                s.links[s.nextLink] = Link(client: client, upstream: upstream)
                return s.nextLink
            }
            guard let id else {
                Glibc.close(client)
                Glibc.close(upstream)
                continue
            }
            Thread { [self] in pump(id, from: client, to: upstream) }.start()
            Thread { [self] in pump(id, from: upstream, to: client) }.start()
        }
    }

    private func pump(_ id: Int, from source: Int32, to target: Int32) {
        var buffer = [UInt8](repeating: 0, count: 16_384)
        loop: while true {
            let n = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            // a black hole holds the bytes; once it lifts they go on (or the link was reset)
            while case .blackHole = fault, !isReset(id) { usleep(20_000) }
            if case .latency(let ms) = fault { usleep(UInt32(ms) * 1000) }
            var count = n
            var cut = false
            let live = state.withLock { s -> Bool in
                guard let link = s.links[id], !link.reset else { return false }
                if let budget = link.budget {
                    count = min(n, budget)
                    s.links[id]?.budget = budget - count
                    cut = budget - count == 0
                }
                return true
            }
            guard live else { break }
            var sent = 0
            while sent < count {
                // MSG_NOSIGNAL: a peer that went away is an error here, not a SIGPIPE for the process
                let w = buffer.withUnsafeBytes { Glibc.send(target, $0.baseAddress! + sent, count - sent, Int32(MSG_NOSIGNAL)) }
                if w < 0 && errno == EINTR { continue }
                guard w > 0 else { break loop }
                sent += w
            }
            if cut {
                state.withLock { s in
                    guard let link = s.links[id], !link.reset else { return }
                    s.links[id]?.reset = true
                    Self.abort(link)
                }
                break
            }
        }
        finish(id)
    }

    private func isReset(_ id: Int) -> Bool { state.withLock { $0.links[id]?.reset ?? true } }

    /// The first pump to end wakes the other; the last one closes both sockets (with a reset
    /// when the link was aborted, an orderly close otherwise).
    private func finish(_ id: Int) {
        let last: Link? = state.withLock { s in
            guard var link = s.links[id] else { return nil }
            link.pumpsLeft -= 1
            if link.pumpsLeft > 0 {
                s.links[id] = link
                if !link.reset {
                    shutdown(link.client, Int32(SHUT_RDWR))
                    shutdown(link.upstream, Int32(SHUT_RDWR))
                }
                return nil
            }
            s.links[id] = nil
            return link
        }
        if let last {
            Glibc.close(last.client)
            Glibc.close(last.upstream)
        }
    }

    /// Sets SO_LINGER 0 (close sends RST) and stops both sockets' reads, which wakes the pumps.
    private static func abort(_ link: Link) {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        for fd in [link.client, link.upstream] {
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
            shutdown(fd, Int32(SHUT_RD))
        }
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = UInt16(port).bigEndian
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        return a
    }
}
