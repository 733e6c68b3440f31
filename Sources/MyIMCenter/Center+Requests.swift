import Metrics
import MyIMLink
import MyIMWire

/// The client requests an endpoint relays (``FromClient``). The sender of everything is the
/// session's user, as the endpoint verified it from the token: no body field can change it.
extension Center {
    func request(_ request: FromClient, from endpoint: String) async {
        guard let session = sessions[request.session], session.endpoint == endpoint else {
            logger.notice("request for a session this endpoint does not hold", metadata: ["endpoint": "\(endpoint)", "session": "\(request.session)"])
            return
        }
        let user = session.info.user
        let packet = request.payload
        // Acknowledgements, presence and quit are cheap and answer nothing: still taken.
        let answersNothing = switch MessageType(rawValue: packet.type) {
        case .deliveryAck, .presenceSet, .quit: true
        default: false
        }
        guard !draining || answersNothing else {
            await reply(
                ErrorMessage(code: .centerUnavailable, data: "the center is shutting down; retry shortly with the same ids").answering(packet),
                to: request.session)
            return
        }
        messagesIn.increment(packet.type)
        do {
            switch MessageType(rawValue: packet.type) {
            case .chat: try await chat(Chat(packet: packet), session: request.session, user: user)
            case .deliveryAck:
                let ack = try DeliveryAck(packet: packet)
                try await store.acknowledge(ack.ids, by: user)
                try await store.advanceCursors(ack.groups, of: user)
            case .createGroup: try await createGroup(CreateGroup(packet: packet), session: request.session, user: user)
            case .inviteToGroup: try await invite(InviteToGroup(packet: packet), session: request.session, user: user)
            case .groupMembersQuery: try await groupMembers(GroupMembersQuery(packet: packet), session: request.session, user: user)
            case .leaveGroup: try await leaveGroup(LeaveGroup(packet: packet), session: request.session, user: user)
            case .removeFromGroup: try await removeFromGroup(RemoveFromGroup(packet: packet), session: request.session, user: user)
            case .addFriend: try await addFriend(AddFriend(packet: packet), session: request.session, user: user)
            case .friendListQuery:
                await reply(FriendList(friends: try store.friends(of: user)), to: request.session)
            case .friendPresenceQuery:
                let friends = try store.friends(of: user)
                await reply(FriendPresenceList(friends: friends.map { presence(of: $0.username) }), to: request.session)
            case .profileQuery:
                let query = try ProfileQuery(packet: packet)
                await reply(try await profile(of: query.username.lowercased()), to: request.session)
            case .profileSet:
                let update = try ProfileSet(packet: packet)
                guard update.signature.utf8.count <= 1024 else {
                    throw WireError.invalidField("signature", "at most 1,024 bytes")
                }
                try await store.setSignature(update.signature, of: user)
                await reply(try await profile(of: user), to: request.session)
            case .presenceSet:
                let update = try PresenceSet(packet: packet)
                sessions[request.session]?.status = update.status
                await notifyFriendsOfStatus(user: user, status: update.status)
            case .fetchOffline:
                let limit = max(1, min(Int(clamping: try FetchOffline(packet: packet).limit ?? 500), 5000))
                let pending = try await store.pending(for: user, limit: limit)
                for delivery in pending { await reply(delivery, to: request.session) }
                await reply(OfflineDone(count: Int64(pending.count), more: pending.count == limit), to: request.session)
            case .quit:
                await reply(QuitAck(lastSeen: configuration.clock()), to: request.session)
                await close(request.session, reason: "quit")
            default:
                await reply(
                    ErrorMessage(code: .notSupportedHere, data: "message \(packet.type) is not served by the center"), to: request.session)
            }
        } catch let error as WireError {
            await reply(ErrorMessage(code: error.code, data: error.message).answering(packet), to: request.session)
        } catch let error as CenterRefusal {
            await reply(ErrorMessage(code: error.code, data: error.message).answering(packet), to: request.session)
        } catch {
            logger.error("request failed", metadata: ["user": "\(user)", "type": "\(packet.type)", "error": "\(error)"])
            await reply(
                ErrorMessage(code: .internalError, data: "the center failed to handle message \(packet.type); retry").answering(packet),
                to: request.session)
        }
    }

    // MARK: - 1:1 chat (6 → 8, 18)

