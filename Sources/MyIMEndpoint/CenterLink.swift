import Logging
import Metrics
import MyIMLink
import MyIMWire
import NIOCore
import Synchronization

/// The endpoint's one link to its domain's center: connects, says `LinkHello` with the
/// sessions it holds, relays both ways, and reconnects by itself.
///
/// Life of a link: connect (TLS or plain) → `LinkHello(node, domain, bound sessions)` so that a
/// restarted center binds them again → `LinkWelcome` within ``EndpointConfiguration/linkWelcomeTimeout``
/// (a `LinkRefused`, anything else or silence drops it) → `SessionOpen` for every session still
/// waiting → relaying, with a `LinkPing` every ``EndpointConfiguration/linkPingInterval`` and the link
/// dropped after three intervals without a byte from the center. When it drops, it reconnects after
/// a capped exponential backoff with jitter (``ReconnectBackoff``); meanwhile ``send(_:)`` throws
/// ``EndpointError/centerUnavailable`` and new sessions wait, pending, for the next link.
///
/// Once welcomed, everything bound for the center goes through ``writer``: client connections
/// relay with it from their own event loops, without a hop through this actor.
actor CenterLink {
    private enum State {
        case down
        case up(generation: Int)
    }

    /// The welcomed link's channel, for writes from anywhere.
    nonisolated let writer = LinkWriter()
    /// The welcomed link's generation while ``writer`` is attached to it, `nil` while down: what
    /// ``sendPendingOpens()`` reads from any thread. The writer is attached under its lock, and
    /// claims and sends happen under it, so that a `SessionOpen` claimed for a generation goes out
    /// on that generation's link or not at all (and is then claimed again by the next one).
    private nonisolated let welcomed = Mutex<Int?>(nil)
    private let configuration: EndpointConfiguration
    private let table: SessionTable
    private let logger: Logger
    private var state = State.down
    /// Incremented by each welcome: which link a `SessionOpen` was sent on.
    private var generation = 0
    /// When the center was last heard from: every packet counts (``LinkDeliveryHandler``).
    private let activity = LinkActivity()
    /// Set while the link is down and its outage has been logged, so that a long outage logs
    /// one warning and not one per attempt.
    private var outageLogged = false

    init(configuration: EndpointConfiguration, table: SessionTable, logger: Logger) {
        self.configuration = configuration
        self.table = table
        self.logger = logger
    }

    /// Whether the center has welcomed the current link.
    var isUp: Bool {
        if case .up = state { true } else { false }
    }

    /// Keeps a link up until the task is cancelled.
    func run() async {
        var backoff = ReconnectBackoff(initial: configuration.reconnectFirstDelay, maximum: configuration.reconnectMaximumDelay)
        while !Task.isCancelled {
            let generationBefore = generation
            do {
                try await connectOnce(backoff: &backoff)
                noteDown("the center closed the link")
            } catch is CancellationError {
                break
            } catch {
                noteDown(LinkChannel.describe(error))
            }
            markDown()
            if generation != generationBefore {
                // Chats the center had not answered are failed with 330 by their connections.
                table.linkDropped()
            }
            do {
                try await Task.sleep(for: backoff.next())
            } catch {
                break
            }
        }
        markDown()
    }

    /// Sends a message to the center on the current link; ``EndpointError/centerUnavailable``
    /// when there is none or the write fails.
    nonisolated func send(_ message: some LinkMessage) throws(EndpointError) {
        guard writer.send(message.packet, evenIfBusy: true) == .sent else { throw .centerUnavailable }
    }

    /// Sends `SessionOpen` for pending sessions not yet opened on the current link (none while
    /// the link is down: the next welcome does it). From any thread: a connection whose token
    /// was verified on its event loop calls it there.
    nonisolated func sendPendingOpens() {
        welcomed.withLock { generation in
            guard let generation else { return }
            for info in table.claimOpens(generation: generation) {
                // Down: the link dropped, and the next one sends it again.
                guard writer.send(SessionOpen(info: info).packet, evenIfBusy: true) == .sent else { return }
            }
        }
    }

    /// The link is down. No claim sees a generation from here on; one that saw it just before
    /// finds the writer's channel closed, and the next welcome sends what it claimed again.
    /// (Detached outside the lock: `detach` resumes waiters.)
    private func markDown() {
        state = .down
        welcomed.withLock { $0 = nil }
        writer.detach()
    }

    // MARK: - One link

    private func connectOnce(backoff: inout ReconnectBackoff) async throws {
        let link = try await LinkChannel.connect(
            host: configuration.centerHost, port: configuration.centerPort, serverName: configuration.centerName,
            protection: configuration.linkProtection, limits: configuration.limits,
            // Deliveries go to clients as the center encoded them (LinkDeliveryHandler).
            leftEncoded: [LinkMessageType.toClient.rawValue]
        ) { [writer, table, activity, logger, limits = configuration.limits] channel in
            // The link carries every client's traffic: a deep buffer before relaying pushes back.
            try channel.syncOptions?.setOption(.writeBufferWaterMark, value: .init(low: 4 << 20, high: 8 << 20))
            try channel.pipeline.syncOperations.addHandler(LinkWritabilityHandler(writer: writer), position: .first)
            try channel.pipeline.syncOperations.addHandler(LinkDeliveryHandler(table: table, activity: activity, logger: logger, limits: limits))
        }
        try await link.executeThenClose { inbound, outbound in
            activity.heard()
            let hello = LinkHello(node: configuration.node, domain: configuration.domain, sessions: table.boundSessions())
            try await outbound.write(hello.packet)
            let expected = generation + 1
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { await self.closeUnlessWelcomed(link.channel, generation: expected) }
                var packets = inbound.makeAsyncIterator()
                guard let first = try await packets.next() else {
                    throw EndpointError(.centerUnavailable, "the center closed the link before welcoming it")
                }
                try welcome(first, channel: link.channel, sessions: hello.sessions.count)
                backoff.reset()
                group.addTask { await self.keepAlive(link.channel, outbound: outbound) }
                sendPendingOpens()
                while let packet = try await packets.next() {
                    try await handle(packet, writer: outbound)
                }
                group.cancelAll()
            }
        }
    }

    private func welcome(_ packet: Packet, channel: any Channel, sessions: Int) throws {
        switch LinkMessageType(rawValue: packet.type) {
        case .welcome:
            let welcome = try LinkWelcome(packet: packet)
            generation += 1
            state = .up(generation: generation)
            welcomed.withLock { [generation] welcomed in
                writer.attach(channel)
                welcomed = generation
            }
            outageLogged = false
            logger.notice("link up", metadata: [
                "center": "\(welcome.node)", "address": "\(configuration.centerHost):\(configuration.centerPort)",
                "sessions": "\(sessions)",
            ])
        case .refused:
            let refused = try LinkRefused(packet: packet)
            throw EndpointError(refused.code, "the center refused the link: \(refused.message)")
        default:
            throw EndpointError(.unexpectedMessage, "the center answered LinkHello with message \(packet.type), not LinkWelcome")
        }
    }

    /// Closes the link if the center has not welcomed it within the welcome timeout.
    private func closeUnlessWelcomed(_ channel: any Channel, generation expected: Int) async {
        do {
            try await Task.sleep(for: configuration.linkWelcomeTimeout)
        } catch {
            return  // Cancelled with the link.
        }
        if generation < expected {
            logger.warning("the center did not welcome the link in time; reconnecting")
            channel.close(promise: nil)
        }
    }

    /// Pings the center every interval, and closes the link once the center has been silent
    /// for three intervals (a half-open TCP connection never reports itself otherwise).
    private func keepAlive(_ channel: any Channel, outbound: NIOAsyncChannelOutboundWriter<Packet>) async {
        do {
            while true {
                try await Task.sleep(for: configuration.linkPingInterval)
                if activity.silence > configuration.linkPingInterval * 3 {
                    logger.warning("the center has been silent for three ping intervals; reconnecting")
                    channel.close(promise: nil)
                    return
                }
                try await outbound.write(LinkPing(time: configuration.clock()).packet)
            }
        } catch {
            return  // Cancelled with the link, or the link is gone.
        }
    }

    /// What ``LinkDeliveryHandler`` leaves to the link itself.
    private func handle(_ packet: Packet, writer: NIOAsyncChannelOutboundWriter<Packet>) async throws {
        switch LinkMessageType(rawValue: packet.type) {
        case .ping:
            do {
                try await writer.write(LinkPong(time: try LinkPing(packet: packet).time).packet)
            } catch let error as WireError {
                logger.error("cannot handle a link message", metadata: ["type": "\(packet.type)", "error": "\(error)"])
            }
        case .pong:
            break
        default:
            logger.warning("unexpected link message from the center", metadata: ["type": "\(packet.type)"])
        }
    }

    private func noteDown(_ reason: String) {
        let wasUp = isUp
        Counter(label: "myim_link_errors_total", dimensions: [("link", "center")]).increment()
        markDown()
        if wasUp || !outageLogged {
            logger.warning("link down; reconnecting", metadata: ["reason": "\(reason)"])
            outageLogged = true
        } else {
            logger.debug("link attempt failed", metadata: ["reason": "\(reason)"])
        }
    }
}
