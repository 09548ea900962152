import CRabbitMQ
import CRabbitMQShims
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What a connection does besides declaring the topology.
struct ConnectionRole: Sendable {
    struct Consume: Sendable {
        var queue: String
        var prefetch: UInt16
        /// Only for the direct reply-to pseudo queue, which requires it.
        var noAck: Bool
    }

    var confirms: Bool
    var consume: Consume?
}

/// One AMQP connection owned by one OS thread.
///
/// rabbitmq-c is not thread-safe and services heartbeats only inside library calls, so every C
/// call on the connection runs on the worker's own thread, which never sleeps longer than
/// 200 ms: it polls the socket and a wake-up pipe, performs queued operations (publish, ack,
/// nack) and reads frames (confirms, returns, deliveries). Callers on Swift's cooperative pool
/// only touch the mutex-protected queue and continuations.
///
/// A broker that stops reading (paused, or blocking publishers under a resource alarm) must not
/// stall callers: a publish is written only while the socket has room (else it waits in the
/// queue, and the thread keeps polling); confirm deadlines are kept by a sweeper task apart from
/// the thread, so every publish ends by its deadline whatever the thread does; a thread stuck in
/// one send past the deadline has its socket shut down (the send fails, the connection is
/// rebuilt); and while the broker says the connection is blocked (`connection.blocked`, which
/// the login asks for), publishes fail at once with `BusError.blocked`.
///
/// `@unchecked Sendable`: `conn` and the fields marked "worker thread only" are read and
/// written on the worker thread alone; everything callers touch sits in `shared` (a Mutex).
final class AMQPWorker: @unchecked Sendable {
    enum Op {
        case publish(OutgoingMessage, localId: UInt64)
        case ack(tag: UInt64, generation: UInt64)
        case nack(tag: UInt64, generation: UInt64, requeue: Bool)
        case cancelConsumer(CheckedContinuation<Void, Never>)
        case deleteQueue(String, CheckedContinuation<Void, any Error>)
    }

    struct Pending {
        var continuation: CheckedContinuation<Void, any Error>
        var deadline: ContinuousClock.Instant
    }

    struct Shared {
        var ops: [Op] = []
        var pending: [UInt64: Pending] = [:]
        var nextLocalId: UInt64 = 1
        var connected = false
        /// The broker's reason while it blocks this connection's publishes.
        var blocked: String?
        /// The connection's socket while it is open (for the sweeper's shutdown).
        var socket: Int32 = -1
        /// When the thread entered the send it is in, if any.
        var sendingSince: ContinuousClock.Instant?
        var stopping = false
        var exited = false
        var exitWaiters: [CheckedContinuation<Void, Never>] = []
    }

    let endpoint: AMQPEndpoint
    let topology: Topology
    let role: ConnectionRole
    let confirmTimeout: Duration
    let logger: Logger
    let onDelivery: (@Sendable (Delivery) -> Void)?
    let onConnected: (@Sendable () -> Void)?
    let shared = Mutex(Shared())
    let wakeRead: Int32
    let wakeWrite: Int32

    // worker thread only
    var conn: amqp_connection_state_t?
    var generation: UInt64 = 0
    var nextTag: UInt64 = 1
    var tagToLocal: [UInt64: (local: UInt64, messageId: String)] = [:]
    var messageIdToLocal: [String: UInt64] = [:]
    var returned: Set<UInt64> = []
    var consumerTag: String?
    /// The node of `endpoint.nodes` the next connection goes to.
    var nodeIndex = 0
    /// Set when a publish waits for room in the socket's send buffer.
    var awaitingRoom = false

    init(
        endpoint: AMQPEndpoint, topology: Topology, role: ConnectionRole, confirmTimeout: Duration, logger: Logger,
        onDelivery: (@Sendable (Delivery) -> Void)? = nil, onConnected: (@Sendable () -> Void)? = nil
    ) {
        self.endpoint = endpoint
        self.topology = topology
        self.role = role
        self.confirmTimeout = confirmTimeout
        self.logger = logger
        self.onDelivery = onDelivery
        self.onConnected = onConnected
        var fds: [Int32] = [-1, -1]
        let rc = spotguard_wake_pipe(&fds)
        precondition(rc == 0, "pipe2 failed: \(errno)")
        wakeRead = fds[0]
        wakeWrite = fds[1]
    }

    deinit {
        close(wakeRead)
        close(wakeWrite)
    }

    var isConnected: Bool { shared.withLock { $0.connected } }

    func start() {
        let thread = Thread { [self] in threadMain() }
        thread.name = "amqp-\(role.consume?.queue ?? "publisher")"
        thread.start()
        Task.detached { [self] in await sweep() }
    }