    private func chat(_ chat: Chat, session: String, user: String) async throws {
        let rawTarget: String
        switch chat.target {
        case .user(let address): rawTarget = address
        case .group(let groupID):
            try check(chat.content)
            try await groupChat(chat, groupID: groupID, session: session, user: user)
            return
        }
        let target = try address(rawTarget)
        try check(chat.content)
        let now = configuration.clock()
        let senderID = userIDs[user] ?? 0
        let targetID = try await existingUser(target)
        let delivery = { @Sendable (id: Int64, time: Int64) in
            self.delivery(of: chat, from: user, senderID: senderID, to: target, targetID: targetID, serverMessageID: id, time: time)
        }
        switch chat.qos {
        case .atLeastOnce:
            switch try await store.accept(sender: user, clientMessageID: chat.clientMessageID, recipient: target, now: now, makeDelivery: delivery) {
            case .duplicate(let id, let time):
                // A retry: acknowledge again, deliver nothing twice.
                await reply(ChatAccepted(clientMessageID: chat.clientMessageID, serverMessageID: id, time: time, targetID: targetID), to: session)
            case .stored(let id, let time):
                await reply(ChatAccepted(clientMessageID: chat.clientMessageID, serverMessageID: id, time: time, targetID: targetID), to: session)
                await deliver(delivery(id, time).packet, to: target, from: session, of: user)
            }
        case .bestEffort:
            let id = try await store.allocateMessageID()
            await deliver(delivery(id, now).packet, to: target, from: session, of: user)
        }
    }

    /// The 18 of a 1:1 chat.
    private nonisolated func delivery(
        of chat: Chat, from user: String, senderID: Int64, to target: String, targetID: Int64, serverMessageID: Int64, time: Int64
    ) -> ChatDelivery {
        ChatDelivery(
            kind: .user, time: time, senderID: senderID, senderName: user, targetID: targetID, targetName: target,
            content: chat.content, serverMessageID: serverMessageID, clientMessageID: chat.clientMessageID, qos: chat.qos,
            serverID: configuration.node)
    }

    /// Delivers a best-effort 1:1 chat (a ``FromClient`` link packet) on the link's event loop,
    /// without the actor, when ``LiveRoutes`` has everything it needs: what ``chat(_:session:user:)``
    /// would do, for the common case. Returns false, having done nothing, when the actor must
    /// handle it (anything else, a chat it refuses, a recipient not live, a link pushing back).
    nonisolated func routeOnLoop(_ request: FromClient, endpoint: String) -> Bool {
        let packet = request.payload
        guard packet.type == MessageType.chat.rawValue, let chat = Self.chat(in: packet), chat.qos == .bestEffort,
              case .user(let rawTarget) = chat.target,
              let target = try? address(rawTarget), (try? check(chat.content)) != nil,
              let route = routes.route(from: request.session, on: endpoint, to: target),
              let id = store.reservedMessageID()
        else { return false }
        messagesIn.increment(MessageType.chat.rawValue)
        // Encoded once, straight from its fields, for one link or two.
        let delivery = delivery(
            of: chat, from: route.sender.user, senderID: route.sender.userID, to: target, targetID: route.recipient.userID,
            serverMessageID: id, time: configuration.clock()
        ).encodedPacket
        // Queued on the links' loops, behind what the actor has queued there: a session's
        // earlier answers and deliveries (its requests were handled before this one was let
        // through), and a recipient's 42 and backlog (queued before it became live).
        messagesOut.increment(delivery.type)
        route.recipientLink.enqueue(ToClient(sessions: [route.recipient.session], payload: delivery).packet)
        if let senderLink = route.senderLink {
            messagesOut.increment(delivery.type)
            senderLink.enqueue(ToClient(sessions: [request.session], payload: delivery).packet)
        }
        routedOnLoop.add(1, ordering: .relaxed)
        return true
    }

    /// The chat a ``FromClient`` carries: one of the usual shape read from its bytes as the
    /// endpoint passed them on, anything else parsed; nil when it is not a valid chat.
    private nonisolated static func chat(in packet: Packet) -> Chat? {
        if let encoded = packet.encodedBody, let chat = Chat(canonical: encoded) { return chat }
        return try? Chat(packet: packet)
    }

    /// A 1:1 delivery goes to the recipient's live session and, as seed 000 has it, a copy to
    /// the session that sent it, unless that session said in 41 that it records its own
    /// messages from 8 (`sender_copies` false; for QoS 0 it then gets no answer at all). When
    /// it goes to both, its body is encoded once.
    private func deliver(_ packet: Packet, to target: String, from session: String, of user: String) async {
        guard target != user, let sender = sessions[session], sender.info.senderCopies else {
            await deliverLive(packet, to: target)
            return
        }
        let packet = packet.encodingBody()
        await deliverLive(packet, to: target)
        await send(packet, toSessions: [session], on: sender.endpoint)
    }

