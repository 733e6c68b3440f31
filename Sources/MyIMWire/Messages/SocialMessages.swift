// Friends, profiles and presence (3, 14, 27–34), as docs/PROTOCOL.md (section 7) describes.

/// A presence status: the `status` key of 24, 33 and 34.
public enum PresenceStatus: String, CaseIterable, Hashable, Sendable {
    case online
    case away
    case busy
    case invisible
}

/// One element of 10's and 31's `friends`. 10 carries no signature.
public struct FriendEntry: Hashable, Sendable {
    /// The friend's address.
    public var username: String
    public var userID: Int64
    public var signature: String?

    public init(username: String, userID: Int64, signature: String? = nil) {
        self.username = username
        self.userID = userID
        self.signature = signature
    }

    public init(dict: WireDict) throws(WireError) {
        username = try dict.string("username")
        userID = try dict.int("user_id")
        signature = try dict.optionalString("signature")
    }

    public var dict: WireDict {
        var dict: WireDict = ["username": .string(username), "user_id": .int(userID)]
        dict["signature"] = signature.map(WireValue.string)
        return dict
    }
}

/// One element of 33's `friends`.
public struct PresenceEntry: Hashable, Sendable {
    /// The friend's address.
    public var username: String
    public var online: Bool
    public var status: PresenceStatus?
    /// When the presence last changed.
    public var since: Int64?

    public init(username: String, online: Bool, status: PresenceStatus? = nil, since: Int64? = nil) {
        self.username = username
        self.online = online
        self.status = status
        self.since = since
    }

    public init(dict: WireDict) throws(WireError) {
        username = try dict.string("username")
        online = try dict.bool("online")
        status = try dict.optionalStringEnum("status")
        since = try dict.optionalInt("since")
    }

    public var dict: WireDict {
        var dict: WireDict = ["username": .string(username), "online": .bool(online)]
        dict["status"] = status.map { .string($0.rawValue) }
        dict["since"] = since.map(WireValue.int)
        return dict
    }
}

/// 3, client → server: befriend a user (seed 000: "start a private chat").
public struct AddFriend: WireMessage {
    public static let messageType = MessageType.addFriend
    /// The address to befriend.
    public var to: String
    /// Ignored by servers.
    public var from: String?

    public init(to: String, from: String? = nil) {
        self.to = to
        self.from = from
    }

    public init(body: WireDict) throws(WireError) {
        to = try body.string("to")
        from = try body.optionalString("from")
    }

    public var body: WireDict {
        var body: WireDict = ["to": .string(to)]
        body["from"] = from.map(WireValue.string)
        return body
    }
}

/// 14, server → client: the answer to 3.
public struct AddFriendResult: WireMessage {
    public static let messageType = MessageType.addFriendResult

    public enum Status: Int64, CaseIterable, Hashable, Sendable {
        /// 0: the two were friends already.
        case alreadyFriends = 0
        /// 1: a new friend.
        case added = 1
    }

    public var status: Status
    /// The friend's address.
    public var username: String?

    public init(status: Status, username: String? = nil) {
        self.status = status
        self.username = username
    }

    public init(body: WireDict) throws(WireError) {
        status = try body.intEnum("status")
        username = try body.optionalString("username")
    }

    public var body: WireDict {
        var body: WireDict = ["status": .int(status.rawValue)]
        body["username"] = username.map(WireValue.string)
        return body
    }
}

/// 27, client → server: ask for a user's profile; the server answers with 28.
public struct ProfileQuery: WireMessage {
    public static let messageType = MessageType.profileQuery
    /// The user's address.
    public var username: String

    public init(username: String) { self.username = username }

    public init(body: WireDict) throws(WireError) {
        username = try body.string("username")
    }

    public var body: WireDict { ["username": .string(username)] }
}

/// 28, server → client: a user's profile.
public struct Profile: WireMessage {
    public static let messageType = MessageType.profile
    /// The user's address.
    public var username: String
    public var userID: Int64?
    /// The user's signature (profile text). Absent on the wire means empty.
    public var signature: String
    /// Present when the asker may see the user's presence.
    public var online: Bool?

    public init(username: String, userID: Int64? = nil, signature: String = "", online: Bool? = nil) {
        self.username = username
        self.userID = userID
        self.signature = signature
        self.online = online
    }

    public init(body: WireDict) throws(WireError) {
        username = try body.string("username")
        userID = try body.optionalInt("user_id")
        signature = try body.optionalString("signature") ?? ""
        online = try body.optionalBool("online")
    }

    public var body: WireDict {
        var body: WireDict = ["username": .string(username)]
        body["user_id"] = userID.map(WireValue.int)
        body["signature"] = .string(signature)
        body["online"] = online.map(WireValue.bool)
        return body
    }
}

/// 29, client → server: set the client's own signature.
public struct ProfileSet: WireMessage {
    public static let messageType = MessageType.profileSet
    public var signature: String

    public init(signature: String) { self.signature = signature }

    public init(body: WireDict) throws(WireError) {
        signature = try body.string("signature")
    }

    public var body: WireDict { ["signature": .string(signature)] }
}

/// 30, client → server: ask for the friend list; the server answers with 31. Empty body.
public struct FriendListQuery: WireMessage {
    public static let messageType = MessageType.friendListQuery

    public init() {}
    public init(body: WireDict) {}
    public var body: WireDict { WireDict() }
}

/// 31, server → client: the friend list.
public struct FriendList: WireMessage {
    public static let messageType = MessageType.friendList
    public var friends: [FriendEntry]

    public init(friends: [FriendEntry]) { self.friends = friends }

    public init(body: WireDict) throws(WireError) {
        friends = try body.nestedList("friends", FriendEntry.init(dict:))
    }

    public var body: WireDict { ["friends": .list(friends.map { .dict($0.dict) })] }
}

/// 32, client → server: ask for the friends' presence; the server answers with 33. Empty body.
public struct FriendPresenceQuery: WireMessage {
    public static let messageType = MessageType.friendPresenceQuery

    public init() {}
    public init(body: WireDict) {}
    public var body: WireDict { WireDict() }
}

/// 33, server → client: the friends' presence.
public struct FriendPresenceList: WireMessage {
    public static let messageType = MessageType.friendPresenceList
    public var friends: [PresenceEntry]

    public init(friends: [PresenceEntry]) { self.friends = friends }

    public init(body: WireDict) throws(WireError) {
        friends = try body.nestedList("friends", PresenceEntry.init(dict:))
    }

    public var body: WireDict { ["friends": .list(friends.map { .dict($0.dict) })] }
}

/// 34, server → client: a friend's presence changed.
public struct FriendPresenceNotice: WireMessage {
    public static let messageType = MessageType.friendPresenceNotice
    /// The friend's address.
    public var username: String
    public var online: Bool
    public var status: PresenceStatus?
    /// When it changed.
    public var time: Int64

    public init(username: String, online: Bool, status: PresenceStatus? = nil, time: Int64) {
        self.username = username
        self.online = online
        self.status = status
        self.time = time
    }

    public init(body: WireDict) throws(WireError) {
        username = try body.string("username")
        online = try body.bool("online")
        status = try body.optionalStringEnum("status")
        time = try body.int("time")
    }

    public var body: WireDict {
        var body: WireDict = ["username": .string(username), "online": .bool(online)]
        body["status"] = status.map { .string($0.rawValue) }
        body["time"] = .int(time)
        return body
    }
}
