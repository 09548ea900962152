import Foundation
import Logging
import Metrics
import ServiceLifecycle
import SpotBus
import SpotModels
import Synchronization

/// Wakes command long-polls. A poll listens for its agent, looks for commands, and if none
/// waits until `command.issued` names the agent, its time is up, or the service shuts down.
/// Wake-ups are hints: a lost one costs at most one long-poll period, because the poll ends
/// and the agent asks again; the `commands` table is the truth.
public final class CommandMailbox: Sendable {
    public struct Ticket: Sendable {
        let agent: UUID
        let number: Int
    }

    private enum Slot {
        case listening
        case woken
        case waiting(CheckedContinuation<Void, Never>)
    }

    private struct State {
        var next = 0
        var slots: [UUID: [Int: Slot]] = [:]
        var closed = false
    }

    private let state = Mutex(State())
    private let waitingPolls = Gauge(label: "spotguard_command_polls_waiting")
    private let waitingCount = Atomic<Int>(0)

    public init() {}

    public func listen(_ agent: UUID) -> Ticket {
        state.withLock { s in
            s.next += 1
            s.slots[agent, default: [:]][s.next] = s.closed ? .woken : .listening
            return Ticket(agent: agent, number: s.next)
        }
    }

    public func forget(_ ticket: Ticket) {
        let slot = state.withLock { s -> Slot? in
            let slot = s.slots[ticket.agent]?.removeValue(forKey: ticket.number)
            if s.slots[ticket.agent]?.isEmpty == true { s.slots[ticket.agent] = nil }
            return slot
        }
        if case .waiting(let c) = slot { c.resume() }
    }

    /// Wakes every poll of the agent.
    public func wake(_ agent: UUID) {
        let waiting = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            guard var slots = s.slots[agent] else { return [] }
            var resumed: [CheckedContinuation<Void, Never>] = []
            for (n, slot) in slots {
                if case .waiting(let c) = slot { resumed.append(c) }
                slots[n] = .woken
            }
            s.slots[agent] = slots
            return resumed
        }
        waiting.forEach { $0.resume() }
    }

    /// Wakes every poll now and later ones at once (graceful shutdown).
    public func close() {
        let agents = state.withLock { s -> [UUID] in
            s.closed = true
            return Array(s.slots.keys)
        }
        agents.forEach(wake)
    }

    /// Returns when the ticket's agent is woken or `timeout` passed; the ticket is spent.
    public func wait(_ ticket: Ticket, upTo timeout: Duration) async {
        waitingPolls.record(waitingCount.add(1, ordering: .relaxed).newValue)
        defer { waitingPolls.record(waitingCount.subtract(1, ordering: .relaxed).newValue) }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                    let ready = self.state.withLock { s -> Bool in
                        guard case .listening = s.slots[ticket.agent]?[ticket.number] else { return true }
                        s.slots[ticket.agent]![ticket.number] = .waiting(c)
                        return false
                    }
                    if ready { c.resume() }
                }
            }
            group.addTask {
                // a server shutting down ends its polls early instead of holding them
                _ = try? await cancelWhenGracefulShutdown { try await Task.sleep(for: timeout) }
                self.forget(ticket)
            }
            await group.next()
            group.cancelAll()
        }
        forget(ticket)
    }
}

/// The process's own queue of `command.issued` hints, feeding the mailbox.
public struct CommandWakeUps: Service {
    let consumer: BusConsumer
    let mailbox: CommandMailbox

    public init(endpoint: AMQPEndpoint, mailbox: CommandMailbox, publisher: BusPublisher, logger: Logger) {
        self.mailbox = mailbox
        consumer = .processQueue(
            "spotguard.ingest.commands", bindings: [RoutingKey.commandIssued], endpoint: endpoint, publisher: publisher, prefetch: 500, logger: logger
        ) { delivery in
            guard let fact = try? delivery.decode(CommandIssued.self) else { return }
            mailbox.wake(fact.payload.agentId)
        }
    }

    public var isConnected: Bool { consumer.isConnected }

    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await consumer.run()
        } onGracefulShutdown: {
            mailbox.close()
        }
    }
}
