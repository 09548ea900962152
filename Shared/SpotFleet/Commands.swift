import Foundation
import SpotModels
import SpotRuntime
import SpotStore

/// Commands to agents (seed 004, pattern 3). A command is a row in `commands`, written in
/// the issuer's transaction together with a `command.issued` outbox message; the message only
/// wakes the agent's long-poll sooner, the row is the command.
public enum Commands {
    public struct Issue: Sendable {
        public var kind: CommandKind
        public var clientId: UUID
        public var agentId: UUID
        /// The instance whose agent executes it (a primary and its replicas share an agent id).
        public var targetInstanceId: String?
        public var replicaId: UUID?
        /// JSON object text.
        public var payload: String
        public var targetMode: InstanceMode?
        public var targetPoolId: String?
        public var terminateWaitSeconds: Int?
        public var issuedBy: String
        public var priority: Int
        /// Commands that make no sense later (a launch for a failover) expire.
        public var expiresIn: Duration?

        public init<P: Encodable>(
            _ kind: CommandKind, clientId: UUID, agentId: UUID, targetInstanceId: String?, replicaId: UUID? = nil, payload: P,
            targetMode: InstanceMode? = nil, targetPoolId: String? = nil, terminateWaitSeconds: Int? = nil,
            issuedBy: String, priority: Int = 0, expiresIn: Duration? = nil
        ) throws {
            self.kind = kind
            self.clientId = clientId
            self.agentId = agentId
            self.targetInstanceId = targetInstanceId
            self.replicaId = replicaId
            self.payload = String(decoding: try WireJSON.encoder().encode(payload), as: UTF8.self)
            self.targetMode = targetMode
            self.targetPoolId = targetPoolId
            self.terminateWaitSeconds = terminateWaitSeconds
            self.issuedBy = issuedBy
            self.priority = priority
            self.expiresIn = expiresIn
        }
    }

    /// Inserts the command and its wake-up message inside the caller's transaction.
    @discardableResult
    public static func issue(_ c: Issue, producer: String, on conn: PGConnection) throws -> UUID {
        let id = UUID()
        _ = try conn.execute(
            """
            INSERT INTO commands (id, client_id, agent_id, command_type, payload, target_mode, target_pool_id,
                                  terminate_wait_seconds, issued_by, priority, target_instance_id, replica_id, expires_at, primary_epoch)
            VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10, $11, $12, now() + make_interval(secs => $13),
                    (SELECT primary_epoch FROM agents WHERE id = $3))
            """,
            [
                id, c.clientId, c.agentId, c.kind.rawValue, c.payload, c.targetMode?.rawValue, c.targetPoolId,
                c.terminateWaitSeconds, c.issuedBy, c.priority, c.targetInstanceId, c.replicaId,
                c.expiresIn.map { Double($0.components.seconds) },
            ])
        let fact = CommandIssued(commandId: id, agentId: c.agentId, kind: c.kind, targetInstanceId: c.targetInstanceId)
        try Outbox.append(Envelope(type: RoutingKey.commandIssued, producer: producer, payload: fact), on: conn)
        return id
    }

    /// One command as an agent receives it.
    public struct Delivered: Codable, Sendable {
        public var commandId: UUID
        public var commandType: String
        public var payload: JSONValue
        public var targetInstanceId: String?
        public var targetMode: String?
        public var targetPoolId: String?
        public var terminateWaitSeconds: Int?
        public var replicaId: UUID?
        public var priority: Int
        public var createdAt: Date
        public var deliveryCount: Int
        /// Until when the agent holds it; `renew` extends it while the agent works.
        public var leaseExpiresAt: Date
        public var leaseSeconds: Int
        /// The agent's primary epoch when the command was issued.
        public var primaryEpoch: Int64?
    }

    /// The kinds that act as the agent's primary: void once another instance became the
    /// primary after they were issued (their epoch is below the agent's).
    static let primaryActions = CommandKind.allCases.filter(\.actsAsPrimary).map { "'\($0.rawValue)'" }.joined(separator: ", ")
    /// Over `commands c` and its agent `a`: a switch or promotion issued before another
    /// instance became the primary, and why it is void.
    static let overtaken = "c.command_type IN (\(primaryActions)) AND c.primary_epoch < a.primary_epoch"
    static let overtakenMessage =
        "'superseded: another instance became the primary after it was issued (epoch ' || c.primary_epoch || ', now ' || a.primary_epoch || ')'"

    /// The lease of a command of this kind, in seconds, as SQL over `commands` columns.
    static let leaseSeconds =
        "(CASE command_type "
        + CommandKind.allCases.map { "WHEN '\($0.rawValue)' THEN \($0.lease.components.seconds) " }.joined()
        + "ELSE 120 END + CASE WHEN command_type = 'terminate' THEN coalesce(terminate_wait_seconds, 0) ELSE 0 END)"

