// Chat messages and their delivery (6, 8, 10, 18, 23, 25, 26), with the chat content, the
// chat target and the quality of service, as docs/PROTOCOL.md (section 7) describes.

import NIOCore

/// Whether a chat message goes to one user or to a group: the `type` key of 6 and 18.
public enum ChatKind: Int64, CaseIterable, Hashable, Sendable {
    /// 0, private (1:1).
    case user = 0
    /// 1, a group.
    case group = 1
}

/// Where a chat message (6) goes: its `type` and `target_id` keys together.
public enum ChatTarget: Hashable, Sendable {
    /// Type 0: a user, by address.
    case user(String)
    /// Type 1: a group, by id.
    case group(Int64)

    public var kind: ChatKind {
        switch self {
        case .user: .user
        case .group: .group
        }
    }

    /// Reads `type`, then `target_id` with the value type that `type` requires.
    init(body: WireDict) throws(WireError) {
        let kind: ChatKind = try body.intEnum("type")
        switch kind {
        case .user: self = .user(try body.string("target_id"))
        case .group: self = .group(try body.int("target_id"))
        }
    }

    var targetID: WireValue {
        switch self {
        case .user(let address): .string(address)
        case .group(let id): .int(id)
        }
    }
}

/// The content of a chat message: the `message` dict of 6 and 18.
public enum ChatContent: Hashable, Sendable {
    /// Type 0: UTF-8 text.
    case text(String)
    /// Type 1: image bytes and, optionally, their media type (e.g. `image/png`).
    case image(bytes: [UInt8], mime: String?)

    /// Decodes the dict; `data` must be a string for text and bytes for an image, and other
    /// content types are rejected with ``ErrorCode/invalidField``.
    public init(dict: WireDict) throws(WireError) {
        let type = try dict.int("type")
        switch type {
        case 0: self = .text(try dict.string("data"))
        case 1: self = .image(bytes: try dict.bytes("data"), mime: try dict.optionalString("mime"))
        default: throw .invalidField("type", "content type \(type) is not 0 (text) or 1 (image)")
        }
    }

    public var dict: WireDict {
        switch self {
        case .text(let text):
            return ["type": .int(0), "data": .string(text)]
        case .image(let bytes, let mime):
            var dict: WireDict = ["type": .int(1), "data": .bytes(bytes)]
            dict["mime"] = mime.map(WireValue.string)
            return dict
        }
    }
}

/// Quality of service of a chat message: the `qos` key, 1 when absent.
public enum QoS: Int64, CaseIterable, Hashable, Sendable {
    /// 0: best effort, not stored, no acknowledgement.
    case bestEffort = 0
    /// 1: stored until the recipient acknowledges it with message 23.
    case atLeastOnce = 1
}

extension WireDict {
    /// The `qos` key: absent means ``QoS/atLeastOnce``; values other than 0 and 1 are rejected.
    func qos() throws(WireError) -> QoS {
        try optionalIntEnum("qos") ?? .atLeastOnce
    }
}

/// 6, client → server: send a chat message.
public struct Chat: WireMessage {
    public static let messageType = MessageType.chat

    /// The `client_msg_id` of `packet` if it is a chat (6) whose id is valid (1–64 bytes of
    /// UTF-8), read without decoding the rest: what a refusal names and what the endpoint
    /// tracks. A chat with an invalid id is refused without one.
    public static func clientMessageID(of packet: Packet) -> String? {
        guard packet.type == messageType.rawValue else { return nil }
        let id: String?
        if let encoded = packet.encodedBody {
            id = WireParser.topLevelString("client_msg_id", in: encoded)
        } else if case .string(let value)? = packet.body["client_msg_id"] {
            id = value
        } else {
            id = nil
        }
        guard let id, (1...64).contains(id.utf8.count) else { return nil }
        return id
    }
    /// Wire keys `type` and `target_id`.
    public var target: ChatTarget
    /// Wire key `message`.
    public var content: ChatContent
    /// 1–64 bytes chosen by the sender, unique per sender; the server drops retried duplicates.
    public var clientMessageID: String
    public var qos: QoS

