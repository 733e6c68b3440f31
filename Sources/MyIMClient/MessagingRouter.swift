import MyIMWire
import Synchronization

/// Something a ``MessagingConnection`` received that no request was waiting for.
public enum IncomingEvent: Sendable, Equatable {
    /// 18: a chat message for the user, or one the user sent (a 1:1 message once its 8 came;
    /// a group message as the server sends it to every member). When history is on, it is
    /// already in the history file: acknowledge it (``MessagingConnection/ack(_:)``).
    case delivery(ChatDelivery)
    /// 18 that could not be written to history: show it, but do not acknowledge it, so that
    /// the server delivers it again later.
    case historyFailed(ChatDelivery, ClientError)
    /// 34: a friend came online or went offline.
    case presence(FriendPresenceNotice)
    /// 38: something about the account needs the user's attention, such as a login from a
    /// device the account had never used.
    case securityAlert(SecurityAlert)
    /// 16: someone added the user to a group (at its creation, or by inviting them). The group
    /// is in ``MessagingConnection/groups`` from now on.
    case addedToGroup(AddedToGroup)
    /// 47 that answers no request: someone joined, left or was removed from one of the user's
    /// groups, or the user was removed (then the group leaves ``MessagingConnection/groups``).
    case groupNotice(GroupNotice)
    /// 48: the endpoint is going away and closes this connection; connect to another one
    /// (``MessagingConnection/reconnect(after:)``) and send again what was not acknowledged.
    case reconnect(Reconnect)
    /// 19: a newer login of the same user took over; the endpoint closes this connection.
    case kicked
    /// 20 refusing a chat that nobody waits for, with the chat's `client_msg_id`: a QoS 0 1:1
    /// chat (answered by nothing else), or a chat whose ``MessagingConnection/send(_:to:qos:clientMessageID:)``
    /// has given up waiting.
    case chatRefused(clientMessageID: String, ClientError)
    /// 20 that answers no pending request, or a malformed server message.
    case error(ClientError)
    /// Any other server message (e.g. 14, 17, 28, 31, 33).
    case other(Packet)
}

/// What a pending request waits for.
enum AwaitedReply: Sendable, Equatable {
    /// 8 with this `client_msg_id` (a QoS 1 chat).
    case accepted(String)
    /// The sender's copy (18) of this `client_msg_id` (a QoS 0 group chat, which gets no 8;
    /// every member gets the 18, the sender too).
    case copy(String)
    /// 44.
    case quitAck
    /// 22 echoing this `time`.
    case pong(Int64)
    /// The next packet of this type (the reply to a request such as 30 → 31 or 27 → 28).
    case message(UInt32)
    /// 14 naming this friend (lower case): the answer to 3. The friend's own 14 names the adder.
    case friendAdded(String)
    /// 17 for this group: the answer to 7, 5 (invite) and 46 (remove).
    case groupMembers(Int64)
    /// 47 `left` for this group naming the user: the answer to 45. Notices about other members,
    /// or about other groups, are events.
    case groupLeft(Int64)

    /// Whether a 20 can be the answer: chats and the center's requests may be refused.
    var takesErrors: Bool {
        switch self {
        case .accepted, .copy, .message, .friendAdded, .groupMembers, .groupLeft: true
        case .quitAck, .pong: false
        }
    }
}

/// Why a request failed, and whether the server said so (a 20) or this side decided (timeout,
/// connection closed).
struct RequestFailure: Error {
    var error: ClientError
    var fromServer: Bool
}

/// The state shared by a ``MessagingConnection`` and the task that owns its channel: the
/// authentication step, requests waiting for their reply, and the queue of incoming events.
///
/// Replies are matched by content (8 by `client_msg_id`, 22 by `time`, 14 by the friend's
/// name, 17 by the group id, 47 `left` by the group id and the user's own address, 44 and the
/// other replies by type); a 20 naming a chat (`client_msg_id`) goes to that chat's request,
/// and any other 20 to the oldest waiting request that the center may refuse (a chat, or a
/// friend, profile or group request), since the center handles a session's requests in order.
///
/// It also keeps the user's groups: those of 10, plus the ones created (15) or joined (16),
/// minus the ones left or removed from (47 about the user).
final class MessagingRouter: Sendable {
    /// The user's address, lower case.
    let owner: String
    let history: MessageHistory?