    /// Hands out the agent's waiting commands (highest priority, then oldest first) and marks
    /// them delivered under a lease as long as their kind of work (`CommandKind.lease`). A
    /// command whose lease ran out unanswered is handed out again (agents execute idempotently
    /// by command id). A command past its expiry is closed instead of handed out — but one the
    /// agent holds within its lease is at work and is left to finish.
    public static func claim(agentId: UUID, instanceId: String?, limit: Int = 10, on conn: PGConnection) throws -> [Delivered] {
        _ = try conn.execute(
            """
            UPDATE commands SET status = 'expired', completed_at = now(), lease_expires_at = NULL
             WHERE agent_id = $1 AND expires_at < now() AND (status = 'pending' OR (status = 'delivered' AND lease_expires_at < now()))
            """, [agentId])
        // never handed out: a switch or promotion issued before another instance became the
        // primary, and an automatic switch the agent's auto-switch was turned off after (a
        // decision pass that read the agent just before the change, or a switch still waiting)
        _ = try conn.execute(
            """
            UPDATE commands c SET status = 'cancelled', completed_at = now(), lease_expires_at = NULL,
                   error_message = CASE WHEN \(overtaken) THEN \(overtakenMessage)
                       ELSE 'superseded: auto-switch was turned off after it was issued' END
              FROM agents a
             WHERE a.id = $1 AND c.agent_id = a.id
               AND ((\(overtaken))
                    OR (c.command_type = 'switch' AND c.issued_by = 'decisions' AND NOT a.auto_switch_enabled))
               AND (c.status = 'pending' OR (c.status = 'delivered' AND c.lease_expires_at < now()))
            """, [agentId])
        return try conn.query(
            """
            UPDATE commands c SET status = 'delivered', delivered_at = now(), delivery_count = c.delivery_count + 1,
                   lease_expires_at = now() + make_interval(secs => \(leaseSeconds))
              FROM (SELECT id FROM commands
                     WHERE agent_id = $1 AND (target_instance_id IS NULL OR $2::text IS NULL OR target_instance_id = $2)
                       AND (status = 'pending' OR (status = 'delivered' AND lease_expires_at < now()))
                     ORDER BY priority DESC, created_at LIMIT $3 FOR UPDATE SKIP LOCKED) due
             WHERE c.id = due.id
            RETURNING c.id, c.command_type, c.payload::text, c.target_instance_id, c.target_mode, c.target_pool_id,
                      c.terminate_wait_seconds, c.replica_id, c.priority, c.created_at, c.delivery_count, c.lease_expires_at,
                      \(leaseSeconds), c.primary_epoch
            """, [agentId, instanceId, limit]
        ).map { r in
            Delivered(
                commandId: try r.decode(UUID.self, at: 0), commandType: try r.decode(String.self, at: 1),
                payload: JSONValue.parse(try r.decode(String.self, at: 2)) ?? .null, targetInstanceId: try r.decodeIfPresent(String.self, at: 3),
                targetMode: try r.decodeIfPresent(String.self, at: 4), targetPoolId: try r.decodeIfPresent(String.self, at: 5),
                terminateWaitSeconds: try r.decodeIfPresent(Int.self, at: 6), replicaId: try r.decodeIfPresent(UUID.self, at: 7),
                priority: try r.decode(Int.self, at: 8), createdAt: try r.decode(Date.self, at: 9),
                deliveryCount: try r.decode(Int.self, at: 10), leaseExpiresAt: try r.decode(Date.self, at: 11),
                leaseSeconds: try r.decode(Int.self, at: 12), primaryEpoch: try r.decodeIfPresent(Int64.self, at: 13))
        }.sorted { ($0.priority, $1.createdAt) > ($1.priority, $0.createdAt) }
    }

    /// Extends the lease of a command the agent is working on by its kind's lease; nil when the
    /// agent does not hold it (answered, cancelled, expired, or handed out again).
    ///
    /// A switch or promotion that a promotion overtook after it was delivered (to an agent that
    /// slept through it, say) is cancelled instead: the agent renews before it acts on one, so it
    /// never acts on it. Run in a transaction.
    public static func renew(_ commandId: UUID, agentId: UUID, on conn: PGConnection) throws -> Date? {
        _ = try conn.execute(
            """
            UPDATE commands c SET status = 'cancelled', completed_at = now(), lease_expires_at = NULL, error_message = \(overtakenMessage)
              FROM agents a
             WHERE c.id = $1 AND c.agent_id = $2 AND a.id = c.agent_id AND c.status = 'delivered' AND \(overtaken)
            """, [commandId, agentId])
        return try conn.query(
            """
            UPDATE commands SET lease_expires_at = now() + make_interval(secs => \(leaseSeconds))
             WHERE id = $1 AND agent_id = $2 AND status = 'delivered' RETURNING lease_expires_at
            """, [commandId, agentId]
        ).first?.decode(Date.self, at: 0)
    }

    /// Closes a command its agent was given (pending or delivered) with the agent's answer; false
    /// when it was closed already or is not this agent's.
    @discardableResult
    public static func complete(
        _ commandId: UUID, agentId: UUID, status: CommandStatus, result: JSONValue, errorMessage: String? = nil, on conn: PGConnection
    ) throws -> Bool {
        try conn.execute(
            """
            UPDATE commands SET status = $3, result = $4::jsonb, error_message = $5, completed_at = now()
             WHERE id = $1 AND agent_id = $2 AND status IN ('pending', 'delivered')
            """, [commandId, agentId, status, result.text, errorMessage]) > 0
    }

    /// Withdraws the replica's commands of a kind that no agent has fetched yet.
    public static func cancelPending(_ kind: CommandKind, replicaId: UUID, on conn: PGConnection) throws {
        _ = try conn.execute(
            """
            UPDATE commands SET status = $3, completed_at = now()
             WHERE replica_id = $1 AND command_type = $2 AND status = $4
            """, [replicaId, kind.rawValue, CommandStatus.cancelled, CommandStatus.pending])
    }

    /// Deletes the finished commands created before the cutoff (the retention job) that no
    /// switch names — a switch keeps its command for as long as the fleet's history is kept —
    /// nor a decision still kept; returns how many.
    public static func prune(before cutoff: Date, on conn: PGConnection) throws -> Int {
        try conn.execute(
            """
            DELETE FROM commands c
             WHERE c.created_at < $1 AND c.status IN ('succeeded', 'failed', 'expired', 'cancelled')
               AND NOT EXISTS (SELECT 1 FROM switches s WHERE s.command_id = c.id)
               AND NOT EXISTS (SELECT 1 FROM agent_decision_history d WHERE d.command_id = c.id)
            """, [cutoff])
    }
}
