// Groups (4, 5, 7, 15, 16, 17, 45–47), as docs/PROTOCOL.md (section 7) describes.

/// One element of 10's `groups`.
public struct GroupEntry: Hashable, Sendable {
    public var groupName: String
    public var groupID: Int64

    public init(groupName: String, groupID: Int64) {
        self.groupName = groupName
        self.groupID = groupID
    }

    public init(dict: WireDict) throws(WireError) {
        groupName = try dict.string("group_name")
        groupID = try dict.int("group_id")
    }

    public var dict: WireDict { ["group_name": .string(groupName), "group_id": .int(groupID)] }
}

/// 4, client → server: create a group.
public struct CreateGroup: WireMessage {
    public static let messageType = MessageType.createGroup
    public var name: String
    /// Addresses to add, besides the creator.
    public var members: [String]
    /// Member count, per seed 000; ignored by servers.
    public var number: Int64?
    /// Ignored by servers.
    public var from: String?

    public init(name: String, members: [String], number: Int64? = nil, from: String? = nil) {
        self.name = name
        self.members = members
        self.number = number
        self.from = from
    }

    public init(body: WireDict) throws(WireError) {
        name = try body.string("name")
        members = try body.stringList("members")
        number = try body.optionalInt("number")
        from = try body.optionalString("from")
    }

    public var body: WireDict {
        var body: WireDict = ["name": .string(name), "members": .list(members.map(WireValue.string))]
        body["number"] = number.map(WireValue.int)
        body["from"] = from.map(WireValue.string)
        return body
    }
}

/// 5, client → server: add a user to a group.
public struct InviteToGroup: WireMessage {
    public static let messageType = MessageType.inviteToGroup
    public var groupID: Int64
    /// The invitee's address.
    public var username: String

    public init(groupID: Int64, username: String) {
        self.groupID = groupID
        self.username = username
    }

    public init(body: WireDict) throws(WireError) {
        groupID = try body.int("group_id")
        username = try body.string("username")
    }

    public var body: WireDict { ["group_id": .int(groupID), "username": .string(username)] }
}

/// 7, client → server: ask for a group's members; the server answers with 17.
public struct GroupMembersQuery: WireMessage {
    public static let messageType = MessageType.groupMembersQuery
    public var groupID: Int64

    public init(groupID: Int64) { self.groupID = groupID }

    public init(body: WireDict) throws(WireError) {
        groupID = try body.int("group_id")
    }

    public var body: WireDict { ["group_id": .int(groupID)] }
}

/// 15, server → client: the group asked for with 4 was created.
public struct GroupCreated: WireMessage {
    public static let messageType = MessageType.groupCreated
    public var groupID: Int64
    public var groupName: String

    public init(groupID: Int64, groupName: String) {
        self.groupID = groupID
        self.groupName = groupName
    }

    public init(body: WireDict) throws(WireError) {
        groupID = try body.int("group_id")
        groupName = try body.string("group_name")
    }

    public var body: WireDict { ["group_id": .int(groupID), "group_name": .string(groupName)] }
}

/// 16, server → client: the client was added to a group; it answers with 7.
public struct AddedToGroup: WireMessage {
    public static let messageType = MessageType.addedToGroup
    public var groupID: Int64
    public var groupName: String
    /// The address of who added the client.
    public var by: String?

    public init(groupID: Int64, groupName: String, by: String? = nil) {
        self.groupID = groupID
        self.groupName = groupName
        self.by = by
    }

    public init(body: WireDict) throws(WireError) {
        groupID = try body.int("group_id")
        groupName = try body.string("group_name")
        by = try body.optionalString("by")
    }

    public var body: WireDict {
        var body: WireDict = ["group_id": .int(groupID), "group_name": .string(groupName)]
        body["by"] = by.map(WireValue.string)
        return body
    }
}

/// 17, server → client: a group's members, the answer to 7.
public struct GroupMembers: WireMessage {
    public static let messageType = MessageType.groupMembers
    public var groupID: Int64
    /// Member count.
    public var number: Int64
    /// Addresses.
    public var members: [String]

    public init(groupID: Int64, number: Int64, members: [String]) {
        self.groupID = groupID
        self.number = number
        self.members = members
    }

    public init(body: WireDict) throws(WireError) {
        groupID = try body.int("group_id")
        number = try body.int("number")
        members = try body.stringList("members")
    }

    public var body: WireDict {
        ["group_id": .int(groupID), "number": .int(number), "members": .list(members.map(WireValue.string))]
    }
}

/// 45, client → server: leave a group. The server answers with 47 (`left`, the client's own
/// address) and tells the other members the same.
public struct LeaveGroup: WireMessage {
    public static let messageType = MessageType.leaveGroup
    public var groupID: Int64

    public init(groupID: Int64) { self.groupID = groupID }

    public init(body: WireDict) throws(WireError) {
        groupID = try body.int("group_id")
    }

    public var body: WireDict { ["group_id": .int(groupID)] }
}

/// 46, client → server: the group's owner removes a member. The server answers with 17 (the
/// members left); the removed member and the others get 47 (`removed`).
public struct RemoveFromGroup: WireMessage {
    public static let messageType = MessageType.removeFromGroup
    public var groupID: Int64
    /// The member's address.
    public var username: String

    public init(groupID: Int64, username: String) {
        self.groupID = groupID
        self.username = username
    }

    public init(body: WireDict) throws(WireError) {
        groupID = try body.int("group_id")
        username = try body.string("username")
    }

    public var body: WireDict { ["group_id": .int(groupID), "username": .string(username)] }
}

/// 47, server → client: a group's membership changed.
public struct GroupNotice: WireMessage {
    public static let messageType = MessageType.groupNotice

    public enum Kind: String, Sendable, CaseIterable {
        /// `username` joined (invited by `by`).
        case joined
        /// `username` left.
        case left
        /// `username` was removed by `by` (the owner).
        case removed
    }

    public var groupID: Int64
    public var groupName: String
    public var kind: Kind
    /// Whom it is about.
    public var username: String
    /// Who did it, for `joined` and `removed`.
    public var by: String?
    public var time: Int64

    public init(groupID: Int64, groupName: String, kind: Kind, username: String, by: String? = nil, time: Int64) {
        self.groupID = groupID
        self.groupName = groupName
        self.kind = kind
        self.username = username
        self.by = by
        self.time = time
    }

    public init(body: WireDict) throws(WireError) {
        groupID = try body.int("group_id")
        groupName = try body.string("group_name")
        let kind = try body.string("kind")
        guard let parsed = Kind(rawValue: kind) else {
            throw WireError.invalidField("kind", "'\(kind.prefix(32))' is not joined, left or removed")
        }
        self.kind = parsed
        username = try body.string("username")
        by = try body.optionalString("by")
        time = try body.int("time")
    }

    public var body: WireDict {
        var body: WireDict = [
            "group_id": .int(groupID), "group_name": .string(groupName), "kind": .string(kind.rawValue),
            "username": .string(username), "time": .int(time),
        ]
        body["by"] = by.map(WireValue.string)
        return body
    }
}