    public init(target: ChatTarget, content: ChatContent, clientMessageID: String, qos: QoS = .atLeastOnce) {
        self.target = target
        self.content = content
        self.clientMessageID = clientMessageID
        self.qos = qos
    }

    public init(body: WireDict) throws(WireError) {
        target = try ChatTarget(body: body)
        content = try body.nested("message", ChatContent.init(dict:))
        clientMessageID = try body.identifier("client_msg_id")
        qos = try body.qos()
    }

    public var body: WireDict {
        [
            "type": .int(target.kind.rawValue), "target_id": target.targetID, "message": .dict(content.dict),
            "client_msg_id": .string(clientMessageID), "qos": .int(qos.rawValue),
        ]
    }
}

/// 8, server → client: the server accepted a chat message (6) and gave it an id.
public struct ChatAccepted: WireMessage {
    public static let messageType = MessageType.chatAccepted
    /// The sender's id of the accepted message.
    public var clientMessageID: String
    public var serverMessageID: Int64
    /// Server time the message was accepted.
    public var time: Int64
    /// The group sequence number (group messages).
    public var seq: Int64?
    /// The recipient's user id (1:1 messages), as its 18 carries it: with the 8 the sender
    /// has every field of the delivery, which the server does not send back to it.
    public var targetID: Int64?

    public init(clientMessageID: String, serverMessageID: Int64, time: Int64, seq: Int64? = nil, targetID: Int64? = nil) {
        self.clientMessageID = clientMessageID
        self.serverMessageID = serverMessageID
        self.time = time
        self.seq = seq
        self.targetID = targetID
    }

    public init(body: WireDict) throws(WireError) {
        clientMessageID = try body.identifier("client_msg_id")
        serverMessageID = try body.int("server_msg_id")
        time = try body.int("time")
        seq = try body.optionalInt("seq")
        targetID = try body.optionalInt("target_id")
    }

    public var body: WireDict {
        var body: WireDict = [
            "client_msg_id": .string(clientMessageID), "server_msg_id": .int(serverMessageID), "time": .int(time),
        ]
        body["seq"] = seq.map(WireValue.int)
        body["target_id"] = targetID.map(WireValue.int)
        return body
    }
}

/// 10, server → client: after login, the friends, groups and unread messages.
public struct InitialState: WireMessage {
    public static let messageType = MessageType.initialState
    /// Each `{username, user_id}`.
    public var friends: [FriendEntry]
    public var groups: [GroupEntry]
    /// Wire key `msg`: unread messages, each a message-18 body, in ascending time.
    public var messages: [ChatDelivery]

    public init(friends: [FriendEntry], groups: [GroupEntry], messages: [ChatDelivery]) {
        self.friends = friends
        self.groups = groups
        self.messages = messages
    }

    public init(body: WireDict) throws(WireError) {
        friends = try body.nestedList("friends", FriendEntry.init(dict:))
        groups = try body.nestedList("groups", GroupEntry.init(dict:))
        messages = try body.nestedList("msg", ChatDelivery.init(body:))
    }

    public var body: WireDict {
        [
            "friends": .list(friends.map { .dict($0.dict) }),
            "groups": .list(groups.map { .dict($0.dict) }),
            "msg": .list(messages.map { .dict($0.body) }),
        ]
    }
}

/// 18, server → client: a chat message for the client.
public struct ChatDelivery: WireMessage {
    public static let messageType = MessageType.chatDelivery
    /// Wire key `type`.
    public var kind: ChatKind
    /// Server time.
    public var time: Int64
    public var senderID: Int64
    /// The sender's address.
    public var senderName: String
    /// The recipient's user id, or the group id.
    public var targetID: Int64
    /// The recipient's address, or the group name.
    public var targetName: String
    /// Wire key `message`: the content, as sent.
    public var content: ChatContent
    public var serverMessageID: Int64
    /// The sender's id.
    public var clientMessageID: String
    /// ``QoS/atLeastOnce``: acknowledge with message 23.
    public var qos: QoS
    /// The group sequence number (type 1).
    public var seq: Int64?
    /// The node that accepted the message.
    public var serverID: String?

