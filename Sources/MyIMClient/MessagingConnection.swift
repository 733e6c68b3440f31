import Foundation
import MyIMSecureChannel
import MyIMTransport
import MyIMWire
import NIOCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How a ``MessagingConnection`` behaves; the defaults suit the CLI.
public struct MessagingOptions: Sendable {
    /// TCP connect plus handshake, per endpoint tried.
    public var connectTimeout: Duration = .seconds(10)
    /// From token auth (41) to the initial state (10).
    public var authTimeout: Duration = .seconds(20)
    /// How long a chat (6) waits for its 8 (QoS 1) or, for a QoS 0 group chat, the sender's
    /// copy; or a quit for 44.
    public var replyTimeout: Duration = .seconds(30)
    /// A chat refused with 330 (the center is unreachable) is sent again once, with the same
    /// client message id, after this long.
    public var centerRetryDelay: Duration = .seconds(1)
    /// A ping (21) this often keeps the endpoint's idle timeout away; nil for none.
    public var keepaliveInterval: Duration? = .seconds(30)
    /// Write every delivery (18, and 10's unread messages) to `<home>/history`.
    public var recordHistory = true
    /// Largest image sent, checked here before sending (the center has its own limit).
    public var maxImageBytes = 4 * 1024 * 1024

    public init() {}
}

/// An endpoint that could not be reached while opening a connection, and why.
public struct SkippedEndpoint: Sendable, Equatable {
    public var endpoint: EndpointCandidate
    public var error: ClientError
}

