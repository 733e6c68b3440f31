import MyIMLink
import MyIMWire
import NIOCore
import Synchronization

/// What the table tells a session's connection besides packets (``ClientSessionHandler``).
enum SessionEvent: Sendable {
    /// The center bound the session: 42 and 10 were written just before.
    case bound
    /// The link to the center dropped: chats it had not answered will not be.
    case linkDropped
}

/// Where a session's packets go: straight to its connection. Packets written from one place
/// (the table's actor, or the connection's own handler) reach the client in that order.
struct ClientOutbox: Sendable {
    let channel: any Channel
    let counters: EndpointCounters

    /// How long a closing connection may take to hand its last packet to the kernel before it
    /// is closed anyway (a client that stopped reading).
    static let lastWriteGrace = TimeAmount.seconds(5)

    /// Writes and flushes `packet`; `false`, writing nothing, when the client has not read what
    /// was sent to it before (more than the channel's high-water mark is waiting).
    func write(_ packet: Packet) -> Bool {
        guard channel.isWritable else { return false }
        counters.messageOut(packet)
        channel.writeAndFlush(packet, promise: nil)
        return true
    }

    /// Writes `packet` (19, 44, 48, 20) and closes the connection once it, and so everything
    /// written before, has reached the kernel, or after ``lastWriteGrace``.
    func writeLast(_ packet: Packet) {
        counters.messageOut(packet)
        let channel = channel
        let grace = channel.eventLoop.scheduleTask(in: Self.lastWriteGrace) { channel.close(promise: nil) }
        channel.writeAndFlush(packet).whenComplete { _ in
            grace.cancel()
            channel.close(promise: nil)
        }
    }

    /// Closes the connection now: what is not written yet is dropped.
    func close() {
        channel.close(promise: nil)
    }

    func notify(_ event: SessionEvent) {
        channel.pipeline.fireUserInboundEventTriggered(event)
    }
}

/// The client sessions one endpoint holds, each with the connection it writes to.
///
/// Every packet the center sends a client — AuthOK and 10 on `SessionReady`, relayed
/// `ToClient`s — is written to its connection from this actor, so in the order it was decided;
/// a client too slow to read them (over the connection's high-water mark) is closed. A session
/// is *pending* from token auth until the center's `SessionReady`, then *bound*, then *closing*
/// once a kick or quit has been queued.
///
/// A lock, not an actor: the center link's handler delivers on the link's event loop without a
/// hop. Packets are written to connections under the lock, so that they leave in the order the
/// table decided them; nothing a write can run inline on a connection's event loop
/// (``ClientSessionHandler``) calls back into the table, which would deadlock.
final class SessionTable: Sendable {
    private let sessions: Mutex<Sessions>

    init(node: String, clock: @escaping @Sendable () -> Int64) {
        sessions = Mutex(Sessions(node: node, clock: clock))
    }

    func open(user: String, userID: Int64, login: String, device: String, senderCopies: Bool = true, outbox: ClientOutbox) -> SessionInfo {
        sessions.withLock {
            $0.open(user: user, userID: userID, login: login, device: device, senderCopies: senderCopies, outbox: outbox)
        }
    }

    @discardableResult
    func closeAll(with packet: Packet, reason: String) -> Int {
        sessions.withLock { $0.closeAll(with: packet, reason: reason) }
    }

    func bind(_ session: String, initial: WireDict) -> Bool {
        sessions.withLock { $0.bind(session, initial: initial) }
    }

    func expire(_ session: String, error: EndpointError) {
        sessions.withLock { $0.expire(session, error: error) }
    }

    @discardableResult
    func remove(_ session: String) -> (info: SessionInfo, closeReason: String?)? {
        sessions.withLock { $0.remove(session) }
    }

    @discardableResult
    func deliver(_ packet: Packet, to sessions: [String]) -> Int {
        self.sessions.withLock { $0.deliver(packet, to: sessions) }
    }

    func kick(_ session: String, reason: String) -> Bool {
        sessions.withLock { $0.kick(session, reason: reason) }
    }

    func linkDropped() {
        sessions.withLock { $0.linkDropped() }
    }

    func claimOpens(generation: Int) -> [SessionInfo] {
        sessions.withLock { $0.claimOpens(generation: generation) }
    }

