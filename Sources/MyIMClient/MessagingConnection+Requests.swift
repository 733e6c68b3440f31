import MyIMWire

// Friends and profiles (3 → 14, 30 → 31, 32 → 33, 27 → 28, 29 → 28), as docs/PROTOCOL.md (section 7.1)
// describes.
extension MessagingConnection {
    /// Sends `message` and returns the next packet of type `expecting`, waiting up to `timeout`
    /// (``MessagingOptions/replyTimeout`` when nil).
    ///
    /// Replies are matched by type only, so use this for requests whose reply the server does
    /// not also send unprompted (a 14 also reaches the friend: see ``addFriend(_:)``).
    ///
    /// - Throws: ``ClientError`` with the server's code and message when a 20 comes first (the
    ///   oldest waiting request gets it); 330 when no answer came in time; the reason the
    ///   connection ended, when it did.
    public func request(_ message: some WireMessage, expecting: MessageType, timeout: Duration? = nil) async throws(ClientError) -> Packet {
        try await request(message.packet, awaiting: .message(expecting.rawValue), timeout: timeout)
    }

    /// Befriends `address` (3; a bare name means the user's own domain).
    ///
    /// - Returns: the center's 14: ``AddFriendResult/Status/added`` for a new friend,
    ///   ``AddFriendResult/Status/alreadyFriends`` when the two were friends already.
    /// - Throws: ``ClientError`` with the server's code and message, e.g. 332 for a user who
    ///   never signed in, 118 for oneself.
    public func addFriend(_ address: String) async throws(ClientError) -> AddFriendResult {
        let friend = qualified(address)
        let reply = try await request(AddFriend(to: friend).packet, awaiting: .friendAdded(friend), timeout: nil)
        return try decode(AddFriendResult.self, from: reply)
    }

    /// The user's friends, with their signatures (30 → 31).
    public func friends() async throws(ClientError) -> [FriendEntry] {
        let reply = try await request(FriendListQuery(), expecting: .friendList)
        return try decode(FriendList.self, from: reply).friends
    }

    /// Which friends are online, with their status (32 → 33).
    public func friendsPresence() async throws(ClientError) -> [PresenceEntry] {
        let reply = try await request(FriendPresenceQuery(), expecting: .friendPresenceList)
        return try decode(FriendPresenceList.self, from: reply).friends
    }

    /// The profile of `address` (27 → 28; a bare name means the user's own domain).
    public func profile(of address: String) async throws(ClientError) -> Profile {
        let reply = try await request(ProfileQuery(username: qualified(address)), expecting: .profile)
        return try decode(Profile.self, from: reply)
    }

    /// Sets the user's signature (29); returns the new profile (28).
    @discardableResult
    public func setSignature(_ signature: String) async throws(ClientError) -> Profile {
        let reply = try await request(ProfileSet(signature: signature), expecting: .profile)
        return try decode(Profile.self, from: reply)
    }

    // MARK: - Helpers

    func request(_ packet: Packet, awaiting reply: AwaitedReply, timeout: Duration?) async throws(ClientError) -> Packet {
        do {
            return try await router.request(packet, awaiting: reply, timeout: timeout ?? options.replyTimeout)
        } catch {
            throw error.error
        }
    }

    func decode<Message: WireMessage>(_ type: Message.Type, from packet: Packet) throws(ClientError) -> Message {
        do {
            return try Message(packet: packet)
        } catch {
            throw ClientError(
                error.code, "the endpoint sent a malformed \(Message.messageType) (\(Message.messageType.rawValue)): \(error.message)")
        }
    }
}