    public init(
        kind: ChatKind, time: Int64, senderID: Int64, senderName: String, targetID: Int64, targetName: String,
        content: ChatContent, serverMessageID: Int64, clientMessageID: String, qos: QoS = .atLeastOnce,
        seq: Int64? = nil, serverID: String? = nil
    ) {
        self.kind = kind
        self.time = time
        self.senderID = senderID
        self.senderName = senderName
        self.targetID = targetID
        self.targetName = targetName
        self.content = content
        self.serverMessageID = serverMessageID
        self.clientMessageID = clientMessageID
        self.qos = qos
        self.seq = seq
        self.serverID = serverID
    }

    public init(body: WireDict) throws(WireError) {
        kind = try body.intEnum("type")
        time = try body.int("time")
        senderID = try body.int("sender_id")
        senderName = try body.string("sender_name")
        targetID = try body.int("target_id")
        targetName = try body.string("target_name")
        content = try body.nested("message", ChatContent.init(dict:))
        serverMessageID = try body.int("server_msg_id")
        clientMessageID = try body.identifier("client_msg_id")
        qos = try body.qos()
        seq = try body.optionalInt("seq")
        serverID = try body.optionalString("server_id")
    }

    public var body: WireDict {
        var body: WireDict = [
            "type": .int(kind.rawValue), "time": .int(time),
            "sender_id": .int(senderID), "sender_name": .string(senderName),
            "target_id": .int(targetID), "target_name": .string(targetName),
            "message": .dict(content.dict), "server_msg_id": .int(serverMessageID),
            "client_msg_id": .string(clientMessageID), "qos": .int(qos.rawValue),
        ]
        body["seq"] = seq.map(WireValue.int)
        body["server_id"] = serverID.map(WireValue.string)
        return body
    }
}

extension ChatContent {
    /// The size of ``dict`` encoded.
    var encodedSize: Int {
        switch self {
        case .text(let text):
            RawWireWriter.entrySize("type", contentSize: 8) + RawWireWriter.entrySize("data", contentSize: text.utf8.count)
        case .image(let bytes, let mime):
            RawWireWriter.entrySize("type", contentSize: 8) + RawWireWriter.entrySize("data", contentSize: bytes.count)
                + (mime.map { RawWireWriter.entrySize("mime", contentSize: $0.utf8.count) } ?? 0)
        }
    }

    /// Writes ``dict``'s entries.
    func write(into writer: inout RawWireWriter) {
        switch self {
        case .text(let text):
            writer.entry("type", int: 0)
            writer.entry("data", string: text)
        case .image(let bytes, let mime):
            writer.entry("type", int: 1)
            writer.entry("data", bytes: bytes)
            if let mime { writer.entry("mime", string: mime) }
        }
    }
}

