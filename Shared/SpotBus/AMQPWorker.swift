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
    private let shared = Mutex(Shared())
    private let wakeRead: Int32
    private let wakeWrite: Int32

    // worker thread only
    private var conn: amqp_connection_state_t?
    private var generation: UInt64 = 0
    private var nextTag: UInt64 = 1
    private var tagToLocal: [UInt64: (local: UInt64, messageId: String)] = [:]
    private var messageIdToLocal: [String: UInt64] = [:]
    private var returned: Set<UInt64> = []
    private var consumerTag: String?
    /// Set when a publish waits for room in the socket's send buffer.
    private var awaitingRoom = false

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
    private func sweep() async {
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

    private func enqueue(_ op: Op) {
        shared.withLock { $0.ops.append(op) }
        wake()
    }

    private func wake() {
        var one: UInt8 = 1
        _ = Glibc.write(wakeWrite, &one, 1)
    }

    private func drainWake() {
        var buf = [UInt8](repeating: 0, count: 64)
        while Glibc.read(wakeRead, &buf, 64) > 0 {}
    }

    // MARK: - worker thread

    private func threadMain() {
        var backoff = 0.1
        while !shared.withLock({ $0.stopping }) {
            do {
                try connect()
                backoff = 0.1
                shared.withLock {
                    $0.connected = true
                    $0.blocked = nil
                }
                logger.info("amqp connected", metadata: ["amqp.endpoint": "\(endpoint)", "amqp.role": "\(roleName)"])
                onConnected?()
                try runLoop()
                closeConnection()
            } catch {
                logger.warning("amqp connection failed", metadata: ["amqp.error": "\(error)", "amqp.role": "\(roleName)"])
                shared.withLock { $0.connected = false }
                failInFlight(BusError(.connectionLost, "\(error)"))
                destroyConnection()
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

    private var roleName: String { role.consume.map { "consumer:\($0.queue)" } ?? "publisher" }

    private func connect() throws {
        guard let c = amqp_new_connection() else { throw BusError(.protocolError, "amqp_new_connection failed") }
        conn = c
        guard let socket = amqp_tcp_socket_new(c) else { throw BusError(.protocolError, "amqp_tcp_socket_new failed") }
        var tv = timeval(endpoint.connectTimeout)
        let st = amqp_socket_open_noblock(socket, endpoint.host, Int32(endpoint.port), &tv)
        guard st == 0 else { throw BusError(.notConnected, "connect \(endpoint): \(Self.statusText(st))") }
        try check(
            spotguard_amqp_login_plain(
                c, endpoint.vhost, 0, 131_072, Int32(endpoint.heartbeatSeconds), endpoint.user, endpoint.password,
                "\(ProcessInfo.processInfo.processName)[\(ProcessInfo.processInfo.processIdentifier)] \(roleName)"),
            "login")
        let fd = amqp_get_sockfd(c)
        shared.withLock { $0.socket = fd }
        var rpcTimeout = timeval(.seconds(10))
        _ = amqp_set_rpc_timeout(c, &rpcTimeout)
        amqp_channel_open(c, 1)
        try check(amqp_get_rpc_reply(c), "channel.open")
        try declare(topology, on: c)
        generation += 1
        nextTag = 1
        tagToLocal = [:]
        messageIdToLocal = [:]
        returned = []
        if role.confirms {
            amqp_confirm_select(c, 1)
            try check(amqp_get_rpc_reply(c), "confirm.select")
        }
        if let consume = role.consume {
            if !consume.noAck {
                amqp_basic_qos(c, 1, 0, consume.prefetch, 0)
                try check(amqp_get_rpc_reply(c), "basic.qos")
            }
            let arena = CArena()
            let ok = amqp_basic_consume(
                c, 1, arena.bytes(consume.queue), amqp_empty_bytes, 0, consume.noAck ? 1 : 0, 0, amqp_empty_table)
            try check(amqp_get_rpc_reply(c), "basic.consume \(consume.queue)")
            consumerTag = ok.map { Self.string($0.pointee.consumer_tag) }
        }
    }

    private func declare(_ topology: Topology, on c: amqp_connection_state_t) throws {
        let arena = CArena()
        for exchange in [Topology.eventsExchange, Topology.deadLetterExchange] {
            amqp_exchange_declare(c, 1, arena.bytes(exchange), arena.bytes("topic"), 0, 1, 0, 0, amqp_empty_table)
            try check(amqp_get_rpc_reply(c), "exchange.declare \(exchange)")
        }
        let queueArgs = arena.table([
            ("x-queue-type", .string("quorum")),
            ("x-dead-letter-exchange", .string(Topology.deadLetterExchange)),
            ("x-delivery-limit", .int(Int64(Topology.brokerDeliveryLimit))),
        ])
        let deadLetterArgs = arena.table([("x-queue-type", .string("quorum"))])
        let transientArgs = arena.table([("x-expires", .int(60_000))])
        let queues =
            [(Topology.deadLetterQueue, Topology.deadLetterExchange, ["#"], deadLetterArgs, false)]
            + topology.queues.map { ($0.name, $0.exchange, $0.bindings, $0.transient ? transientArgs : queueArgs, $0.transient) }
        for (name, exchange, bindings, args, transient) in queues {
            amqp_queue_declare(c, 1, arena.bytes(name), 0, transient ? 0 : 1, 0, transient ? 1 : 0, args)
            try check(amqp_get_rpc_reply(c), "queue.declare \(name)")
            for key in bindings {
                amqp_queue_bind(c, 1, arena.bytes(name), arena.bytes(exchange), arena.bytes(key), amqp_empty_table)
                try check(amqp_get_rpc_reply(c), "queue.bind \(name) \(key)")
            }
        }
    }

    private func runLoop() throws {
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

    private func performOps(_ c: amqp_connection_state_t, socket: Int32) throws {
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

    private func perform(_ op: Op, on c: amqp_connection_state_t) throws {
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

    private func abandon(_ op: Op, _ error: BusError) {
        switch op {
        case .publish(_, let localId): resolve(localId, error)
        case .cancelConsumer(let c): c.resume()
        case .deleteQueue(_, let c): c.resume(throwing: error)
        case .ack, .nack: break  // the broker requeues unacked deliveries of a dead connection
        }
    }

    private func basicPublish(_ m: OutgoingMessage, on c: amqp_connection_state_t) -> Int32 {
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

    /// Reads one frame if one is available without waiting (this also sends heartbeats when
    /// due and notices a silent broker). Returns false when there was none.
    private func readFrame(_ c: amqp_connection_state_t) throws -> Bool {
        var frame = amqp_frame_t()
        var zero = timeval(tv_sec: 0, tv_usec: 0)
        let st = amqp_simple_wait_frame_noblock(c, &frame, &zero)
        if st == AMQP_STATUS_TIMEOUT.rawValue { return false }
        guard st == 0 else { throw BusError(.connectionLost, Self.statusText(st)) }
        guard frame.frame_type == UInt8(AMQP_FRAME_METHOD) else { return true }
        let method = frame.payload.method
        switch method.id {
        case AMQP_BASIC_ACK_METHOD:
            let ack = method.decoded.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
            settle(upTo: ack.delivery_tag, multiple: ack.multiple != 0) { local in
                self.returned.remove(local) != nil ? BusError(.unroutable, "no queue bound for the routing key") : nil
            }
        case AMQP_BASIC_NACK_METHOD:
            let nack = method.decoded.assumingMemoryBound(to: amqp_basic_nack_t.self).pointee
            settle(upTo: nack.delivery_tag, multiple: nack.multiple != 0) { _ in BusError(.nacked, "the broker refused the message") }
        case AMQP_BASIC_RETURN_METHOD:
            var message = amqp_message_t()
            try check(amqp_read_message(c, frame.channel, &message, 0), "read returned message")
            defer { amqp_destroy_message(&message) }
            if message.properties._flags & UInt32(AMQP_BASIC_MESSAGE_ID_FLAG) != 0,
                let local = messageIdToLocal[Self.string(message.properties.message_id)]
            {
                returned.insert(local)
            }
        case AMQP_BASIC_DELIVER_METHOD:
            let d = method.decoded.assumingMemoryBound(to: amqp_basic_deliver_t.self).pointee
            let tag = d.delivery_tag
            let redelivered = d.redelivered != 0
            let exchange = Self.string(d.exchange)
            let routingKey = Self.string(d.routing_key)
            var message = amqp_message_t()
            try check(amqp_read_message(c, frame.channel, &message, 0), "read delivery")
            defer { amqp_destroy_message(&message) }
            let delivery = makeDelivery(message, tag: tag, exchange: exchange, routingKey: routingKey, redelivered: redelivered)
            onDelivery?(delivery)
        case AMQP_CHANNEL_CLOSE_METHOD:
            let close = method.decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
            var ok = amqp_channel_close_ok_t()
            amqp_send_method(c, frame.channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok)
            throw BusError(.protocolError, "channel closed by broker: \(close.reply_code) \(Self.string(close.reply_text))")
        case AMQP_CONNECTION_CLOSE_METHOD:
            let close = method.decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            var ok = amqp_connection_close_ok_t()
            amqp_send_method(c, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok)
            throw BusError(.connectionLost, "connection closed by broker: \(close.reply_code) \(Self.string(close.reply_text))")
        case AMQP_BASIC_CANCEL_METHOD:
            throw BusError(.connectionLost, "the broker cancelled the consumer (queue deleted?)")
        case AMQP_CONNECTION_BLOCKED_METHOD:
            let blocked = method.decoded.assumingMemoryBound(to: amqp_connection_blocked_t.self).pointee
            let reason = "the broker blocks publishing: \(Self.string(blocked.reason))"
            logger.warning("broker blocked publishing (resource alarm)", metadata: ["amqp.reason": "\(Self.string(blocked.reason))"])
            // what is queued or awaits its confirm would only wait for a confirm that cannot come
            // before the alarm clears: it fails now (in doubt; a retry is deduplicated downstream)
            let (queued, waiting) = shared.withLock { s -> ([Op], [Pending]) in
                s.blocked = reason
                let publishes = s.ops.filter { if case .publish = $0 { true } else { false } }
                s.ops.removeAll { if case .publish = $0 { true } else { false } }
                defer { s.pending = [:] }
                return (publishes, Array(s.pending.values))
            }
            for op in queued { abandon(op, BusError(.blocked, reason)) }
            for p in waiting { p.continuation.resume(throwing: BusError(.blocked, reason)) }
        case AMQP_CONNECTION_UNBLOCKED_METHOD:
            shared.withLock { $0.blocked = nil }
            logger.notice("broker unblocked publishing")
        default:
            break
        }
        return true
    }

    private func makeDelivery(
        _ message: amqp_message_t, tag: UInt64, exchange: String, routingKey: String, redelivered: Bool
    ) -> Delivery {
        let p = message.properties
        let has = { (flag: Int32) in p._flags & UInt32(flag) != 0 }
        var headers: [String: String] = [:]
        var count = 0
        if has(AMQP_BASIC_HEADERS_FLAG), let entries = p.headers.entries {
            for i in 0..<Int(p.headers.num_entries) {
                let e = entries[i]
                let key = Self.string(e.key)
                if let value = Self.fieldString(e.value) {
                    headers[key] = value
                    if key == "x-delivery-count" { count = Int(value) ?? 0 }
                }
            }
        }
        let body = message.body.len > 0 ? [UInt8](UnsafeRawBufferPointer(start: message.body.bytes, count: message.body.len)) : []
        var (exchange, routingKey) = (exchange, routingKey)
        if exchange.isEmpty, let original = headers[ReplayHeader.routingKey] {
            // a replayed dead letter: handled as the message it first was
            routingKey = original
            exchange = headers[ReplayHeader.exchange] ?? Topology.eventsExchange
        }
        return Delivery(
            body: body, exchange: exchange, routingKey: routingKey,
            messageId: has(AMQP_BASIC_MESSAGE_ID_FLAG) ? Self.string(p.message_id) : nil,
            correlationId: has(AMQP_BASIC_CORRELATION_ID_FLAG) ? Self.string(p.correlation_id) : nil,
            replyTo: has(AMQP_BASIC_REPLY_TO_FLAG) ? Self.string(p.reply_to) : nil,
            headers: headers, redelivered: redelivered, deliveryCount: count, deliveryTag: tag, generation: generation)
    }

    /// Settles the confirm of `tag`, or of every tag up to it when `multiple`.
    private func settle(upTo tag: UInt64, multiple: Bool, outcome: (UInt64) -> BusError?) {
        let tags = multiple ? tagToLocal.keys.filter { $0 <= tag } : [tag]
        for t in tags {
            guard let (local, messageId) = tagToLocal.removeValue(forKey: t) else { continue }
            resolve(local, outcome(local))  // a no-op when its confirm already timed out
            if messageIdToLocal[messageId] == local { messageIdToLocal[messageId] = nil }
        }
    }

    /// Completes a publish unless it was already completed (timed out).
    private func resolve(_ localId: UInt64, _ error: BusError?) {
        guard let p = shared.withLock({ $0.pending.removeValue(forKey: localId) }) else { return }
        if let error { p.continuation.resume(throwing: error) } else { p.continuation.resume() }
    }

    private func expireConfirms() {
        let now = ContinuousClock.now
        let expired = shared.withLock { s -> [Pending] in
            let ids = s.pending.filter { $0.value.deadline <= now }.map(\.key)
            return ids.compactMap { s.pending.removeValue(forKey: $0) }
        }
        for p in expired {
            p.continuation.resume(throwing: BusError(.confirmTimeout, "no confirm within \(confirmTimeout)"))
        }
    }

    private func failInFlight(_ error: BusError) {
        let (ops, pending) = shared.withLock { s -> ([Op], [Pending]) in
            defer {
                s.ops = []
                s.pending = [:]
            }
            return (s.ops, Array(s.pending.values))
        }
        for op in ops { abandon(op, error) }
        for p in pending { p.continuation.resume(throwing: error) }
        tagToLocal = [:]
        messageIdToLocal = [:]
        returned = []
    }

    private func closeConnection() {
        guard let c = conn else { return }
        amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS)
        amqp_connection_close(c, AMQP_REPLY_SUCCESS)
        destroyConnection()
    }

    private func destroyConnection() {
        shared.withLock {
            $0.socket = -1
            $0.sendingSince = nil
        }
        if let c = conn { amqp_destroy_connection(c) }
        conn = nil
        consumerTag = nil
    }

    private func check(_ reply: amqp_rpc_reply_t, _ what: String) throws {
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            return
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            throw BusError(.connectionLost, "\(what): \(Self.statusText(reply.library_error))")
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            if reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD {
                let m = reply.reply.decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
                throw BusError(.protocolError, "\(what): \(m.reply_code) \(Self.string(m.reply_text))")
            }
            if reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD {
                let m = reply.reply.decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
                throw BusError(.protocolError, "\(what): \(m.reply_code) \(Self.string(m.reply_text))")
            }
            throw BusError(.protocolError, "\(what): server exception")
        default:
            throw BusError(.protocolError, "\(what): no reply")
        }
    }

    static func statusText(_ status: Int32) -> String {
        String(cString: amqp_error_string2(status))
    }

    static func string(_ b: amqp_bytes_t) -> String {
        guard b.len > 0, let p = b.bytes else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: p, count: b.len), as: UTF8.self)
    }

    static func fieldString(_ v: amqp_field_value_t) -> String? {
        switch UInt32(v.kind) {
        case AMQP_FIELD_KIND_UTF8.rawValue, AMQP_FIELD_KIND_BYTES.rawValue: string(v.value.bytes)
        case AMQP_FIELD_KIND_I64.rawValue: String(v.value.i64)
        case AMQP_FIELD_KIND_U64.rawValue, AMQP_FIELD_KIND_TIMESTAMP.rawValue: String(v.value.u64)
        case AMQP_FIELD_KIND_I32.rawValue: String(v.value.i32)
        case AMQP_FIELD_KIND_U32.rawValue: String(v.value.u32)
        case AMQP_FIELD_KIND_I16.rawValue: String(v.value.i16)
        case AMQP_FIELD_KIND_U16.rawValue: String(v.value.u16)
        case AMQP_FIELD_KIND_I8.rawValue: String(v.value.i8)
        case AMQP_FIELD_KIND_U8.rawValue: String(v.value.u8)
        case AMQP_FIELD_KIND_BOOLEAN.rawValue: v.value.boolean != 0 ? "true" : "false"
        default: nil
        }
    }
}

extension timeval {
    init(_ d: Duration) {
        let (s, atto) = d.components
        self.init(tv_sec: Int(s), tv_usec: Int(atto / 1_000_000_000_000))
    }
}
