import MyIMWire
import Testing

/// A sample of every message type, with every optional key set. The switch is exhaustive, so a
/// new ``MessageType`` case without a sample does not compile.
func sample(_ type: MessageType) -> any WireMessage {
    switch type {
    case .login: Login(username: "alice@alpha.example", password: "hunter2", device: "sha256:" + String(repeating: "ab", count: 32), client: "myim-cli/0.1.0")
    case .register: Register(username: "alice", password: "correct horse")
    case .addFriend: AddFriend(to: "bob@beta.example", from: "alice@alpha.example")
    case .createGroup: CreateGroup(name: "climbers", members: ["bob@beta.example", "carol@alpha.example"], number: 3, from: "alice@alpha.example")
    case .inviteToGroup: InviteToGroup(groupID: 42, username: "dave@alpha.example")
    case .chat: Chat(target: .group(42), content: .text("hello, group"), clientMessageID: "9b2f6a1e-0c4d-4e1a-9f3b-5d7c8e9fa0b1", qos: .bestEffort)
    case .groupMembersQuery: GroupMembersQuery(groupID: 42)
    case .chatAccepted: ChatAccepted(clientMessageID: "m-1", serverMessageID: 1_000_001, time: 1_700_000_000_123, seq: 17, targetID: 8)
    case .loginOK:
        LoginOK(userID: 7, username: "alice@alpha.example", token: "tok-abc", sessionID: "s-1", expires: 1_700_086_400_000, newDevice: true, servers: sampleServerList)
    case .initialState:
        InitialState(
            friends: [FriendEntry(username: "bob@beta.example", userID: 8), FriendEntry(username: "carol@alpha.example", userID: 9)],
            groups: [GroupEntry(groupName: "climbers", groupID: 42)],
            messages: [sampleDelivery, ChatDelivery(kind: .user, time: 5, senderID: 8, senderName: "bob@beta.example", targetID: 7, targetName: "alice@alpha.example", content: .image(bytes: [0, 1, 0xFF], mime: nil), serverMessageID: 3, clientMessageID: "b-1")]
        )
    case .loginFailed: LoginFailed(errorCode: ErrorCode(301), message: "wrong password", retryAfter: 30_000)
    case .registerOK: RegisterOK(userID: 7, username: "alice@alpha.example")
    case .registerFailed: RegisterFailed(errorCode: ErrorCode(302), message: "name taken")
    case .addFriendResult: AddFriendResult(status: .added, username: "bob@beta.example")
    case .groupCreated: GroupCreated(groupID: 42, groupName: "climbers")
    case .addedToGroup: AddedToGroup(groupID: 42, groupName: "climbers", by: "alice@alpha.example")
    case .groupMembers: GroupMembers(groupID: 42, number: 2, members: ["alice@alpha.example", "bob@beta.example"])
    case .chatDelivery: sampleDelivery
    case .kicked: Kicked()
    case .error: ErrorMessage(code: .unknownRecipient, data: "nobody@alpha.example has no account", clientMessageID: "m-2")
    case .ping: Ping(time: 1_700_000_000_000)
    case .pong: Pong(time: 1_700_000_000_000)
    case .deliveryAck: DeliveryAck(ids: [1, 2, 3], groups: [GroupCursor(groupID: 42, seq: 17), GroupCursor(groupID: 43, seq: 1)])
    case .presenceSet: PresenceSet(status: .busy, text: "climbing")
    case .fetchOffline: FetchOffline(limit: 100)
    case .offlineDone: OfflineDone(count: 100, more: true)
    case .profileQuery: ProfileQuery(username: "bob@beta.example")
    case .profile: Profile(username: "bob@beta.example", userID: 8, signature: "on belay", online: true)
    case .profileSet: ProfileSet(signature: "on belay")
    case .friendListQuery: FriendListQuery()
    case .friendList: FriendList(friends: [FriendEntry(username: "bob@beta.example", userID: 8, signature: "on belay"), FriendEntry(username: "carol@alpha.example", userID: 9)])
    case .friendPresenceQuery: FriendPresenceQuery()
    case .friendPresenceList:
        FriendPresenceList(friends: [PresenceEntry(username: "bob@beta.example", online: true, status: .away, since: 1_700_000_000_000), PresenceEntry(username: "carol@alpha.example", online: false)])
    case .friendPresenceNotice: FriendPresenceNotice(username: "bob@beta.example", online: true, status: .invisible, time: 1_700_000_000_000)
    case .fileOffer: FileOffer(transferID: "t-1", target: "bob@beta.example", name: "topo.pdf", size: 123_456, sha256: Array(0..<32), mime: "application/pdf")
    case .fileChunk: FileChunk(transferID: "t-1", offset: 65_536, data: [0xDE, 0xAD, 0xBE, 0xEF])
    case .fileDone: FileDone(transferID: "t-1", status: .rejected, message: "no thanks")
    case .securityAlert: SecurityAlert(kind: "new_device", time: 1_700_000_000_000, message: "a new device logged in", device: "sha256:00", address: "192.0.2.1")
    case .serverListQuery: ServerListQuery()
    case .serverList: sampleServerList
    case .tokenAuth: TokenAuth(token: "tok-abc", device: "sha256:00", senderCopies: false)
    case .authOK: AuthOK(username: "alice@alpha.example", sessionID: "s-2", serverTime: 1_700_000_000_000, node: "ep-1")
    case .quit: Quit()
    case .quitAck: QuitAck(lastSeen: 1_700_000_000_000)
    case .leaveGroup: LeaveGroup(groupID: 7)
    case .removeFromGroup: RemoveFromGroup(groupID: 7, username: "mallory@alpha.example")
    case .reconnect: Reconnect(reason: "alpha-ep1 is shutting down", next: "alpha-ep2")
    case .groupNotice: GroupNotice(groupID: 7, groupName: "climbers", kind: .removed, username: "mallory@alpha.example", by: "alice@alpha.example", time: 1_700_000_000_000)
    case .clientHello: ClientHello(version: 1, random: Array(repeating: 1, count: 32), keyShare: Array(repeating: 2, count: 32))
    case .serverHello: ServerHello(version: 1, random: Array(repeating: 3, count: 32), keyShare: Array(repeating: 4, count: 32), keyType: "ed25519", identityKey: [0x30, 0x2A])
    case .serverVerify: ServerVerify(signature: Array(repeating: 5, count: 64))
    case .clientFinished: ClientFinished(verify: Array(repeating: 6, count: 32))
    case .helloDone: HelloDone(verify: Array(repeating: 7, count: 32))
    case .helloError: HelloError(code: .unsupportedVersion, message: "version 2 is not supported")
    }
}