    func boundSessions() -> [SessionInfo] {
        sessions.withLock { $0.boundSessions() }
    }

    func boundUsers() -> [String] {
        sessions.withLock { $0.boundUsers() }
    }

    var count: Int { sessions.withLock { $0.count } }
}

/// What ``SessionTable`` guards; see there. A session is *pending* from token auth until the
/// center's `SessionReady`, then *bound*, then *closing* once a kick or quit has been queued.
private struct Sessions {
    private enum State {
        /// Waiting for `SessionReady`. `sentOn` is the link generation its `SessionOpen` went
        /// out on, so that each new link sends it exactly once.
        case pending(sentOn: Int?)
        case bound
        /// The table closed the connection, for `reason` (kick, quit, refused session, too slow).
        case closing(reason: String)
    }

    /// A reference: the dictionary's buckets, at most three quarters full, hold a pointer
    /// each rather than the whole entry.
    private final class Entry {
        let info: SessionInfo
        var state: State
        let outbox: ClientOutbox

        init(info: SessionInfo, outbox: ClientOutbox) {
            self.info = info
            state = .pending(sentOn: nil)
            self.outbox = outbox
        }

        /// Closes the connection for `reason`, unless the table already did (the first reason stays).
        func markClosing(_ reason: String) {
            if case .closing = state { return }
            state = .closing(reason: reason)
        }

        var closeReason: String? {
            if case .closing(let reason) = state { reason } else { nil }
        }
    }

    private let node: String
    private let clock: @Sendable () -> Int64
    private var entries: [String: Entry] = [:]
    private var counter: UInt64 = 0
    /// Set by ``closeAll(with:reason:)``: what every session, present or new, is sent before
    /// it is closed.
    private var shutdown: (packet: Packet, reason: String)?
    /// The sessions in state `.pending`, so that a new connection's `SessionOpen` does not
    /// scan every session held.
    private var pending: Set<String> = []

    init(node: String, clock: @escaping @Sendable () -> Int64) {
        self.node = node
        self.clock = clock
    }

    // MARK: - Lifecycle

    /// Registers an authenticated client as a pending session and gives it its id, `<node>:<counter>`.
    mutating func open(
        user: String, userID: Int64, login: String, device: String, senderCopies: Bool, outbox: ClientOutbox
    ) -> SessionInfo {
        counter += 1
        let info = SessionInfo(
            session: "\(node):\(counter)", user: user, login: login, device: device, since: clock(), userID: userID,
            senderCopies: senderCopies)
        entries[info.session] = Entry(info: info, outbox: outbox)
        pending.insert(info.session)
        if let shutdown { close(info.session, with: shutdown.packet, reason: shutdown.reason) }
        return info
    }

    /// The endpoint is shutting down: every session, and every one opened from now on, is
    /// sent `packet` (48) after what is already queued for it, then closed. Returns how many
    /// sessions were open.
    @discardableResult
    mutating func closeAll(with packet: Packet, reason: String) -> Int {
        shutdown = (packet, reason)
        for session in entries.keys { close(session, with: packet, reason: reason) }
        return entries.count
    }

    private mutating func close(_ session: String, with packet: Packet, reason: String) {
        guard let entry = entries[session] else { return }
        if case .closing = entry.state { return }
        finish(session, with: packet, reason: reason)
    }

    /// The center bound the session: queues 42 (AuthOK) and 10 (from `initial`), before any
    /// `ToClient` that follows on the link. `false` for a session this endpoint no longer holds.
    ///
    /// A session already bound is left as it is (`true`): a center re-binding the sessions of a
    /// `LinkHello` answers each with `SessionReady` again, and the client, already past 42 and 10,
    /// only gets the deliveries that follow.
    mutating func bind(_ session: String, initial: WireDict) -> Bool {
        guard let entry = entries[session] else { return false }
        guard case .pending = entry.state else { return true }
        let authOK = AuthOK(username: entry.info.user, sessionID: entry.info.login, serverTime: clock(), node: node)
        entry.state = .bound
        pending.remove(session)
        enqueue(authOK.packet, for: session)
        enqueue(Packet(type: MessageType.initialState.rawValue, body: initial), for: session)
        entry.outbox.notify(.bound)
        return true
    }

