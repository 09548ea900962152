import CRabbitMQ
import CRabbitMQShims
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The worker thread's side of the wire: connecting and declaring, reading frames, settling
/// publisher confirms, closing. Called on the worker thread only (see `AMQPWorker`).
extension AMQPWorker {
    func connect() throws {
        guard let c = amqp_new_connection() else { throw BusError(.protocolError, "amqp_new_connection failed") }
        conn = c
        guard let socket = amqp_tcp_socket_new(c) else { throw BusError(.protocolError, "amqp_tcp_socket_new failed") }
        var tv = timeval(endpoint.connectTimeout)
        let node = endpoint.nodes[nodeIndex % endpoint.nodes.count]
        let st = amqp_socket_open_noblock(socket, node.host, Int32(node.port), &tv)
        guard st == 0 else { throw BusError(.notConnected, "connect \(node): \(Self.statusText(st))") }
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

    func declare(_ topology: Topology, on c: amqp_connection_state_t) throws {
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

    /// Reads one frame if one is available without waiting (this also sends heartbeats when
    /// due and notices a silent broker). Returns false when there was none.
    func readFrame(_ c: amqp_connection_state_t) throws -> Bool {
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
            // A nack means a queue the message was routed to could not take it. After a cluster
            // node is lost, a channel that published to a queue led from there can go on being
            // refused while a fresh channel is not: start over on a new connection (the next
            // node); what is still awaiting a confirm fails as in doubt and is published again.
            throw BusError(.nacked, "the broker refused a message; reconnecting")
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

    func makeDelivery(
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
    func settle(upTo tag: UInt64, multiple: Bool, outcome: (UInt64) -> BusError?) {
        let tags = multiple ? tagToLocal.keys.filter { $0 <= tag } : [tag]
        for t in tags {
            guard let (local, messageId) = tagToLocal.removeValue(forKey: t) else { continue }
            resolve(local, outcome(local))  // a no-op when its confirm already timed out
            if messageIdToLocal[messageId] == local { messageIdToLocal[messageId] = nil }
        }
    }

    /// Completes a publish unless it was already completed (timed out).
    func resolve(_ localId: UInt64, _ error: BusError?) {
        guard let p = shared.withLock({ $0.pending.removeValue(forKey: localId) }) else { return }
        if let error { p.continuation.resume(throwing: error) } else { p.continuation.resume() }
    }

    func expireConfirms() {
        let now = ContinuousClock.now
        let expired = shared.withLock { s -> [Pending] in
            let ids = s.pending.filter { $0.value.deadline <= now }.map(\.key)
            return ids.compactMap { s.pending.removeValue(forKey: $0) }
        }
        for p in expired {
            p.continuation.resume(throwing: BusError(.confirmTimeout, "no confirm within \(confirmTimeout)"))
        }
    }

    func failInFlight(_ error: BusError) {
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

    func closeConnection() {
        guard let c = conn else { return }
        amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS)
        amqp_connection_close(c, AMQP_REPLY_SUCCESS)
        destroyConnection()
    }

    func destroyConnection() {
        shared.withLock {
            $0.socket = -1
            $0.sendingSince = nil
        }
        if let c = conn { amqp_destroy_connection(c) }
        conn = nil
        consumerTag = nil
    }

    func check(_ reply: amqp_rpc_reply_t, _ what: String) throws {
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