let sampleDelivery = ChatDelivery(
    kind: .group, time: 1_700_000_000_123, senderID: 7, senderName: "alice@alpha.example", targetID: 42,
    targetName: "climbers", content: .image(bytes: [0x89, 0x50, 0x4E, 0x47, 0x00], mime: "image/png"),
    serverMessageID: 1_000_001, clientMessageID: "m-1", qos: .atLeastOnce, seq: 17, serverID: "node-a"
)

let sampleServerList = ServerList(
    domain: "alpha.example", issued: 1_700_000_000_000,
    servers: [
        ServerEntry(name: "ep-1", host: "ep1.alpha.example", port: 5222, priority: 0, fingerprint: "sha256:11"),
        ServerEntry(name: "ep-2", host: "ep2.alpha.example", port: 5222, priority: 10, fingerprint: "sha256:22"),
    ],
    signature: Array(repeating: 0xA5, count: 64)
)

/// Decodes a body as a packet of `type`, returning the error (nil when decoding succeeds).
func decodingError(_ type: MessageType, _ body: WireDict) -> WireError? {
    do {
        _ = try Packet(type: type.rawValue, body: body).message()
        return nil
    } catch {
        return error
    }
}

/// `sample(type)`'s body with `change` applied.
func sampleBody(_ type: MessageType, _ change: (inout WireDict) -> Void = { _ in }) -> WireDict {
    var body = sample(type).body
    change(&body)
    return body
}