    /// Gives up on a session still pending (the center did not answer in time, or the endpoint
    /// is stopping): queues `error` and a close. Does nothing to a bound session.
    mutating func expire(_ session: String, error: EndpointError) {
        guard let entry = entries[session], case .pending = entry.state else { return }
        finish(session, with: error.packet, reason: "the center did not bind the session")
    }

    /// Forgets a session whose connection ended; returns what it was, if it was held, and why
    /// the table closed it, if it did.
    @discardableResult
    mutating func remove(_ session: String) -> (info: SessionInfo, closeReason: String?)? {
        pending.remove(session)
        guard let entry = entries.removeValue(forKey: session) else { return nil }
        return (entry.info, entry.closeReason)
    }

    // MARK: - From the center

    /// Queues `packet` for each listed session that is bound here; others are ignored (they
    /// left, or belong to nobody). A quit ack (44) is followed by a close. Returns how many
    /// sessions it was queued for.
    @discardableResult
    mutating func deliver(_ packet: Packet, to sessions: [String]) -> Int {
        var delivered = 0
        for session in sessions {
            guard let entry = entries[session], case .bound = entry.state else { continue }
            if packet.type == MessageType.quitAck.rawValue {
                finish(session, with: packet, reason: "quit")
            } else {
                enqueue(packet, for: session)
            }
            delivered += 1
        }
        return delivered
    }

    /// A newer login took over: queues 19 and a close. `false` for a session not held here.
    mutating func kick(_ session: String, reason: String) -> Bool {
        guard let entry = entries[session] else { return false }
        if case .closing = entry.state { return true }
        finish(session, with: Kicked().packet, reason: "kicked: \(reason)")
        return true
    }

    /// The link to the center dropped: every bound connection fails the QoS 1 chats it relayed
    /// and had no answer to (20 with 330), so that the client sends them again (same client id;
    /// the center keeps each once) instead of waiting for its reply timeout.
    func linkDropped() {
        for entry in entries.values {
            if case .bound = entry.state { entry.outbox.notify(.linkDropped) }
        }
    }

    // MARK: - For the link and the heartbeat

    /// Pending sessions whose `SessionOpen` has not been sent on link `generation` yet; they are
    /// marked sent, so that concurrent callers never send one twice on the same link.
    mutating func claimOpens(generation: Int) -> [SessionInfo] {
        var claimed: [SessionInfo] = []
        for session in pending {
            guard let entry = entries[session], case .pending(let sentOn) = entry.state, sentOn != generation else { continue }
            entry.state = .pending(sentOn: generation)
            claimed.append(entry.info)
        }
        return claimed.sorted { $0.since < $1.since }
    }

    /// Sessions the center has bound: what a new link's `LinkHello` carries.
    func boundSessions() -> [SessionInfo] {
        entries.values.compactMap { entry in
            if case .bound = entry.state { entry.info } else { nil }
        }.sorted { $0.session < $1.session }
    }

    /// The addresses of the bound sessions' users, in no order: what a heartbeat refreshes. One
    /// per bound session (a user with two devices here is listed twice): no hashing here, under
    /// the lock the event loops take for every packet; the heartbeat's slices drop the repeats.
    func boundUsers() -> [String] {
        var users: [String] = []
        users.reserveCapacity(entries.count)
        for entry in entries.values {
            if case .bound = entry.state { users.append(entry.info.user) }
        }
        return users
    }

    var count: Int { entries.count }

    private mutating func enqueue(_ packet: Packet, for session: String) {
        guard let entry = entries[session], !entry.outbox.write(packet) else { return }
        // The client reads slower than it is sent to: close it rather than buffer without
        // bound. Stored (QoS 1) messages come back at its next login.
        entry.markClosing("the client did not read what it was sent")
        pending.remove(session)
        entry.outbox.close()
    }

    /// Writes `packet` as the session's last (19, 44, 48, 20) and closes its connection after it.
    private mutating func finish(_ session: String, with packet: Packet, reason: String) {
        guard let entry = entries[session] else { return }
        entry.markClosing(reason)
        pending.remove(session)
        entry.outbox.writeLast(packet)
    }
}
