import MyIMLink
import MyIMWire
import NIOCore
import Synchronization

/// What a link's event loop needs to deliver a best-effort 1:1 chat without the center's actor
/// (``Center/routeOnLoop(_:endpoint:)``): who each session is, which users have a
/// session ready for live deliveries, and each endpoint's link.
///
/// The actor's tables stay the truth; the actor brings this copy in step, under one lock, at
/// the few places they change: a session bound, made ready or gone, a link up or down, a drain.
/// Whatever is not here (a session still flushing its backlog, a user whose id is unknown, a
/// link that pushes back) goes to the actor as before.
final class LiveRoutes: Sendable {
    struct Sender {
        var user: String
        var userID: Int64
        var endpoint: String
        var senderCopies: Bool
    }

    struct Recipient {
        var session: String
        var userID: Int64
        var endpoint: String
    }

    /// Where one chat goes: the recipient's live session and link and, when the sender takes
    /// copies, the sender's link.
    struct Route {
        var sender: Sender
        var recipient: Recipient
        var recipientLink: LinkOutbox
        var senderLink: LinkOutbox?
    }

    private struct State {
        var senders: [String: Sender] = [:]
        /// By user: only sessions whose backlog is flushed (``Center/Session/ready``).
        var recipients: [String: Recipient] = [:]
        var links: [String: LinkOutbox] = [:]
        var draining = false
    }

    private let state = Mutex(State())

    /// A session is bound: it may send at once, and is not a live recipient until ``ready(_:)``
    /// (a user's older session, if it was one, stops being one now).
    func bound(_ session: String, user: String, userID: Int64, endpoint: String, senderCopies: Bool) {
        state.withLock { state in
            state.senders[session] = Sender(user: user, userID: userID, endpoint: endpoint, senderCopies: senderCopies)
            state.recipients[user] = nil
        }
    }

    /// A session's backlog is flushed: live deliveries go straight to it.
    func ready(_ session: String, user: String, userID: Int64, endpoint: String) {
        state.withLock { state in
            guard state.senders[session] != nil else { return }
            state.recipients[user] = Recipient(session: session, userID: userID, endpoint: endpoint)
        }
    }

    /// The id of `user`, whose session is `session`, learned after the session was bound (its
    /// token carried none): from now on its chats can be routed on the loop.
    func learned(_ userID: Int64, user: String, session: String) {
        state.withLock { state in
            if state.senders[session]?.user == user { state.senders[session]?.userID = userID }
            if state.recipients[user]?.session == session { state.recipients[user]?.userID = userID }
        }
    }

    /// A session is closed or replaced.
    func gone(_ session: String, user: String) {
        state.withLock { state in
            state.senders[session] = nil
            if state.recipients[user]?.session == session { state.recipients[user] = nil }
        }
    }

    func linked(_ endpoint: String, outbox: LinkOutbox) {
        state.withLock { $0.links[endpoint] = outbox }
    }

    func unlinked(_ endpoint: String) {
        state.withLock { _ = $0.links.removeValue(forKey: endpoint) }
    }

    /// From now on every request goes to the actor, which refuses new work while draining.
    func drain() {
        state.withLock { $0.draining = true }
    }

    /// The route of a chat from `session`, held by `endpoint`, to `user`; nil when the actor
    /// must handle it: the session is not `endpoint`'s, the recipient has no ready session, a
    /// user id is unknown, a link is missing or pushing back, or the center is draining.
    func route(from session: String, on endpoint: String, to user: String) -> Route? {
        state.withLock { state -> Route? in
            guard !state.draining, let sender = state.senders[session], sender.endpoint == endpoint, sender.userID != 0,
                  let recipient = state.recipients[user], recipient.userID != 0,
                  let recipientLink = state.links[recipient.endpoint], recipientLink.channel.isWritable
            else { return nil }
            guard sender.senderCopies, user != sender.user else {
                return Route(sender: sender, recipient: recipient, recipientLink: recipientLink, senderLink: nil)
            }
            guard let senderLink = state.links[sender.endpoint], senderLink.channel.isWritable else { return nil }
            return Route(sender: sender, recipient: recipient, recipientLink: recipientLink, senderLink: senderLink)
        }
    }
}

/// One link's session packets on their way to the actor, per session, so that a chat routed on
/// the event loop never overtakes an earlier packet of its session that the actor still holds:
/// a QoS 1 chat waiting on SQLite, say, or the session's open or close.
final class LinkIntake: Sendable {
    private struct State {
        /// The endpoint at the other end, once its hello is accepted: nothing is routed before.
        var endpoint: String?
        var waiting: [String: Int] = [:]
    }

    private let state = Mutex(State())

    func admit(_ endpoint: String) {
        state.withLock { $0.endpoint = endpoint }
    }

    /// The link's endpoint when `session` has nothing waiting for the actor; nil otherwise.
    func clear(_ session: String) -> String? {
        state.withLock { $0.waiting[session] == nil ? $0.endpoint : nil }
    }

    /// The session a link packet belongs to, for the packets that take a session's lane: its
    /// open (the session info is the body), its requests and its close.
    static func session(of packet: Packet) -> String? {
        switch LinkMessageType(rawValue: packet.type) {
        case .sessionOpen, .fromClient, .sessionClose:
            // A `FromClient` comes encoded (``Center/bind()``): its session is read from its bytes.
            if let encoded = packet.encodedBody { return WireParser.topLevelString("session", in: encoded) }
            guard case .string(let session)? = packet.body["session"] else { return nil }
            return session
        default:
            return nil
        }
    }

    /// A packet of `session` (its open, a request or its close) goes to the actor.
    func queued(_ session: String) {
        state.withLock { $0.waiting[session, default: 0] += 1 }
    }

    /// The actor has handled (or dropped) a packet of `session`.
    func handled(_ session: String) {
        state.withLock { state in
            guard let count = state.waiting[session] else { return }
            state.waiting[session] = count > 1 ? count - 1 : nil
        }
    }
}

/// On each link of the center, between the packet decoder and the link's reader: a best-effort
/// 1:1 chat to a live recipient is delivered here, on the event loop, with no hop to the actor;
/// everything else goes on. See ``LiveRoutes``.
final class LinkRoutingHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = Packet
    typealias InboundOut = Packet

    let intake = LinkIntake()
    private let center: Center

    init(center: Center) {
        self.center = center
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let packet = unwrapInboundIn(data)
        guard packet.type == LinkMessageType.fromClient.rawValue else {
            if let session = LinkIntake.session(of: packet) { intake.queued(session) }
            context.fireChannelRead(data)
            return
        }
        // Left encoded by the decoder: the client packet inside is read apart, and a chat of
        // the usual shape without a dict (``Chat/init(canonical:limits:)``). One that does not
        // parse goes on to the actor, which logs it and drops it.
        guard let request = try? FromClient(forwarding: packet) else {
            if let session = LinkIntake.session(of: packet) { intake.queued(session) }
            context.fireChannelRead(data)
            return
        }
        if let endpoint = intake.clear(request.session), center.routeOnLoop(request, endpoint: endpoint) { return }
        intake.queued(request.session)
        context.fireChannelRead(data)
    }
}