func bytes(_ buffer: Packet) -> [UInt8] { Array(buffer.encoded().readableBytesView) }

func utf8(_ string: String) -> [UInt8] { Array(string.utf8) }

@Suite("Typed messages")
struct MessageTests {
    /// Encodes to bytes, decodes the bytes as a packet and the packet as a message.
    private func checkRoundTrip<M: WireMessage>(_ message: M) throws {
        let packet = try Packet(decoding: message.packet.encoded())
        #expect(packet.type == M.messageType.rawValue)
        let decoded = try packet.message()
        let typed = try #require(decoded as? M)
        #expect(typed == message)
    }

    @Test("every message type round-trips through bytes", arguments: MessageType.allCases)
    func roundTrip(_ type: MessageType) throws {
        let message = sample(type)
        #expect(Swift.type(of: message).messageType == type)
        #expect(ObjectIdentifier(type.payloadType) == ObjectIdentifier(Swift.type(of: message)))
        try checkRoundTrip(message)
    }

    @Test("unknown keys are ignored", arguments: MessageType.allCases)
    func unknownKeys(_ type: MessageType) throws {
        let message = sample(type)
        var body = message.body
        body["zz_future"] = .dict(["nested": .list([.int(1), .string("x")])])
        body["another_new_key"] = .bytes([1, 2, 3])
        let decoded = try Packet(type: type.rawValue, body: body).message()
        #expect(decoded.body == message.body)
    }

    @Test("a missing required key is named", arguments: [
        (MessageType.login, "password"), (.register, "username"), (.chat, "client_msg_id"), (.chat, "target_id"),
        (.chat, "type"), (.chat, "message"), (.chatAccepted, "time"), (.initialState, "msg"),
        (.chatDelivery, "server_msg_id"), (.error, "data"), (.presenceSet, "status"), (.offlineDone, "more"),
        (.fileOffer, "sha256"), (.serverList, "signature"), (.authOK, "server_time"), (.quitAck, "last_seen"),
    ])
    func missingKey(_ type: MessageType, _ key: String) throws {
        let error = try #require(decodingError(type, sampleBody(type) { $0[key] = nil }))
        #expect(error.code == .missingKey)
        #expect(error.message.contains("'\(key)'"))
    }

    @Test("a missing key inside a nested dict is named by its path")
    func missingNestedKey() throws {
        let cases: [(MessageType, String, (inout WireDict) -> Void)] = [
            (.initialState, "friends[1].user_id", { body in
                body["friends"] = .list([.dict(["username": .string("a@b"), "user_id": .int(1)]), .dict(["username": .string("c@d")])])
            }),
            (.initialState, "msg[0].time", { body in
                var delivery = sampleDelivery.body
                delivery["time"] = nil
                body["msg"] = .list([.dict(delivery)])
            }),
            (.chat, "message.data", { body in body["message"] = .dict(["type": .int(0)]) }),
            (.loginOK, "servers.signature", { body in
                var list = sampleServerList.body
                list["signature"] = nil
                body["servers"] = .dict(list)
            }),
            (.deliveryAck, "groups[0].seq", { body in body["groups"] = .list([.dict(["group_id": .int(1)])]) }),
        ]
        for (type, path, change) in cases {
            let error = try #require(decodingError(type, sampleBody(type, change)))
            #expect(error.code == .missingKey, "\(type)")
            #expect(error.message.contains("'\(path)'"), "\(error.message)")
        }
    }