    private struct Waiting {
        var id: UInt64
        var reply: AwaitedReply
        var continuation: CheckedContinuation<Packet, any Error>
    }

    private struct State {
        var nextID: UInt64 = 1
        var outgoing: AsyncStream<Packet>.Continuation?
        var authOK: AuthOK?
        var authResult: Result<Authenticated, ClientError>?
        var authWaiter: CheckedContinuation<Authenticated, any Error>?
        var requests: [Waiting] = []
        var events: [IncomingEvent] = []
        var eventHead = 0
        var eventWaiters: [(id: UInt64, continuation: CheckedContinuation<IncomingEvent?, Never>)] = []
        /// Waits given up (timeout, cancellation) before they were registered.
        var abandoned: [UInt64: ClientError] = [:]
        var closed: ClientError?
        var kicked = false
        var quitAcknowledged = false
        var closingLocally = false
        /// The user's groups, as far as this session knows.
        var groups: [GroupEntry] = []
        /// Groups with a delivery that could not be written to history in this session: no
        /// cursor may be acknowledged for them, or the server would forget the lost message.
        var unsafeGroups: Set<Int64> = []
        /// The user's QoS 1 1:1 chats to others, by `client_msg_id`, until their 8 (or a 20
        /// naming them) comes: the server sends no copy back, and 8 completes this one.
        var ownChats: [String: ChatDelivery] = [:]
    }

    struct Authenticated: Sendable {
        var authOK: AuthOK
        var initial: InitialState
    }

    /// A continuation to resume once the lock is released.
    private enum Resumption: Sendable {
        case request(CheckedContinuation<Packet, any Error>, Result<Packet, RequestFailure>)
        case event(CheckedContinuation<IncomingEvent?, Never>, IncomingEvent?)
        case auth(CheckedContinuation<Authenticated, any Error>, Result<Authenticated, ClientError>)

        func run() {
            switch self {
            case .request(let continuation, let result): continuation.resume(with: result.mapError { $0 as any Error })
            case .event(let continuation, let event): continuation.resume(returning: event)
            case .auth(let continuation, let result): continuation.resume(with: result.mapError { $0 as any Error })
            }
        }
    }

    private let state = Mutex(State())

    init(owner: String, history: MessageHistory?, outgoing: AsyncStream<Packet>.Continuation) {
        self.owner = owner.lowercased()
        self.history = history
        state.withLock { $0.outgoing = outgoing }
    }

    /// Why the connection ended; nil while it is open.
    var closed: ClientError? { state.withLock { $0.closed } }

    /// The user's groups: 10's, updated by 15, 16 and 47.
    var groups: [GroupEntry] { state.withLock { $0.groups } }

    /// Groups whose deliveries must not be acknowledged with a cursor (a history write failed).
    var unsafeGroups: Set<Int64> { state.withLock { $0.unsafeGroups } }

    func makeID() -> UInt64 {
        state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
    }

    /// Queues `packet` for the channel; false when the connection has ended.
    @discardableResult
    func send(_ packet: Packet) -> Bool {
        guard let outgoing = state.withLock({ $0.closed == nil ? $0.outgoing : nil }) else { return false }
        if case .terminated = outgoing.yield(packet) { return false }
        return true
    }

    /// Stops sending: the channel's writer closes the connection once the queue is written.
    func finishSending() {
        state.withLock { state in
            state.closingLocally = true
            return state.outgoing
        }?.finish()
    }

    // MARK: - Waiting

