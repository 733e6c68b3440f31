import Logging
import MyIMAuth
import MyIMLink
import MyIMSecureChannel
import MyIMTransport
import MyIMWire
import NIOCore

/// One client connection, on its event loop: admission, token auth, then relaying.
///
/// Last in the pipeline, after `SecureChannelHandler`. An idle connection holds no task and no
/// stream: only this handler and its entry in the ``SessionTable``. Token verification and
/// opening the session at the center run in a short task; everything after is synchronous on
/// the connection's event loop:
///
/// - a client packet is relayed to the center through ``LinkWriter`` as it is read, so a
///   client's packets reach the center in their order;
/// - packets read while the session is not bound yet, or while the link is busy, are held in
///   order and the connection stops reading until they can go (TCP pushes back on the client);
/// - packets to the client come from the ``SessionTable`` (``ClientOutbox``) and pass through
///   ``write(context:data:promise:)``, which counts the answers (8, 20) to relayed QoS 1 chats;
///   they are flushed once per event loop tick (``flush(context:)``).
///
/// A source over its connection limit still completes the handshake (cheap with Ed25519), so
/// that it can be told why: 20 with 331, then close.
final class ClientSessionHandler: ChannelDuplexHandler {
    typealias InboundIn = Packet
    typealias OutboundIn = Packet
    typealias OutboundOut = Packet

    private enum State {
        /// The secure channel is not established yet.
        case handshaking
        /// Established; the first packet must be token auth (41).
        case awaitingToken
        /// The token is being verified and the session opened (a task).
        case authenticating
        /// Opened at the center, waiting for `SessionReady`; given up at `timeout`.
        case pending(SessionName, timeout: Scheduled<Void>)
        case bound(SessionName)
        /// Told why it is refused; what it sends is dropped until it closes.
        case refused
        case closed
    }

    private let endpoint: Endpoint
    private let connections: ClientConnections
    /// This connection's place in `connections`.
    var slot = 0
    private var state = State.handshaking
    private var context: ChannelHandlerContext?
    private var source = "unknown"
    private var admitted = false
    /// Packets read that cannot be handled yet, in order.
    private var held: [Packet] = []
    /// A `read()` was held back until `held` empties.
    private var readDeferred = false
    /// Waiting for the link to drain (``LinkWriter/whenWritable(_:)``).
    private var waitingForLink = false
    /// The `client_msg_id`s of the QoS 1 chats relayed to the center that have had neither 8
    /// nor 20 back, oldest first (the center answers a session's chats in order).
    private var unanswered: [String] = []
    /// How many of `held`, from its start, ``relayHeld()`` has relayed so far.
    private var heldRelayed: Int32 = 0
    /// Why the connection ended, when something other than the client ended it.
    private var ended: String?
    /// A flush is due at the end of this event loop tick (``flush(context:)``).
    private var flushDue = false
    /// The table bound the session before ``opened(_:)`` ran: another connection's pass of
    /// `sendPendingOpens` can send this session's `SessionOpen`, and its `SessionReady` can
    /// come back, between `table.open` and the hop to this event loop.
    private var boundEarly = false
    /// The handshake's failure was counted (``errorCaught(context:error:)``).
    private var handshakeFailed = false

    init(endpoint: Endpoint, connections: ClientConnections) {
        self.endpoint = endpoint
        self.connections = connections
    }