    @Test("a value of the wrong type is named")
    func wrongValueType() throws {
        let cases: [(MessageType, String, (inout WireDict) -> Void)] = [
            (.login, "username", { $0["username"] = .int(1) }),
            (.loginOK, "new_device", { $0["new_device"] = .int(1) }),
            (.createGroup, "members[1]", { $0["members"] = .list([.string("a@b"), .int(2)]) }),
            (.chat, "message", { $0["message"] = .string("hi") }),
            (.chat, "qos", { $0["qos"] = .bool(true) }),
            (.fileChunk, "data", { $0["data"] = .string("abc") }),
            (.deliveryAck, "ids[0]", { $0["ids"] = .list([.string("1")]) }),
            (.friendList, "friends[0]", { $0["friends"] = .list([.string("bob")]) }),
            (.initialState, "msg[0].message.data", { body in
                var delivery = sampleDelivery.body
                delivery["message"] = .dict(["type": .int(0), "data": .bytes([1])])
                body["msg"] = .list([.dict(delivery)])
            }),
        ]
        for (type, key, change) in cases {
            let error = try #require(decodingError(type, sampleBody(type, change)))
            #expect(error.code == .wrongValueType, "\(type) \(key)")
            #expect(error.message.contains("'\(key)'"), "\(error.message)")
        }
    }

    @Test("a refusal names a chat only by a valid client_msg_id (1–64 bytes)")
    func refusalsNameValidChatIDs() {
        func chat(_ id: String) -> Packet {
            var packet = Chat(target: .user("bob@alpha.example"), content: .text("x"), clientMessageID: "placeholder").packet
            packet.body["client_msg_id"] = .string(id)
            return packet
        }
        let refusal = ErrorMessage(code: .unknownRecipient, data: "no")
        #expect(refusal.answering(chat("m-1")).clientMessageID == "m-1")
        #expect(refusal.answering(chat(String(repeating: "é", count: 32))).clientMessageID?.utf8.count == 64)
        #expect(refusal.answering(chat(String(repeating: "a", count: 65))).clientMessageID == nil, "too long to be an id: not echoed")
        #expect(refusal.answering(chat("")).clientMessageID == nil)
        #expect(refusal.answering(Ping(time: 1).packet).clientMessageID == nil, "not a chat")
    }

    @Test("qos defaults to 1, accepts 0 and 1, rejects anything else")
    func qos() throws {
        let chat = Chat(target: .user("bob@beta.example"), content: .text("hi"), clientMessageID: "c1")
        #expect(chat.qos == .atLeastOnce)
        #expect(chat.body["qos"] == .int(1))

        var body = chat.body
        body["qos"] = nil
        let absent = try Chat(body: body)
        #expect(absent.qos == .atLeastOnce)
        body["qos"] = .int(0)
        let bestEffort = try Chat(body: body)
        #expect(bestEffort.qos == .bestEffort)

        for type in [MessageType.chat, .chatDelivery] {
            for bad: Int64 in [2, -1] {
                let error = try #require(decodingError(type, sampleBody(type) { $0["qos"] = .int(bad) }))
                #expect(error.code == .invalidField)
                #expect(error.message.contains("'qos'"))
            }
        }
    }

    @Test("chat target_id must have the type that chat's type requires")
    func chatTarget() throws {
        let user = Chat(target: .user("bob@beta.example"), content: .text("hi"), clientMessageID: "c1")
        try checkRoundTrip(user)
        #expect(user.body["type"] == .int(0))
        #expect(user.body["target_id"] == .string("bob@beta.example"))

        let privateWithInt = try #require(decodingError(.chat, user.body.replacing("target_id", with: .int(8))))
        #expect(privateWithInt.code == .wrongValueType)
        #expect(privateWithInt.message.contains("'target_id'"))

        let group = Chat(target: .group(42), content: .text("hi"), clientMessageID: "c1")
        #expect(group.body["target_id"] == .int(42))
        let groupWithString = try #require(decodingError(.chat, group.body.replacing("target_id", with: .string("42"))))
        #expect(groupWithString.code == .wrongValueType)
        #expect(groupWithString.message.contains("'target_id'"))

        let unknownType = try #require(decodingError(.chat, user.body.replacing("type", with: .int(2))))
        #expect(unknownType.code == .invalidField)
        #expect(unknownType.message.contains("'type'"))
    }