    /// Waits for 42 then 10, for up to `timeout`.
    func authenticated(timeout: Duration) async throws(ClientError) -> Authenticated {
        let timer = Task {
            try? await Task.sleep(for: timeout)
            guard !Task.isCancelled else { return }
            self.resolveAuthentication(.failure(ClientError(
                .centerUnavailable, "the endpoint did not answer the token within \(timeout.components.seconds) s; try again")))
        }
        defer { timer.cancel() }
        do {
            return try await withCheckedThrowingContinuation { continuation in
                let ready: Result<Authenticated, ClientError>? = state.withLock { state in
                    if let result = state.authResult { return result }
                    state.authWaiter = continuation
                    return nil
                }
                if let ready { Resumption.auth(continuation, ready).run() }
            }
        } catch let error as ClientError {
            throw error
        } catch {
            throw ClientError(.internalError, "\(error)")
        }
    }

    /// Sends `packet` and waits for `reply`, for up to `timeout`.
    func request(_ packet: Packet, awaiting reply: AwaitedReply, timeout: Duration) async throws(RequestFailure) -> Packet {
        let id = makeID()
        let timer = Task {
            try? await Task.sleep(for: timeout)
            guard !Task.isCancelled else { return }
            self.abandon(id, ClientError(.centerUnavailable, "no answer from the endpoint within \(timeout.components.seconds) s"))
        }
        defer { timer.cancel() }
        do {
            return try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Packet, any Error>) in
                    let early: Resumption? = state.withLock { state in
                        if let closed = state.closed {
                            return .request(continuation, .failure(RequestFailure(error: closed, fromServer: false)))
                        }
                        if let error = state.abandoned.removeValue(forKey: id) {
                            return .request(continuation, .failure(RequestFailure(error: error, fromServer: false)))
                        }
                        state.requests.append(Waiting(id: id, reply: reply, continuation: continuation))
                        return nil
                    }
                    if let early {
                        early.run()
                    } else if !send(packet) {
                        abandon(id, closed ?? ClientError(.notEstablished, "the connection to the endpoint is closed"))
                    }
                }
            } onCancel: {
                self.abandon(id, ClientError(.internalError, "the request was cancelled"))
            }
        } catch let failure as RequestFailure {
            throw failure
        } catch {
            throw RequestFailure(error: ClientError(.internalError, "\(error)"), fromServer: false)
        }
    }

    /// The next event; nil when the connection has ended and every event was taken, or when
    /// the wait `id` is abandoned (timeout, cancellation).
    func nextEvent(id: UInt64) async -> IncomingEvent? {
        await withCheckedContinuation { continuation in
            let ready: Resumption? = state.withLock { state in
                if state.eventHead < state.events.count {
                    let event = state.events[state.eventHead]
                    Self.advance(&state)
                    return .event(continuation, event)
                }
                if state.closed != nil || state.abandoned.removeValue(forKey: id) != nil { return .event(continuation, nil) }
                state.eventWaiters.append((id, continuation))
                return nil
            }
            ready?.run()
        }
    }

    /// Gives up the wait `id` with `error` (a request fails with it, an event wait ends with nil).
    func abandon(_ id: UInt64, _ error: ClientError) {
        let resumption: Resumption? = state.withLock { state in
            if let index = state.requests.firstIndex(where: { $0.id == id }) {
                let waiting = state.requests.remove(at: index)
                return .request(waiting.continuation, .failure(RequestFailure(error: error, fromServer: false)))
            }
            if let index = state.eventWaiters.firstIndex(where: { $0.id == id }) {
                return .event(state.eventWaiters.remove(at: index).continuation, nil)
            }
            state.abandoned[id] = error
            return nil
        }
        resumption?.run()
    }

    private static func advance(_ state: inout State) {
        state.eventHead += 1
        if state.eventHead == state.events.count {
            state.events.removeAll(keepingCapacity: true)
            state.eventHead = 0
        } else if state.eventHead >= 1024 {
            state.events.removeFirst(state.eventHead)
            state.eventHead = 0
        }
    }

    // MARK: - Receiving

    /// Handles one packet from the endpoint, in arrival order. Deliveries (18, and the unread
    /// messages of 10) are written to history before anyone sees them.
    func receive(_ packet: Packet) {
        let authenticating = state.withLock { $0.authResult == nil }
        if authenticating {
            receiveDuringAuthentication(packet)
            return
        }
        switch MessageType(rawValue: packet.type) {
        case .chatDelivery:
            do {
                let delivery = try ChatDelivery(packet: packet)
                // A copy of the user's own 1:1 message to someone else: this client asked for
                // none (41) and made it from the 8; a server that sends one anyway is ignored.
                if delivery.kind == .user, delivery.senderName.lowercased() == owner, delivery.targetName.lowercased() != owner { return }
                let failure = record(delivery)
                route(delivery, historyFailure: failure)
            } catch {
                enqueue(.error(ClientError(error.code, "the endpoint sent a malformed chat delivery (18): \(error.message)")))
            }
        case .chatAccepted:
            guard let accepted = try? ChatAccepted(packet: packet) else {
                enqueue(.error(ClientError(.invalidField, "the endpoint sent a malformed chat accepted (8)")))
                return
            }
            // The user's own message first (history, events), whether or not `send` still waits;
            // an 8 that made it is no event of its own.
            if var own = state.withLock({ $0.ownChats.removeValue(forKey: accepted.clientMessageID) }) {
                own.time = accepted.time
                own.serverMessageID = accepted.serverMessageID
                own.targetID = accepted.targetID ?? 0
                route(own, historyFailure: record(own))
                answer(packet, matching: .accepted(accepted.clientMessageID), orEnqueue: false)
            } else {
                answer(packet, matching: .accepted(accepted.clientMessageID))
            }
        case .pong:
            if let time = try? Pong(packet: packet).time { answer(packet, matching: .pong(time), orEnqueue: false) }
        case .quitAck:
            state.withLock { $0.quitAcknowledged = true }
            answer(packet, matching: .quitAck, orEnqueue: false)
        case .error:
            let message: ErrorMessage
            do {
                message = try ErrorMessage(packet: packet)
            } catch {
                enqueue(.error(ClientError(error.code, "the endpoint sent a malformed error (20): \(error.message)")))
                return
            }
            let error = ClientError(message.code, message.data)
            let resumption: Resumption? = state.withLock { state in
                if let chat = message.clientMessageID { state.ownChats[chat] = nil }
                // A 20 naming a chat answers that chat (or, for a QoS 0 one, which nobody waits
                // for, nothing); any other answers the oldest request that may be refused.
                let index = if let chat = message.clientMessageID {
                    state.requests.firstIndex { $0.reply == .accepted(chat) || $0.reply == .copy(chat) }
                } else {
                    state.requests.firstIndex { $0.reply.takesErrors }
                }
                guard let index else { return nil }
                let waiting = state.requests.remove(at: index)
                return .request(waiting.continuation, .failure(RequestFailure(error: error, fromServer: true)))
            }
            if let resumption {
                resumption.run()
            } else {
                enqueue(message.clientMessageID.map { .chatRefused(clientMessageID: $0, error) } ?? .error(error))
            }
        case .kicked:
            state.withLock { $0.kicked = true }
            enqueue(.kicked)
        case .friendPresenceNotice:
            do {
                enqueue(.presence(try FriendPresenceNotice(packet: packet)))
            } catch {
                enqueue(.error(ClientError(error.code, "the endpoint sent a malformed presence notice (34): \(error.message)")))
            }
        case .reconnect:
            do {
                enqueue(.reconnect(try Reconnect(packet: packet)))
            } catch {
                enqueue(.error(ClientError(error.code, "the endpoint sent a malformed reconnect (48): \(error.message)")))
            }
        case .securityAlert:
            do {
                enqueue(.securityAlert(try SecurityAlert(packet: packet)))
            } catch {
                enqueue(.error(ClientError(error.code, "the endpoint sent a malformed security alert (38): \(error.message)")))
            }
        case .groupCreated:
            if let created = try? GroupCreated(packet: packet) {
                remember(GroupEntry(groupName: created.groupName, groupID: created.groupID))
            }
            answer(packet, matching: .message(packet.type))
        case .addedToGroup:
            do {
                let added = try AddedToGroup(packet: packet)
                remember(GroupEntry(groupName: added.groupName, groupID: added.groupID))
                enqueue(.addedToGroup(added))
            } catch {
                enqueue(.error(ClientError(error.code, "the endpoint sent a malformed added to group (16): \(error.message)")))
            }
        case .groupMembers:
            do {
                let members = try GroupMembers(packet: packet)
                answer(packet, matching: .groupMembers(members.groupID))
            } catch {
                enqueue(.error(ClientError(error.code, "the endpoint sent a malformed group members (17): \(error.message)")))
            }
        case .groupNotice:
            let notice: GroupNotice
            do {
                notice = try GroupNotice(packet: packet)
            } catch {
                enqueue(.error(ClientError(error.code, "the endpoint sent a malformed group notice (47): \(error.message)")))
                return
            }
            let aboutMe = notice.username.lowercased() == owner
            if aboutMe, notice.kind != .joined {
                state.withLock { $0.groups.removeAll { $0.groupID == notice.groupID } }
            }
            if aboutMe, notice.kind == .left, answer(packet, matching: .groupLeft(notice.groupID), orEnqueue: false) { return }
            enqueue(.groupNotice(notice))
        default:
            if packet.type == MessageType.addFriendResult.rawValue, let friend = try? AddFriendResult(packet: packet).username,
                answer(packet, matching: .friendAdded(friend.lowercased()), orEnqueue: false) {
                return
            }
            answer(packet, matching: .message(packet.type))
        }
    }

    private func receiveDuringAuthentication(_ packet: Packet) {
        switch MessageType(rawValue: packet.type) {
        case .authOK:
            do {
                let authOK = try AuthOK(packet: packet)
                state.withLock { $0.authOK = authOK }
            } catch {
                resolveAuthentication(.failure(ClientError(error.code, "the endpoint sent a malformed auth ok (42): \(error.message)")))
            }
        case .initialState:
            guard let authOK = state.withLock({ $0.authOK }) else {
                resolveAuthentication(.failure(ClientError(.unexpectedMessage, "the endpoint sent the initial state (10) before auth ok (42)")))
                return
            }
            do {
                let initial = try InitialState(packet: packet)
                state.withLock { $0.groups = initial.groups }
                // Unread messages go to history first, in their order, before anything that follows.
                for delivery in initial.messages {
                    let failure = record(delivery)
                    if failure != nil, delivery.kind == .group { state.withLock { _ = $0.unsafeGroups.insert(delivery.targetID) } }
                }
                resolveAuthentication(.success(Authenticated(authOK: authOK, initial: initial)))
            } catch {
                resolveAuthentication(.failure(ClientError(error.code, "the endpoint sent a malformed initial state (10): \(error.message)")))
            }
        case .error:
            if let message = try? ErrorMessage(packet: packet) {
                var text = message.data
                if (320...325).contains(message.code.rawValue) {
                    text += "; log in again (myim login \(owner) --password-stdin)"
                }
                resolveAuthentication(.failure(ClientError(message.code, text)))
            } else {
                resolveAuthentication(.failure(ClientError(.invalidField, "the endpoint refused the token with a malformed error (20)")))
            }
        case .reconnect:
            // The endpoint is shutting down: as unavailable as one without its center.
            let reason = (try? Reconnect(packet: packet).reason) ?? "the endpoint is shutting down"
            resolveAuthentication(.failure(ClientError(.centerUnavailable, "\(reason) (48); try another endpoint")))
        default:
            resolveAuthentication(.failure(ClientError(
                .unexpectedMessage, "the endpoint answered the token with message \(packet.type) instead of auth ok (42)")))
        }
    }

    private func resolveAuthentication(_ result: Result<Authenticated, ClientError>) {
        let resumption: Resumption? = state.withLock { state in
            guard state.authResult == nil else { return nil }
            state.authResult = result
            guard let waiter = state.authWaiter else { return nil }
            state.authWaiter = nil
            return .auth(waiter, result)
        }
        resumption?.run()
    }

    /// Writes `delivery` to history; the failure, if any.
    private func record(_ delivery: ChatDelivery) -> ClientError? {
        guard let history else { return nil }
        do {
            try history.append(delivery)
            return nil
        } catch {
            return error
        }
    }

    /// Registers the user's own QoS 1 1:1 chat to another user, as the 18 its recipient will
    /// get but for the server's id, time and the recipient's id: when its 8 comes, with these,
    /// it is written to history and queued as a delivery (the server sends the sender no copy).
    func sending(_ own: ChatDelivery) {
        state.withLock { $0.ownChats[own.clientMessageID] = own }
    }

    /// Forgets the user's own chat `clientMessageID`: its send failed for good.
    func notSent(_ clientMessageID: String) {
        state.withLock { _ = $0.ownChats.removeValue(forKey: clientMessageID) }
    }

    /// A delivery answers a QoS 0 group send (the sender's copy), and is an event either way.
    private func route(_ delivery: ChatDelivery, historyFailure: ClientError?) {
        if historyFailure != nil, delivery.kind == .group {
            state.withLock { _ = $0.unsafeGroups.insert(delivery.targetID) }
        }
        if delivery.senderName.lowercased() == owner {
            answer(delivery.packet, matching: .copy(delivery.clientMessageID), orEnqueue: false)
        }
        enqueue(historyFailure.map { .historyFailed(delivery, $0) } ?? .delivery(delivery))
    }

    /// Adds `group` to the user's groups, or renames the entry with its id.
    private func remember(_ group: GroupEntry) {
        state.withLock { state in
            if let index = state.groups.firstIndex(where: { $0.groupID == group.groupID }) {
                state.groups[index] = group
            } else {
                state.groups.append(group)
            }
        }
    }

    /// Resumes the first request waiting for `reply` with `packet`; with none, queues the
    /// packet as an event when `orEnqueue`. Whether a request took it.
    @discardableResult
    private func answer(_ packet: Packet, matching reply: AwaitedReply, orEnqueue: Bool = true) -> Bool {
        let resumption: Resumption? = state.withLock { state in
            guard let index = state.requests.firstIndex(where: { $0.reply == reply }) else { return nil }
            return .request(state.requests.remove(at: index).continuation, .success(packet))
        }
        if let resumption {
            resumption.run()
            return true
        }
        if orEnqueue { enqueue(.other(packet)) }
        return false
    }

    private func enqueue(_ event: IncomingEvent) {
        let resumption: Resumption? = state.withLock { state in
            if !state.eventWaiters.isEmpty {
                return .event(state.eventWaiters.removeFirst().continuation, event)
            }
            state.events.append(event)
            return nil
        }
        resumption?.run()
    }

    // MARK: - Ending

    /// The connection ended (with `error`, or closed by either side): everything still
    /// waiting fails, and event waits end once the queue is empty.
    func finish(_ error: ClientError?) {
        let (resumptions, outgoing): ([Resumption], AsyncStream<Packet>.Continuation?) = state.withLock { state in
            let reason: ClientError
            if state.kicked {
                reason = ClientError(.notLoggedIn, "a newer login of \(owner) took over this session (19); this connection was closed")
            } else if state.quitAcknowledged {
                reason = ClientError(.notEstablished, "the session ended (quit)")
            } else if state.closingLocally {
                reason = ClientError(.notEstablished, "the connection was closed by this client")
            } else {
                reason = error ?? ClientError(.notEstablished, "the endpoint closed the connection")
            }
            state.closed = state.closed ?? reason
            var resumptions = state.requests.map {
                Resumption.request($0.continuation, .failure(RequestFailure(error: reason, fromServer: false)))
            }
            state.requests = []
            state.ownChats = [:]
            resumptions += state.eventWaiters.map { Resumption.event($0.continuation, nil) }
            state.eventWaiters = []
            if state.authResult == nil {
                let failure = ClientError(reason.code, "the endpoint closed the connection before accepting the token: \(reason.message)")
                state.authResult = .failure(failure)
                if let waiter = state.authWaiter { resumptions.append(.auth(waiter, .failure(failure))) }
                state.authWaiter = nil
            }
            return (resumptions, state.outgoing)
        }
        outgoing?.finish()
        resumptions.forEach { $0.run() }
    }
}