extension ChatDelivery {
    /// This delivery as a packet whose body is already encoded (``Packet/encodedBody``): the
    /// bytes ``body`` encodes to, written straight from the fields without building the dict.
    /// What a server sends on; a reader parses it as any body.
    public var encodedPacket: Packet {
        let contentSize = content.encodedSize
        var size = RawWireWriter.entrySize("type", contentSize: 8) + RawWireWriter.entrySize("time", contentSize: 8)
            + RawWireWriter.entrySize("sender_id", contentSize: 8) + RawWireWriter.entrySize("sender_name", contentSize: senderName.utf8.count)
            + RawWireWriter.entrySize("target_id", contentSize: 8) + RawWireWriter.entrySize("target_name", contentSize: targetName.utf8.count)
            + RawWireWriter.entrySize("message", contentSize: contentSize) + RawWireWriter.entrySize("server_msg_id", contentSize: 8)
            + RawWireWriter.entrySize("client_msg_id", contentSize: clientMessageID.utf8.count) + RawWireWriter.entrySize("qos", contentSize: 8)
        if seq != nil { size += RawWireWriter.entrySize("seq", contentSize: 8) }
        if let serverID { size += RawWireWriter.entrySize("server_id", contentSize: serverID.utf8.count) }
        var encoded = ByteBufferAllocator().buffer(capacity: size)
        encoded.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { bytes in
            var writer = RawWireWriter(bytes.baseAddress!)
            writer.entry("type", int: kind.rawValue)
            writer.entry("time", int: time)
            writer.entry("sender_id", int: senderID)
            writer.entry("sender_name", string: senderName)
            writer.entry("target_id", int: targetID)
            writer.entry("target_name", string: targetName)
            writer.entry("message", dictOfSize: contentSize) { content.write(into: &$0) }
            writer.entry("server_msg_id", int: serverMessageID)
            writer.entry("client_msg_id", string: clientMessageID)
            writer.entry("qos", int: qos.rawValue)
            if let seq { writer.entry("seq", int: seq) }
            if let serverID { writer.entry("server_id", string: serverID) }
            precondition(writer.offset == size, "a delivery wrote \(writer.offset) bytes where \(size) were computed")
            return size
        }
        return Packet(type: Self.messageType.rawValue, encodedBody: encoded)
    }
}

/// One element of 23's `groups`: every message of the group up to `seq` was received.
public struct GroupCursor: Hashable, Sendable {
    public var groupID: Int64
    public var seq: Int64

    public init(groupID: Int64, seq: Int64) {
        self.groupID = groupID
        self.seq = seq
    }

    public init(dict: WireDict) throws(WireError) {
        groupID = try dict.int("group_id")
        seq = try dict.int("seq")
    }

    public var dict: WireDict { ["group_id": .int(groupID), "seq": .int(seq)] }
}

/// 23, client → server: acknowledges received messages of QoS 1.
public struct DeliveryAck: WireMessage {
    public static let messageType = MessageType.deliveryAck
    /// Server message ids of 1:1 messages received. Absent on the wire means empty.
    public var ids: [Int64]
    /// Group messages received, per group. Absent on the wire means empty.
    public var groups: [GroupCursor]

    public init(ids: [Int64] = [], groups: [GroupCursor] = []) {
        self.ids = ids
        self.groups = groups
    }

    public init(body: WireDict) throws(WireError) {
        ids = try body.intListOrEmpty("ids")
        groups = try body.nestedListOrEmpty("groups", GroupCursor.init(dict:))
    }

    public var body: WireDict {
        ["ids": .list(ids.map(WireValue.int)), "groups": .list(groups.map { .dict($0.dict) })]
    }
}

/// 25, client → server: send the messages stored while offline.
public struct FetchOffline: WireMessage {
    public static let messageType = MessageType.fetchOffline
    /// Most messages to send; the server's default when nil.
    public var limit: Int64?

    public init(limit: Int64? = nil) { self.limit = limit }

    public init(body: WireDict) throws(WireError) {
        limit = try body.optionalInt("limit")
    }

    public var body: WireDict {
        var body = WireDict()
        body["limit"] = limit.map(WireValue.int)
        return body
    }
}

/// 26, server → client: the messages for a fetch (25) have been sent.
public struct OfflineDone: WireMessage {
    public static let messageType = MessageType.offlineDone
    /// Messages sent for the fetch.
    public var count: Int64
    /// More are waiting.
    public var more: Bool

    public init(count: Int64, more: Bool) {
        self.count = count
        self.more = more
    }

    public init(body: WireDict) throws(WireError) {
        count = try body.int("count")
        more = try body.bool("more")
    }

    public var body: WireDict { ["count": .int(count), "more": .bool(more)] }
}