    @Test("image content round-trips its bytes; unknown content types are rejected")
    func imageContent() throws {
        let image: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0xFF]
        let chat = Chat(target: .user("bob@beta.example"), content: .image(bytes: image, mime: "image/png"), clientMessageID: "c2")
        #expect(chat.body["message"] == .dict(["type": .int(1), "data": .bytes(image), "mime": .string("image/png")]))
        try checkRoundTrip(chat)
        try checkRoundTrip(Chat(target: .group(1), content: .image(bytes: [], mime: nil), clientMessageID: "c3"))

        let imageWithString = try #require(decodingError(.chat, chat.body.replacing("message", with: .dict(["type": .int(1), "data": .string("png")]))))
        #expect(imageWithString.code == .wrongValueType)
        #expect(imageWithString.message.contains("'message.data'"))

        let video = try #require(decodingError(.chat, chat.body.replacing("message", with: .dict(["type": .int(2), "data": .bytes(image)]))))
        #expect(video.code == .invalidField)
        #expect(video.message.contains("'message.type'"))
    }

    @Test("client_msg_id and transfer_id are 1–64 bytes of UTF-8")
    func identifiers() throws {
        let fourByteScalars = String(repeating: "😀", count: 16)  // 64 bytes
        try checkRoundTrip(Chat(target: .group(1), content: .text("x"), clientMessageID: fourByteScalars))
        try checkRoundTrip(FileChunk(transferID: String(repeating: "t", count: 64), offset: 0, data: []))

        for (type, key) in [(MessageType.chat, "client_msg_id"), (.chatAccepted, "client_msg_id"), (.chatDelivery, "client_msg_id"),
                            (.fileOffer, "transfer_id"), (.fileChunk, "transfer_id"), (.fileDone, "transfer_id")] {
            for bad in ["", String(repeating: "a", count: 65), fourByteScalars + "a"] {
                let error = try #require(decodingError(type, sampleBody(type) { $0[key] = .string(bad) }))
                #expect(error.code == .invalidField, "\(type) \(key) \(bad.utf8.count)")
                #expect(error.message.contains("'\(key)'"))
            }
        }
    }

    @Test("other field checks: sha256 length, presence status, enumerated statuses")
    func fieldChecks() throws {
        for count in [0, 31, 33] {
            let error = try #require(decodingError(.fileOffer, sampleBody(.fileOffer) { $0["sha256"] = .bytes(Array(repeating: 0, count: count)) }))
            #expect(error.code == .invalidField)
            #expect(error.message.contains("'sha256'"))
        }
        let cases: [(MessageType, String, (inout WireDict) -> Void)] = [
            (.presenceSet, "status", { $0["status"] = .string("Online") }),
            (.friendPresenceNotice, "status", { $0["status"] = .string("asleep") }),
            (.friendPresenceList, "friends[0].status", { $0["friends"] = .list([.dict(["username": .string("a@b"), "online": .bool(true), "status": .string("")])]) }),
            (.addFriendResult, "status", { $0["status"] = .int(2) }),
            (.fileDone, "status", { $0["status"] = .int(4) }),
            (.chatDelivery, "type", { $0["type"] = .int(-1) }),
        ]
        for (type, key, change) in cases {
            let error = try #require(decodingError(type, sampleBody(type, change)))
            #expect(error.code == .invalidField, "\(type) \(key)")
            #expect(error.message.contains("'\(key)'"), "\(error.message)")
        }
        for status in ["online", "away", "busy", "invisible"] {
            let message = try PresenceSet(body: ["status": .string(status)])
            #expect(message.status.rawValue == status)
        }
    }

    @Test("absent optional keys take their defaults; defaults are still encoded")
    func defaults() throws {
        let ack = try DeliveryAck(body: [:])
        #expect(ack == DeliveryAck(ids: [], groups: []))
        #expect(ack.body == ["ids": .list([]), "groups": .list([])])

        let profile = try Profile(body: ["username": .string("bob@beta.example")])
        #expect(profile == Profile(username: "bob@beta.example"))
        #expect(profile.body == ["username": .string("bob@beta.example"), "signature": .string("")])

        var loginOK = sample(.loginOK).body
        loginOK["new_device"] = nil
        loginOK["servers"] = nil
        let decoded = try LoginOK(body: loginOK)
        #expect(decoded.newDevice == false)
        #expect(decoded.servers == nil)
        #expect(decoded.body["new_device"] == .bool(false))
        #expect(decoded.body["servers"] == nil)

        #expect(Ping().body.isEmpty)
        #expect(FetchOffline().body.isEmpty)
        let error = try ErrorMessage(body: ["code": .int(117), "data": .string("x")])
        #expect(error.code == .unknownMessageType)
        #expect(error.body == ["code": .int(117), "data": .string("x")])
    }

    @Test("keys are encoded in the draft's table order")
    func keyOrder() {
        #expect(sampleDelivery.body.entries.map(\.key) == [
            "type", "time", "sender_id", "sender_name", "target_id", "target_name", "message",
            "server_msg_id", "client_msg_id", "qos", "seq", "server_id",
        ])
        #expect(sample(.loginOK).body.entries.map(\.key) == [
            "user_id", "username", "token", "session_id", "expires", "new_device", "servers",
        ])
        #expect(sample(.profile).body.entries.map(\.key) == ["username", "user_id", "signature", "online"])
        #expect(sample(.friendPresenceNotice).body.entries.map(\.key) == ["username", "online", "status", "time"])
    }

    @Test("an unknown message type is rejected with 117")
    func unknownType() throws {
        do {
            _ = try Packet(type: 99).message()
            Issue.record("type 99 decoded")
        } catch {
            #expect(error.code == .unknownMessageType)
        }
    }

    @Test("Kicked is exactly its 8-byte header")
    func kickedBytes() {
        #expect(bytes(Kicked().packet) == [0x00, 0x00, 0x00, 0x13, 0x00, 0x00, 0x00, 0x00])
    }

    @Test("a small chat message encodes byte for byte as the draft says")
    func chatBytes() throws {
        let chat = Chat(target: .user("bob@b"), content: .text("hi"), clientMessageID: "c1", qos: .bestEffort)
        let zero8: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0]
        // The content dict: type (18 bytes) + data (12 bytes) = 30 = 0x1E.
        let content: [UInt8] =
            [4] + utf8("type") + [1, 0, 0, 0, 8] + zero8
            + [4] + utf8("data") + [2, 0, 0, 0, 2] + utf8("hi")
        // Body: type 18 + target_id 20 + message 43 + client_msg_id 21 + qos 17 = 119 = 0x77.
        let expected: [UInt8] =
            [0, 0, 0, 6, 0, 0, 0, 0x77]
            + [4] + utf8("type") + [1, 0, 0, 0, 8] + zero8
            + [9] + utf8("target_id") + [2, 0, 0, 0, 5] + utf8("bob@b")
            + [7] + utf8("message") + [5, 0, 0, 0, 0x1E] + content
            + [13] + utf8("client_msg_id") + [2, 0, 0, 0, 2] + utf8("c1")
            + [3] + utf8("qos") + [1, 0, 0, 0, 8] + zero8
        #expect(content.count == 30)
        #expect(expected.count == 8 + 119)
        #expect(bytes(chat.packet) == expected)
        try checkRoundTrip(chat)
    }

    @Test("lists encode each element as type | length | value")
    func listBytes() throws {
        let ack = DeliveryAck(ids: [7], groups: [])
        let expected: [UInt8] =
            [0, 0, 0, 23, 0, 0, 0, 34]
            + [3] + utf8("ids") + [4, 0, 0, 0, 13] + [1, 0, 0, 0, 8] + [0, 0, 0, 0, 0, 0, 0, 7]
            + [6] + utf8("groups") + [4, 0, 0, 0, 0]
        #expect(bytes(ack.packet) == expected)
        try checkRoundTrip(ack)
    }
}

extension WireDict {
    fileprivate func replacing(_ key: String, with value: WireValue) -> WireDict {
        var copy = self
        copy[key] = value
        return copy
    }
}