    /// Until the thread exits: ends publishes whose confirm is overdue, and breaks the
    /// connection of a thread stuck in one send for longer than a confirm may take.
    func sweep() async {
        var warned = false
        while !shared.withLock({ $0.exited }) {
            try? await Task.sleep(for: .milliseconds(50))
            expireConfirms()
            let now = ContinuousClock.now
            let stuck = shared.withLock { s -> Bool in
                guard let since = s.sendingSince, now - since > confirmTimeout, s.socket >= 0 else { return false }
                spotguard_shutdown_socket(s.socket)
                return true
            }
            if stuck && !warned {
                logger.warning("amqp send stuck (the broker stopped reading); breaking the connection", metadata: ["amqp.role": "\(roleName)"])
            }
            warned = stuck
        }
    }

    /// Stops the worker: a publisher first waits for the confirms it awaits (bounded by their
    /// timeout); unacked deliveries go back to the queue when the connection closes.
    func stop() async {
        shared.withLock { $0.stopping = true }
        wake()
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let done = shared.withLock { s -> Bool in
                if s.exited { return true }
                s.exitWaiters.append(c)
                return false
            }
            if done { c.resume() }
        }
    }

    /// Publishes and returns once the broker confirmed the message.
    func publish(_ message: OutgoingMessage) async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            let error = shared.withLock { s -> BusError? in
                if s.stopping { return BusError(.shutdown) }
                guard s.connected else { return BusError(.notConnected, "no connection to \(endpoint)") }
                if let reason = s.blocked { return BusError(.blocked, reason) }
                let id = s.nextLocalId
                s.nextLocalId += 1
                s.pending[id] = Pending(continuation: c, deadline: .now + confirmTimeout)
                s.ops.append(.publish(message, localId: id))
                return nil
            }
            if let error { c.resume(throwing: error) } else { wake() }
        }
    }

    func ack(_ d: Delivery) { enqueue(.ack(tag: d.deliveryTag, generation: d.generation)) }
    func nack(_ d: Delivery, requeue: Bool) { enqueue(.nack(tag: d.deliveryTag, generation: d.generation, requeue: requeue)) }

    func cancelConsumer() async {
        await withCheckedContinuation { c in enqueue(.cancelConsumer(c)) }
    }

    func deleteQueue(_ name: String) async throws {
        try await withCheckedThrowingContinuation { c in enqueue(.deleteQueue(name, c)) }
    }

    func enqueue(_ op: Op) {
        shared.withLock { $0.ops.append(op) }
        wake()
    }

    func wake() {
        var one: UInt8 = 1
        _ = Glibc.write(wakeWrite, &one, 1)
    }

    func drainWake() {
        var buf = [UInt8](repeating: 0, count: 64)
        while Glibc.read(wakeRead, &buf, 64) > 0 {}
    }

    // MARK: - worker thread

    func threadMain() {
        var backoff = 0.1
        while !shared.withLock({ $0.stopping }) {
            do {
                try connect()
                backoff = 0.1
                shared.withLock {
                    $0.connected = true
                    $0.blocked = nil
                }
                let node = endpoint.nodes[nodeIndex % endpoint.nodes.count]
                logger.info("amqp connected", metadata: ["amqp.endpoint": "\(endpoint)", "amqp.node": "\(node)", "amqp.role": "\(roleName)"])
                onConnected?()
                try runLoop()
                closeConnection()
            } catch {
                logger.warning("amqp connection failed", metadata: ["amqp.error": "\(error)", "amqp.role": "\(roleName)"])
                shared.withLock { $0.connected = false }
                // publishes awaiting a confirm are in doubt: they fail, their callers publish again
                // and consumers deduplicate on the message id
                failInFlight(BusError(.connectionLost, "\(error)"))
                destroyConnection()
                // a cluster: the next node at once; the backoff only after every node was tried
                nodeIndex += 1
                if endpoint.nodes.count > 1, nodeIndex % endpoint.nodes.count != 0 { continue }
                // back off with jitter, waking early on stop; at most 5 s, so a service is
                // back within seconds of the broker (a 30 s cap kept ingest answering 503 for
                // 9 s after a broker restart in the fault suite)
                let delay = backoff * Double.random(in: 0.5...1.0)
                backoff = min(backoff * 2, 5)
                _ = spotguard_poll2(-1, wakeRead, 0, Int32(delay * 1000))
                drainWake()
            }
        }
        shared.withLock { $0.connected = false }
        failInFlight(BusError(.shutdown))
        let waiters = shared.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.exited = true
            defer { s.exitWaiters = [] }
            return s.exitWaiters
        }
        waiters.forEach { $0.resume() }
    }

    var roleName: String { role.consume.map { "consumer:\($0.queue)" } ?? "publisher" }

    func runLoop() throws {
        guard let c = conn else { return }
        let fd = amqp_get_sockfd(c)
        while true {
            amqp_maybe_release_buffers(c)
            try performOps(c, socket: fd)
            var frames = 0
            while frames < 512, try readFrame(c) { frames += 1 }
            let (stopping, opsWaiting, pendingCount) = shared.withLock { ($0.stopping, !$0.ops.isEmpty, $0.pending.count) }
            if stopping && !opsWaiting && (pendingCount == 0 || role.consume != nil) { return }
            if (opsWaiting && !awaitingRoom) || amqp_frames_enqueued(c) != 0 || amqp_data_in_buffer(c) != 0 { continue }
            let ready = spotguard_poll2(fd, wakeRead, awaitingRoom ? 1 : 0, 200)
            if ready < 0 { throw BusError(.connectionLost, "poll failed: \(errno)") }
            if ready & 2 != 0 { drainWake() }
        }
    }

    func performOps(_ c: amqp_connection_state_t, socket: Int32) throws {
        let ops = shared.withLock { s -> [Op] in
            defer { s.ops = [] }
            return s.ops
        }
        awaitingRoom = false
        for (i, op) in ops.enumerated() {
            if case .publish = op, spotguard_writable(socket) == 0 {
                // the broker is not reading: the rest waits (in order) until the socket has room
                awaitingRoom = true
                shared.withLock { $0.ops.insert(contentsOf: ops[i...], at: 0) }
                return
            }
            do {
                try perform(op, on: c)
            } catch {
                // the connection is broken: fail what was not performed yet, then reconnect
                for rest in ops[(i + 1)...] { abandon(rest, BusError(.connectionLost, "\(error)")) }
                throw error
            }
        }
    }

    func perform(_ op: Op, on c: amqp_connection_state_t) throws {
        switch op {
        case .publish(let message, let localId):
            guard shared.withLock({ $0.pending[localId] != nil }) else { return }  // already timed out
            shared.withLock { $0.sendingSince = .now }
            let st = basicPublish(message, on: c)
            shared.withLock { $0.sendingSince = nil }
            guard st == 0 else {
                resolve(localId, BusError(.connectionLost, "publish: \(Self.statusText(st))"))
                throw BusError(.connectionLost, "publish: \(Self.statusText(st))")
            }
            if role.confirms {
                tagToLocal[nextTag] = (localId, message.messageId)
                messageIdToLocal[message.messageId] = localId
                nextTag += 1
            } else {
                resolve(localId, nil)
            }
        case .ack(let tag, let gen):
            guard gen == generation else { return }  // the broker requeued it when that connection died
            let st = amqp_basic_ack(c, 1, tag, 0)
            guard st == 0 else { throw BusError(.connectionLost, "ack: \(Self.statusText(st))") }
        case .nack(let tag, let gen, let requeue):
            guard gen == generation else { return }
            let st = amqp_basic_nack(c, 1, tag, 0, requeue ? 1 : 0)
            guard st == 0 else { throw BusError(.connectionLost, "nack: \(Self.statusText(st))") }
        case .cancelConsumer(let cont):
            defer { cont.resume() }
            if let tag = consumerTag {
                let arena = CArena()
                amqp_basic_cancel(c, 1, arena.bytes(tag))
                try check(amqp_get_rpc_reply(c), "basic.cancel")
                consumerTag = nil
            }
        case .deleteQueue(let name, let cont):
            let arena = CArena()
            amqp_queue_delete(c, 1, arena.bytes(name), 0, 0)
            do {
                try check(amqp_get_rpc_reply(c), "queue.delete \(name)")
                cont.resume()
            } catch {
                cont.resume(throwing: error)
                throw error
            }
        }
    }

    func abandon(_ op: Op, _ error: BusError) {
        switch op {
        case .publish(_, let localId): resolve(localId, error)
        case .cancelConsumer(let c): c.resume()
        case .deleteQueue(_, let c): c.resume(throwing: error)
        case .ack, .nack: break  // the broker requeues unacked deliveries of a dead connection
        }
    }

    func basicPublish(_ m: OutgoingMessage, on c: amqp_connection_state_t) -> Int32 {
        let arena = CArena()
        var props = amqp_basic_properties_t()
        var flags = UInt32(AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG)
        flags |= UInt32(AMQP_BASIC_TIMESTAMP_FLAG)
        props.content_type = arena.bytes(m.contentType)
        props.delivery_mode = m.persistent ? 2 : 1
        props.message_id = arena.bytes(m.messageId)
        props.timestamp = UInt64(Date().timeIntervalSince1970)
        if !m.headers.isEmpty {
            flags |= UInt32(AMQP_BASIC_HEADERS_FLAG)
            props.headers = arena.table(m.headers.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })
        }
        if let replyTo = m.replyTo {
            flags |= UInt32(AMQP_BASIC_REPLY_TO_FLAG)
            props.reply_to = arena.bytes(replyTo)
        }
        if let correlationId = m.correlationId {
            flags |= UInt32(AMQP_BASIC_CORRELATION_ID_FLAG)
            props.correlation_id = arena.bytes(correlationId)
        }
        if let ms = m.expirationMs {
            flags |= UInt32(AMQP_BASIC_EXPIRATION_FLAG)
            props.expiration = arena.bytes(String(max(ms, 1)))
        }
        props._flags = flags
        return amqp_basic_publish(
            c, 1, arena.bytes(m.exchange), arena.bytes(m.routingKey), m.mandatory ? 1 : 0, 0, &props, arena.data(m.body))
    }
}