    private nonisolated func check(_ content: ChatContent) throws(CenterRefusal) {
        switch content {
        case .text(let text):
            guard text.utf8.count <= configuration.maxTextBytes else {
                throw CenterRefusal(.contentTooLarge, "a text is at most \(configuration.maxTextBytes) bytes, this one is \(text.utf8.count)")
            }
        case .image(let bytes, _):
            guard bytes.count <= configuration.maxImageBytes else {
                throw CenterRefusal(.contentTooLarge, "an image is at most \(configuration.maxImageBytes) bytes, this one is \(bytes.count)")
            }
        }
    }

    // MARK: - Friends, profiles, presence

    private func addFriend(_ request: AddFriend, session: String, user: String) async throws {
        let friend = try address(request.to)
        guard friend != user else { throw CenterRefusal(.invalidField, "one cannot befriend oneself") }
        _ = try await existingUser(friend)
        let added = try await store.addFriendship(user, friend, now: configuration.clock())
        await reply(AddFriendResult(status: added ? .added : .alreadyFriends, username: friend), to: session)
        if added, let friendSession = sessionByUser[friend] {
            await reply(AddFriendResult(status: .added, username: user), to: friendSession)
        }
    }

    private func profile(of user: String) async throws -> Profile {
        guard let profile = try await store.profile(of: user) else {
            // Registered but never signed in here: the directory knows the account.
            let userID = try await existingUser(user)
            return Profile(username: user, userID: userID, signature: "", online: false)
        }
        return Profile(username: user, userID: profile.userID, signature: profile.signature, online: sessionByUser[user] != nil)
    }

    func presence(of user: String) -> MyIMWire.PresenceEntry {
        guard let sessionID = sessionByUser[user], let session = sessions[sessionID] else {
            return MyIMWire.PresenceEntry(username: user, online: false)
        }
        return MyIMWire.PresenceEntry(username: user, online: true, status: session.status, since: session.info.since)
    }

    private func notifyFriendsOfStatus(user: String, status: PresenceStatus) async {
        guard let friends = try? store.friends(of: user) else { return }
        let notice = FriendPresenceNotice(username: user, online: true, status: status, time: configuration.clock())
        for friend in friends {
            if let friendSession = sessionByUser[friend.username] { await reply(notice, to: friendSession) }
        }
    }

    // MARK: - Helpers

    /// A lower-cased `name@domain` of this center's domain.
    nonisolated func address(_ raw: String) throws(CenterRefusal) -> String {
        let address = Self.lowercased(raw)
        let utf8 = address.utf8
        let at = utf8.firstIndex(of: UInt8(ascii: "@"))
        guard let at, at != utf8.startIndex, utf8.distance(from: utf8.startIndex, to: at) <= 32,
              !utf8[utf8.index(after: at)...].contains(UInt8(ascii: "@"))
        else {
            throw CenterRefusal(.unknownRecipient, "'\(raw.prefix(80))' is not an address name@domain")
        }
        guard utf8[utf8.index(after: at)...].elementsEqual(configuration.domain.utf8) else {
            throw CenterRefusal(.unknownRecipient, "\(address) is in another domain; this center serves \(configuration.domain) only")
        }
        return address
    }

    /// `raw` in lower case; an address already so (the usual case) is returned as it is, without
    /// the Unicode case mapping's cost.
    static func lowercased(_ raw: String) -> String {
        for byte in raw.utf8 where byte >= 0x80 || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z")) {
            return raw.lowercased()
        }
        return raw
    }

    /// The user id of `user`, who must have an account: known from a sign-in or an earlier
    /// lookup (no round trip), else asked of the login center's directory and remembered.
    func existingUser(_ user: String) async throws -> Int64 {
        if let cached = userIDs[user] { return cached }
        if let stored = try await store.userID(of: user), stored != 0 {
            learned(stored, of: user)
            return stored
        }
        let found: [String: Int64]
        do {
            found = try await configuration.directory.lookup([user])
        } catch {
            throw CenterRefusal(.directoryUnavailable, "cannot check that \(user) exists: \(error.message); try again shortly")
        }
        guard let id = found[user] else {
            throw CenterRefusal(.unknownRecipient, "there is no user \(user)")
        }
        try await store.remember(user: user, userID: id)
        learned(id, of: user)
        return id
    }

    /// Remembers `user`'s id, and gives it to the routes of a session bound without it.
    private func learned(_ id: Int64, of user: String) {
        userIDs[user] = id
        if let session = sessionByUser[user] { routes.learned(id, user: user, session: session) }
    }
}

/// A request the center refuses, with the code and message sent back in 20.
struct CenterRefusal: Error {
    var code: ErrorCode
    var message: String

    init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }
}