/// One authenticated session on an endpoint: chat, deliveries, acknowledgements, quit.
///
/// ``open(session:home:endpoint:pin:options:)`` connects over the secure channel with the
/// endpoint's key pinned from the signed server list, authenticates with the saved token (41)
/// and waits for 42 and 10. Then:
/// - ``send(text:to:qos:)`` and ``send(image:mime:to:qos:)`` send a chat (6) and return its
///   server id and time;
/// - ``next(timeout:)`` (or ``incoming``) yields what arrives: deliveries (18), presence
///   notices (34), group events (16, 47), kicks (19), errors (20);
/// - ``ack(_:)`` acknowledges QoS 1 deliveries (23), ``acknowledge(_:)`` any deliveries
///   (1:1 by id, group messages by per-group cursor);
/// - groups (MessagingConnection+Groups.swift): ``createGroup(name:members:)``,
///   ``invite(_:to:)``, ``members(of:)``, ``leave(_:)``, ``remove(_:from:)``,
///   ``send(text:toGroup:qos:)``, and ``groups``, the user's groups kept up to date;
/// - ``quit()`` ends the session (43 → 44), ``close()`` just closes.
///
/// Every delivery, including the user's own messages (1:1 QoS 1 ones once their 8 came) and the
/// unread messages of ``initialState``, is written to local history (``MessageHistory``) before
/// it is handed out.
/// Events queue up until taken, so a long-lived connection should keep reading them.
public actor MessagingConnection {
    /// The endpoint connected to.
    public nonisolated let endpoint: EndpointCandidate
    /// Endpoints tried before it that failed, in order.
    public nonisolated let skipped: [SkippedEndpoint]
    /// The endpoint's 42: the user's address, the session id, the server time, the node.
    public nonisolated let authOK: AuthOK
    /// The endpoint's 10: friends, groups and unread messages (ascending server time). The
    /// unread messages are already in history; acknowledge them like deliveries.
    public nonisolated let initialState: InitialState
    /// The saved session this connection authenticated with.
    public nonisolated let session: SavedSession
    /// Where deliveries are recorded; nil when ``MessagingOptions/recordHistory`` is off.
    public nonisolated let history: MessageHistory?
    /// The client directory the connection was opened with.
    public nonisolated let home: ClientHome
    public nonisolated let options: MessagingOptions

    let router: MessagingRouter
    private let channel: any Channel
    private let worker: Task<Void, Never>

    private init(
        endpoint: EndpointCandidate, skipped: [SkippedEndpoint], authenticated: MessagingRouter.Authenticated, session: SavedSession,
        home: ClientHome, history: MessageHistory?, options: MessagingOptions, router: MessagingRouter, channel: any Channel,
        worker: Task<Void, Never>
    ) {
        self.home = home
        self.endpoint = endpoint
        self.skipped = skipped
        self.authOK = authenticated.authOK
        self.initialState = authenticated.initial
        self.session = session
        self.history = history
        self.options = options
        self.router = router
        self.channel = channel
        self.worker = worker
    }

    // MARK: - Opening

    /// Connects and authenticates `session`'s user.
    ///
    /// - Parameters:
    ///   - session: the saved login (token, device, signed server list).
    ///   - home: the client directory (history goes to `<home>/history`).
    ///   - endpoint: `host:port` to use instead of the server list. It must be in the signed
    ///     list (its listed key is pinned) unless `pin` gives the key to expect.
    ///   - pin: the key of an `endpoint` outside the list.
    ///   - options: timeouts, history, keepalive.
    ///
    /// Without `endpoint`, the list's endpoints are tried in ascending priority; one that cannot
    /// be connected to, fails the handshake, or answers the token with 330 (no center) or 48
    /// (shutting down) is skipped (``skipped``) for the next. Other refusals (a bad token, …)
    /// are not retried elsewhere.
    ///
    /// - Throws: ``ClientError``: 322 for an expired token (checked here first); the
    ///   endpoint's code and message when it refuses the token; 203 for a key that is not the
    ///   listed one (or an unlisted endpoint without a pin); 211 when no endpoint could be
    ///   reached (the message lists each one's failure).
    public static func open(
        session: SavedSession, home: ClientHome, endpoint: String? = nil, pin: KeyFingerprint? = nil,
        options: MessagingOptions = MessagingOptions(), prefer: String? = nil, avoiding: Set<String> = []
    ) async throws(ClientError) -> MessagingConnection {
        guard !session.isExpired() else {
            throw ClientError(.tokenExpired, """
                the saved token for \(session.address) expired at \(SessionSummary.iso8601(session.expires)); \
                log in again (myim login \(session.address) --password-stdin)
                """)
        }
        var candidates = try session.endpointCandidates(explicit: endpoint, pin: pin)
        if endpoint == nil {
            // After a 48: the endpoint going away last, the one it named first.
            let kept = candidates.filter { !avoiding.contains($0.name ?? "") }
            let avoided = candidates.filter { avoiding.contains($0.name ?? "") }
            candidates = kept.filter { $0.name == prefer } + kept.filter { $0.name != prefer } + avoided
        }
        var skipped: [SkippedEndpoint] = []
        for candidate in candidates {
            let connection: SecureConnection
            do {
                // The token goes with ClientFinished: the session opens a round trip sooner.
                // No copies of the user's own 1:1 messages: this client makes them from their 8.
                let token = TokenAuth(token: session.token, device: session.device.isEmpty ? nil : session.device, senderCopies: false)
                (connection, _) = try await SecureClient.connect(
                    host: candidate.address.host, port: candidate.address.port, policy: .pinned(candidate.fingerprint),
                    earlyPackets: [token.packet], handshakeTimeout: timeAmount(options.connectTimeout))
            } catch {
                skipped.append(SkippedEndpoint(endpoint: candidate, error: connectionError(error, endpoint: candidate, domain: session.domain)))
                continue
            }
            do {
                return try await authenticate(connection, endpoint: candidate, skipped: skipped, session: session, home: home, options: options)
            } catch where error.code == .centerUnavailable && candidate != candidates.last {
                // Shutting down (48), or without its center: the next endpoint may serve.
                skipped.append(SkippedEndpoint(endpoint: candidate, error: error))
            }
        }
        if skipped.count == 1 { throw skipped[0].error }
        let code = skipped.first { $0.error.code != .notEstablished }?.error.code ?? .notEstablished
        let reasons = skipped.map { "\($0.endpoint): \($0.error.message)" }.joined(separator: "; ")
        throw ClientError(code, "no endpoint of \(session.domain) could be reached: \(reasons)")
    }

    /// Starts the channel's task and waits for 42 and 10 (41 went with the handshake).
    private static func authenticate(
        _ connection: SecureConnection, endpoint: EndpointCandidate, skipped: [SkippedEndpoint], session: SavedSession,
        home: ClientHome, options: MessagingOptions
    ) async throws(ClientError) -> MessagingConnection {
        let history = options.recordHistory ? MessageHistory(home: home, owner: session.address) : nil
        let (outgoing, continuation) = AsyncStream<Packet>.makeStream()
        let router = MessagingRouter(owner: session.address, history: history, outgoing: continuation)
        let keepalive = options.keepaliveInterval
        let worker = Task {
            await run(connection.channel, outgoing: outgoing, router: router, keepalive: keepalive)
        }
        let authenticated: MessagingRouter.Authenticated
        do {
            authenticated = try await router.authenticated(timeout: options.authTimeout)
        } catch {
            router.finishSending()
            connection.channel.channel.close(promise: nil)
            await worker.value
            throw error
        }
        return MessagingConnection(
            endpoint: endpoint, skipped: skipped, authenticated: authenticated, session: session, home: home, history: history,
            options: options,
            router: router, channel: connection.channel.channel, worker: worker)
    }

    /// Owns the channel: writes what is queued (closing the connection when the queue ends),
    /// pings every `keepalive`, and hands every packet read to `router`, until the connection
    /// ends either way.
    private static func run(
        _ channel: NIOAsyncChannel<Packet, Packet>, outgoing: AsyncStream<Packet>, router: MessagingRouter, keepalive: Duration?
    ) async {
        var failure: ClientError?
        do {
            try await channel.executeThenClose { inbound, outbound in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        defer { channel.channel.close(promise: nil) }
                        for await packet in outgoing { try await outbound.write(packet) }
                    }
                    if let keepalive {
                        group.addTask {
                            while true {
                                try await Task.sleep(for: keepalive)
                                guard router.send(Ping().packet) else { return }
                            }
                        }
                    }
                    for try await packet in inbound { router.receive(packet) }
                    group.cancelAll()
                }
            }
        } catch let error as SecureChannelError {
            failure = ClientError(error.code, "the connection to the endpoint failed: \(error.message)")
        } catch is CancellationError {
            failure = nil
        } catch {
            failure = ClientError(.notEstablished, "the connection to the endpoint failed: \(error)")
        }
        router.finish(failure)
    }

    // MARK: - Chat

    /// Sends `text` to `address` (a bare name means the user's own domain).
    ///
    /// - Returns: the server's 8 for QoS 1. QoS 0 gets no answer: server id 0 and this
    ///   machine's time of sending; a refusal comes later as ``IncomingEvent/chatRefused(clientMessageID:_:)``.
    /// - Throws: ``ClientError`` with the server's code and message (e.g. 332 unknown
    ///   recipient, 333 too large); 330 when the center stayed unreachable after one retry.
    @discardableResult
    public func send(text: String, to address: String, qos: QoS = .atLeastOnce) async throws(ClientError) -> ChatAccepted {
        try await send(.text(text), to: address, qos: qos)
    }

    /// Sends an image (at most ``MessagingOptions/maxImageBytes``, checked before sending) to
    /// `address`. See ``send(text:to:qos:)``.
    @discardableResult
    public func send(image: [UInt8], mime: String?, to address: String, qos: QoS = .atLeastOnce) async throws(ClientError) -> ChatAccepted {
        try await send(.image(bytes: image, mime: mime), to: address, qos: qos)
    }

    /// Sends `content` to `address` under `clientMessageID` (a new UUID by default).
    ///
    /// A 330 from the server (the endpoint's link to the center is down) is retried once with
    /// the same `clientMessageID` after ``MessagingOptions/centerRetryDelay``: the center drops
    /// duplicates, so the message is never delivered twice. A QoS 0 1:1 chat is not retried:
    /// its 330 comes as ``IncomingEvent/chatRefused(clientMessageID:_:)``.
    @discardableResult
    public func send(
        _ content: ChatContent, to address: String, qos: QoS = .atLeastOnce, clientMessageID: String = UUID().uuidString
    ) async throws(ClientError) -> ChatAccepted {
        try await send(content, to: .user(address), qos: qos, clientMessageID: clientMessageID)
    }

    /// Sends `content` to a user (``ChatTarget/user(_:)``, qualified with ``qualified(_:)``) or
    /// to a group (``ChatTarget/group(_:)``) under `clientMessageID` (a new UUID by default).
    ///
    /// - Returns: the server's 8 for QoS 1 (with the group's `seq` for a group). A QoS 0 group
    ///   chat: the id and time of the sender's copy (18), which every member gets. A QoS 0 1:1
    ///   chat gets no answer: server id 0 and this machine's time of sending; a refusal comes
    ///   later as ``IncomingEvent/chatRefused(clientMessageID:_:)``.
    /// - Throws: ``ClientError`` with the server's code and message (e.g. 332, 333, 335 not a
    ///   member of the group); 330 when the center stayed unreachable after one retry: a 330 is
    ///   retried once with the same `clientMessageID` after ``MessagingOptions/centerRetryDelay``,
    ///   and the center drops duplicates, so the message is never delivered twice.
    @discardableResult
    public func send(
        _ content: ChatContent, to target: ChatTarget, qos: QoS = .atLeastOnce, clientMessageID: String = UUID().uuidString
    ) async throws(ClientError) -> ChatAccepted {
        if case .image(let bytes, _) = content, bytes.count > options.maxImageBytes {
            throw ClientError(.contentTooLarge, "the image is \(bytes.count) bytes; at most \(options.maxImageBytes) can be sent")
        }
        let target: ChatTarget = switch target {
        case .user(let address): .user(qualified(address))
        case .group: target
        }
        let chat = Chat(target: target, content: content, clientMessageID: clientMessageID, qos: qos)
        switch (target, qos) {
        case (.user, .bestEffort):
            // No answer comes unless the chat is refused (a 20 naming it, queued as an event).
            guard router.send(chat.packet) else {
                throw router.closed ?? ClientError(.notEstablished, "the connection to the endpoint is closed")
            }
            return ChatAccepted(clientMessageID: clientMessageID, serverMessageID: 0, time: Self.now())
        case (.user(let address), .atLeastOnce):
            // The server sends no copy back: 8 and what was sent make the user's own 18, kept in
            // history and queued as an event as a recipient's is (a message to oneself comes as 18).
            let own = address == router.owner ? nil : ChatDelivery(
                kind: .user, time: 0, senderID: session.userID, senderName: router.owner, targetID: 0, targetName: address,
                content: content, serverMessageID: 0, clientMessageID: clientMessageID, qos: qos)
            return try ChatAccepted(answer: try await request(chat, awaiting: .accepted(clientMessageID), own: own))
        case (.group, .atLeastOnce):
            return try ChatAccepted(answer: try await request(chat, awaiting: .accepted(clientMessageID)))
        case (.group, .bestEffort):
            // Every member gets the group's 18, the sender too: its copy is the answer.
            let reply = try await request(chat, awaiting: .copy(clientMessageID))
            do {
                let copy = try ChatDelivery(packet: reply)
                return ChatAccepted(clientMessageID: clientMessageID, serverMessageID: copy.serverMessageID, time: copy.time, seq: copy.seq)
            } catch {
                throw ClientError(error.code, "the endpoint answered the chat with a malformed message \(reply.type): \(error.message)")
            }
        }
    }

    /// Sends `chat` and waits for `reply`; a 330 (the endpoint's link to the center is down) is
    /// retried once, with the same `client_msg_id`, after ``MessagingOptions/centerRetryDelay``.
    ///
    /// `own`: the user's own message, completed by its 8 (``MessagingRouter/sending(_:)``).
    private func request(_ chat: Chat, awaiting reply: AwaitedReply, own: ChatDelivery? = nil) async throws(ClientError) -> Packet {
        var attempt = 0
        while true {
            attempt += 1
            if let own { router.sending(own) }
            do {
                return try await router.request(chat.packet, awaiting: reply, timeout: options.replyTimeout)
            } catch {
                guard error.fromServer, error.error.code == .centerUnavailable, attempt == 1 else {
                    // Refused, or the connection ended: no 8 will come. Given up waiting (a
                    // timeout), it may still come, and then makes the user's message after all.
                    if own != nil, error.fromServer { router.notSent(chat.clientMessageID) }
                    throw error.error
                }
                try? await Task.sleep(for: options.centerRetryDelay)
            }
        }
    }

    /// Milliseconds since 1970, by this machine's clock.
    private static func now() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded()) }

    /// `address` trimmed and lower-cased, in the user's domain when it has no `@`: where
    /// ``send(_:to:qos:clientMessageID:)`` sends.
    public nonisolated func qualified(_ address: String) -> String {
        let address = address.trimmingWhitespace().lowercased()
        return address.contains("@") ? address : "\(address)@\(session.domain)"
    }

    /// Acknowledges the QoS 1 deliveries `ids` (23): the center then deletes them from its
    /// offline store. Acknowledge only what is safely kept (history is written before a
    /// delivery is handed out).
    public func ack(_ ids: [Int64]) throws(ClientError) {
        try ack(ids: ids, groups: [])
    }

    /// Acknowledges 1:1 deliveries by id and group deliveries by cursor (23): each
    /// ``GroupCursor`` says that every message of its group up to `seq` was received.
    public func ack(ids: [Int64] = [], groups: [GroupCursor]) throws(ClientError) {
        guard !ids.isEmpty || !groups.isEmpty else { return }
        guard router.send(DeliveryAck(ids: ids, groups: groups).packet) else {
            throw router.closed ?? ClientError(.notEstablished, "the connection to the endpoint is closed")
        }
    }

    /// Acknowledges `deliveries` (23), which must be safely kept (in history: every
    /// ``IncomingEvent/delivery(_:)`` and every unread message of ``initialState`` is).
    ///
    /// 1:1 messages of QoS 1 addressed to the user go by id (the user's own messages to others
    /// are not stored for the user). Group messages go as one cursor per group at the highest `seq`,
    /// the user's own copies included (the center keeps the sender's cursor too); since a
    /// group's messages arrive in ascending `seq`, that covers all of them. A group with a
    /// delivery that could not be written to history in this session
    /// (``IncomingEvent/historyFailed(_:_:)``) gets no cursor, so that the server delivers the
    /// lost message again at the next login.
    public func acknowledge(_ deliveries: [ChatDelivery]) throws(ClientError) {
        let acks = Self.acknowledgements(for: deliveries, owner: authOK.username, unsafeGroups: router.unsafeGroups)
        try ack(ids: acks.ids, groups: acks.groups)
    }

    /// What ``acknowledge(_:)`` sends for `deliveries` received by `owner`: ids of the QoS 1
    /// 1:1 messages addressed to `owner`, and the highest `seq` per group (in order of first appearance) except for
    /// `unsafeGroups`.
    public static func acknowledgements(
        for deliveries: [ChatDelivery], owner: String, unsafeGroups: Set<Int64> = []
    ) -> (ids: [Int64], groups: [GroupCursor]) {
        let owner = owner.lowercased()
        var ids: [Int64] = []
        var cursors: [GroupCursor] = []
        for delivery in deliveries {
            switch delivery.kind {
            case .user:
                // Those addressed to the user: a message to oneself too, not one sent to others.
                if delivery.qos == .atLeastOnce, delivery.targetName.lowercased() == owner { ids.append(delivery.serverMessageID) }
            case .group:
                guard let seq = delivery.seq, !unsafeGroups.contains(delivery.targetID) else { continue }
                if let index = cursors.firstIndex(where: { $0.groupID == delivery.targetID }) {
                    cursors[index].seq = max(cursors[index].seq, seq)
                } else {
                    cursors.append(GroupCursor(groupID: delivery.targetID, seq: seq))
                }
            }
        }
        return (ids, cursors)
    }

    /// Sends a ping (21) and waits for its pong (22), answered by the endpoint itself.
    /// Returns the round-trip time.
    public func ping() async throws(ClientError) -> Duration {
        let time = Int64(router.makeID())
        let start = ContinuousClock.now
        do {
            _ = try await router.request(Ping(time: time).packet, awaiting: .pong(time), timeout: options.replyTimeout)
        } catch {
            throw error.error
        }
        return ContinuousClock.now - start
    }

    /// A new connection for the same session after this endpoint sent 48: the endpoint it
    /// named first, then the rest of the server list by priority, this endpoint last. What
    /// this connection sent without an 8 must be sent again on the new one, with the same
    /// client message ids (the center delivers each once).
    public func reconnect(after notice: Reconnect) async throws(ClientError) -> MessagingConnection {
        await close()
        return try await Self.open(
            session: session, home: home, options: options, prefer: notice.next,
            avoiding: endpoint.name.map { [$0] } ?? [])
    }

    // MARK: - Events

    /// The next event, waiting up to `timeout` (forever when nil). Nil when nothing came in
    /// time, or when the connection has ended and every event was taken (see ``closedReason``).
    public func next(timeout: Duration? = nil) async -> IncomingEvent? {
        let router = router
        let id = router.makeID()
        let timer = timeout.map { timeout in
            Task {
                try? await Task.sleep(for: timeout)
                guard !Task.isCancelled else { return }
                router.abandon(id, ClientError(.internalError, "timeout"))
            }
        }
        defer { timer?.cancel() }
        return await withTaskCancellationHandler {
            await router.nextEvent(id: id)
        } onCancel: {
            router.abandon(id, ClientError(.internalError, "cancelled"))
        }
    }

    /// Every event, until the connection ends (or the iterating task is cancelled).
    public nonisolated var incoming: AsyncStream<IncomingEvent> {
        AsyncStream(unfolding: { await self.next() })
    }

    /// Why the connection ended (kicked, quit, closed by the endpoint, …); nil while it is open.
    public var closedReason: ClientError? { router.closed }

    // MARK: - Ending

    /// Quits (43), waits for 44 (the center records the last-seen time), then closes. What
    /// was sent before (acknowledgements included) reaches the server first.
    @discardableResult
    public func quit() async throws(ClientError) -> QuitAck {
        let reply: Packet
        do {
            reply = try await router.request(Quit().packet, awaiting: .quitAck, timeout: options.replyTimeout)
        } catch {
            await close()
            throw error.error
        }
        await close()
        do { return try QuitAck(packet: reply) } catch { throw ClientError(error.code, "the endpoint sent a malformed quit ack (44): \(error.message)") }
    }

    /// Closes the connection once what is queued is written. Events already received stay
    /// readable with ``next(timeout:)``.
    public func close() async {
        router.finishSending()
        await worker.value
    }

    deinit {
        router.finishSending()
    }

    // MARK: - Helpers

    /// A connection or handshake failure with `endpoint`, explained for a person.
    static func connectionError(_ error: any Error, endpoint: EndpointCandidate, domain: String) -> ClientError {
        if let error = error as? SecureChannelError {
            switch error.code {
            case .serverKeyMismatch:
                return ClientError(error.code, """
                    the endpoint \(endpoint) did not present the key \(endpoint.fingerprint) that the signed server list of \
                    \(domain) gives for it (\(error.message)); refusing it. Someone may be intercepting the connection, or the \
                    list is stale: log in again to refresh it
                    """)
            default:
                return ClientError(error.code, "secure channel to the endpoint \(endpoint) failed: \(error.message)")
            }
        }
        var error = error
        if let failure = error as? NIOConnectionError, let first = failure.connectionErrors.first { error = first.error }
        let reason: String
        if let io = error as? IOError {
            reason = String(cString: strerror(io.errnoCode)).lowercased()
        } else if case ChannelError.connectTimeout = error {
            reason = "timed out"
        } else {
            reason = "\(error)"
        }
        return ClientError(.notEstablished, "cannot connect to the endpoint \(endpoint): \(reason)")
    }

    private static func timeAmount(_ duration: Duration) -> TimeAmount {
        let (seconds, attoseconds) = duration.components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

extension ChatAccepted {
    /// The 8 that answers a chat; a malformed one is the endpoint's error.
    fileprivate init(answer reply: Packet) throws(ClientError) {
        do {
            try self.init(packet: reply)
        } catch {
            throw ClientError(error.code, "the endpoint answered the chat with a malformed message \(reply.type): \(error.message)")
        }
    }
}