    // MARK: - Connection lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        connections.add(self, on: context.eventLoop)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        connections.remove(self, on: context.eventLoop)
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        source = context.channel.remoteAddress?.ipAddress ?? "unknown"
        admitted = endpoint.limiter.acquire(source)
        EndpointMetrics.connections.increment()
        context.fireChannelActive()
    }

    private func secured() {
        guard case .handshaking = state else { return }
        guard admitted else {
            endpoint.logger.notice("connection refused: too many from this source", metadata: [
                "source": "\(source)", "limit": "\(endpoint.limiter.maximum)",
            ])
            refuse(EndpointError(
                .tooManyConnections,
                "too many connections from \(source) (at most \(endpoint.limiter.maximum)); close some and retry"))
            return
        }
        state = .awaitingToken
        // Packets read before this (none, as the secure channel reports itself established
        // before its first packet): the first is the token, the rest wait for the session.
        if !held.isEmpty { authenticate(held.removeFirst()) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if admitted { endpoint.limiter.release(source) }
        EndpointMetrics.connections.decrement()
        let before = state
        state = .closed
        defer { held = [] }
        if case .handshaking = before, !handshakeFailed {
            EndpointMetrics.handshake(failure: SecureChannelError(.notEstablished, "the connection closed during the handshake"))
        }
        switch before {
        case .pending(let info, let timeout):
            timeout.cancel()
            close(info, fallback: ended ?? "the center did not bind the session", on: context.eventLoop)
        case .bound(let info):
            relayHeldAtClose(info)
            close(info, fallback: ended ?? "the client disconnected", on: context.eventLoop)
        case .handshaking, .awaitingToken, .authenticating, .refused, .closed:
            break  // An authentication still running closes its session when it ends (`opened`).
        }
        context.fireChannelInactive()
    }

    /// A client that sends and then closes while the link is busy: NIO reads everything up to
    /// the end of the stream at once, reads held or not, so what it sent is held here. It still
    /// goes to the center, ahead of the session's close; the link takes it over its mark, as
    /// it is bounded by what the socket had buffered.
    private func relayHeldAtClose(_ info: SessionName) {
        defer { heldRelayed = 0 }
        for packet in held[Int(heldRelayed)...] where ClientPacketRoute(type: packet.type) == .relay {
            guard endpoint.link.writer.send(FromClient(session: info.session, payload: packet).packet, evenIfBusy: true) == .sent
            else { return }
            endpoint.counters.messageIn(packet.type)
        }
    }

    /// Tells the center the session ended, and why: the table's reason (kick, quit, too slow)
    /// if it closed the connection, else `fallback`.
    ///
    /// In a task of its own on the event loop: a close can run inline from a write the table
    /// makes under its lock, and the table's lock is not reentrant.
    private func close(_ info: SessionName, fallback: String, on eventLoop: any EventLoop) {
        let endpoint = endpoint
        eventLoop.execute {
            let reason = endpoint.table.remove(info.session)?.closeReason ?? fallback
            try? endpoint.link.send(SessionClose(session: info.session, reason: reason))
            endpoint.logger.info("session closed", metadata: [
                "session": "\(info.session)", "user": "\(info.user)", "reason": "\(reason)",
            ])
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if case .handshaking = state, !handshakeFailed {
            handshakeFailed = true
            EndpointMetrics.handshake(failure: error)
        }
        ended = ended ?? "connection error: \(error)"
        endpoint.logger.debug("connection error", metadata: ["source": "\(source)", "error": "\(error)"])
        close(context)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case let event as SecureChannelEvent:
            guard case .established = event else { return }
            EndpointMetrics.handshake(failure: nil)
            secured()
        case let event as SessionEvent:
            switch event {
            case .bound:
                switch state {
                case .pending(let info, let timeout):
                    timeout.cancel()
                    bind(info)
                case .authenticating:
                    boundEarly = true
                default:
                    return
                }
            case .linkDropped:
                failUnanswered()
            }
        case IdleStateHandler.IdleStateEvent.read:
            // Reads held back by the endpoint (a busy link), or a client waiting for its 42
            // (a session not bound yet): the silence is ours, not the client's. The check fires
            // again in `idleTimeout`.
            guard !mustHoldReads, !awaitingBind else { return }
            let milliseconds = endpoint.configuration.idleTimeout.nanoseconds / 1_000_000
            ended = ended ?? "idle timeout: nothing received for \(milliseconds) ms"
            close(context)
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    // MARK: - From the client

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let packet = unwrapInboundIn(data)
        switch state {
        case .awaitingToken:
            authenticate(packet)
        case .handshaking, .authenticating, .pending:
            held.append(packet)
        case .bound:
            if held.isEmpty, relay(packet) { return }
            held.append(packet)
            waitForLink()
        case .refused, .closed:
            break
        }
    }

    /// Reads wait while packets are held: the client's bytes stay in the kernel. Until then the
    /// channel keeps reading, so that a session whose client sends nothing while its token is
    /// checked and its session opened (the usual case) never stops and restarts reading: each
    /// is an `epoll_ctl` call.
    func read(context: ChannelHandlerContext) {
        if mustHoldReads {
            readDeferred = true
        } else {
            context.read()
        }
    }

    /// The token was sent; the client waits for 42, which comes once the center binds the session.
    private var awaitingBind: Bool {
        switch state {
        case .authenticating, .pending: true
        default: false
        }
    }

    private var mustHoldReads: Bool {
        switch state {
        case .handshaking, .awaitingToken, .refused, .closed: false
        case .authenticating, .pending, .bound: !held.isEmpty
        }
    }

    /// Verifies the token and opens the session at the center. A token this endpoint verified
    /// before is checked here, on the event loop; another waits for its signature's check in a
    /// task, and the answer comes back to the event loop. Either way ``authenticated(_:outbox:on:)``
    /// opens the session or refuses it.
    private func authenticate(_ packet: Packet) {
        guard let context else { return }
        state = .authenticating
        let endpoint = endpoint
        let outbox = ClientOutbox(channel: context.channel, counters: endpoint.counters)
        let auth: TokenAuth
        switch endpoint.tokenAuth(in: packet) {
        case .success(let parsed):
            auth = parsed
        case .failure(let refusal):
            authenticated(.failure(refusal), outbox: outbox, on: context.eventLoop)
            return
        }
        if let known = endpoint.authenticateRemembered(auth) {
            authenticated(known, outbox: outbox, on: context.eventLoop)
            return
        }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        Task {
            let result = await endpoint.authenticate(auth)
            handler.eventLoop.execute { handler.value.authenticated(result, outbox: outbox, on: handler.eventLoop) }
        }
    }

    private func authenticated(_ result: Result<TokenAuthentication, EndpointError>, outbox: ClientOutbox, on eventLoop: any EventLoop) {
        switch result {
        case .success(let authentication):
            let claims = authentication.claims
            let info = endpoint.table.open(
                user: claims.address, userID: claims.userID, login: claims.sessionID, device: claims.deviceHash,
                senderCopies: authentication.senderCopies, outbox: outbox)
            // Before SessionOpen leaves: the center's SessionReady then finds the handler pending.
            opened(SessionName(session: info.session, user: info.user), on: eventLoop)
            endpoint.link.sendPendingOpens()
        case .failure(let refusal):
            endpoint.logger.notice("authentication refused", metadata: [
                "source": "\(source)", "code": "\(refusal.code)", "reason": "\(refusal.message)",
            ])
            refuse(refusal)
        }
    }

    private func opened(_ info: SessionName, on eventLoop: any EventLoop) {
        guard case .authenticating = state, let context else {
            // The client left while its token was checked.
            close(info, fallback: ended ?? "the client disconnected", on: eventLoop)
            return
        }
        endpoint.logger.debug("token verified; opening the session at the center", metadata: [
            "session": "\(info.session)", "user": "\(info.user)",
        ])
        guard !boundEarly else {
            bind(info)
            return
        }
        let table = endpoint.table
        let timeout = context.eventLoop.scheduleTask(in: TimeAmount(endpoint.configuration.sessionReadyTimeout)) {
            table.expire(info.session, error: EndpointError(.centerUnavailable, "the center did not accept the session in time; retry"))
        }
        state = .pending(info, timeout: timeout)
    }

    private func bind(_ info: SessionName) {
        state = .bound(info)
        endpoint.logger.info("session open", metadata: ["session": "\(info.session)", "user": "\(info.user)"])
        relayHeld()
    }

    /// Sends `refusal` as the connection's last packet and closes it.
    private func refuse(_ refusal: EndpointError) {
        guard let context else { return }
        state = .refused
        held = []
        ClientOutbox(channel: context.channel, counters: endpoint.counters).writeLast(refusal.packet)
    }

    /// Relays what was held, in order, while the link takes it; then reads again.
    private func relayHeld() {
        guard let context, case .bound = state else { return }
        // Counted before each relay: a relay can close the connection (a reply to a client over
        // its high-water mark), and the close relays what is left (`relayHeldAtClose`) and
        // empties `held` at once.
        while heldRelayed < held.count {
            heldRelayed += 1
            guard relay(held[Int(heldRelayed) - 1]) else {
                heldRelayed -= 1
                break
            }
            guard case .bound = state else { return }
        }
        held.removeFirst(Int(heldRelayed))
        heldRelayed = 0
        if !held.isEmpty {
            waitForLink()
        } else if readDeferred {
            readDeferred = false
            context.read()
        }
    }

    private func waitForLink() {
        guard !waitingForLink, let context else { return }
        waitingForLink = true
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        endpoint.link.writer.whenWritable {
            handler.eventLoop.execute {
                handler.value.waitingForLink = false
                handler.value.relayHeld()
            }
        }
    }

    /// Handles one packet of a bound session; `false`, doing nothing, when the link is busy.
    private func relay(_ packet: Packet) -> Bool {
        guard case .bound(let info) = state else { return true }
        switch ClientPacketRoute(type: packet.type) {
        case .ping:
            endpoint.counters.messageIn(packet.type)
            do {
                reply(Pong(time: try Ping(packet: packet).time).packet)
            } catch {
                reply(ErrorMessage(code: error.code, data: error.message).packet)
            }
        case .ignore:
            endpoint.counters.messageIn(packet.type)
        case .relay:
            switch endpoint.link.writer.send(FromClient(session: info.session, payload: packet).packet) {
            case .sent:
                endpoint.counters.messageIn(packet.type)
                // Its 8 (or 20) comes back through this event loop, so after this count.
                if packet.int("qos") != 0, let id = Chat.clientMessageID(of: packet) { unanswered.append(id) }
            case .busy:
                return false
            case .down:
                endpoint.counters.messageIn(packet.type)
                reply(EndpointError.centerUnavailable.packet(answering: packet))
            }
        case .refuse(let code, let message):
            endpoint.counters.messageIn(packet.type)
            reply(ErrorMessage(code: code, data: message).packet)
        }
        return true
    }

    /// An answer from the endpoint itself, after what the client was sent before.
    private func reply(_ packet: Packet) {
        guard let context else { return }
        guard context.channel.isWritable else {
            ended = ended ?? "the client did not read what it was sent"
            close(context)
            return
        }
        endpoint.counters.messageOut(packet)
        context.writeAndFlush(wrapOutboundOut(packet), promise: nil)
    }

    /// The link dropped: every chat it had not answered gets 20 with 330 now, naming it.
    private func failUnanswered() {
        guard !unanswered.isEmpty else { return }
        let message = "the link to the center dropped before it answered; send again with the same client_msg_id"
        for id in unanswered { reply(ErrorMessage(code: .centerUnavailable, data: message, clientMessageID: id).packet) }
        endpoint.logger.notice("chats the center had not answered were failed with 330", metadata: [
            "source": "\(source)", "chats": "\(unanswered.count)",
        ])
        unanswered = []
    }

    // MARK: - To the client

    /// Packets from the session table: an 8 answers the oldest relayed QoS 1 chat, a 20 the chat
    /// it names (a 20 naming none, or a QoS 0 chat, answers no counted chat).
    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if !unanswered.isEmpty {
            let packet = unwrapOutboundIn(data)
            if packet.type == MessageType.chatAccepted.rawValue {
                unanswered.removeFirst()
            } else if packet.type == MessageType.error.rawValue,
                case .string(let id)? = (try? packet.parsedBody())?["client_msg_id"], let index = unanswered.firstIndex(of: id)
            {
                unanswered.remove(at: index)
            }
        }
        context.write(data, promise: promise)
    }

    /// A close from outside (the table closing a slow client, a last write done) flushes
    /// first what was written for the client, as the handler's own closes do (``close(_:)``).
    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        flushIfDue(context)
        context.close(mode: mode, promise: promise)
    }

    /// Closes the connection after flushing what was written to it: a flush is deferred to the
    /// end of the tick, and a close before it would drop what the client was already sent.
    private func close(_ context: ChannelHandlerContext) {
        flushIfDue(context)
        context.close(promise: nil)
    }

    private func flushIfDue(_ context: ChannelHandlerContext) {
        guard flushDue else { return }
        flushDue = false
        context.flush()
    }

    /// Flushes once per event loop tick: the deliveries written from one read of the link (and
    /// the answers to one read of the client) go to the socket in one write, not one each.
    func flush(context: ChannelHandlerContext) {
        guard !flushDue else { return }
        flushDue = true
        context.eventLoop.assumeIsolated().execute {
            guard let context = self.context else { return }
            self.flushIfDue(context)
        }
    }
}

extension ClientSessionHandler: ClientConnections.Member {
    func shutDown() {
        guard let context else { return }
        ended = ended ?? "the endpoint is shutting down"
        close(context)
    }
}

@available(*, unavailable)
extension ClientSessionHandler: Sendable {}

/// What a connection keeps of its session; the ``SessionTable`` has the rest.
private struct SessionName: Sendable {
    let session: String
    let user: String
}
