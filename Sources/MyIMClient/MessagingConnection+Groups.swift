import Foundation
import MyIMWire

// Groups (4 → 15, 5 → 17, 7 → 17, 45 → 47, 46 → 17, and 6 to a group), as docs/PROTOCOL.md
// (sections 7.2 and 7.3) describes.
extension MessagingConnection {
    /// The user's groups as far as this session knows: those of ``initialState`` (10), plus
    /// the ones created (15) or joined (16) since, minus the ones left or removed from (47).
    public nonisolated var groups: [GroupEntry] { router.groups }

    /// The group `reference` names among ``groups``; see ``findGroup(_:in:)``.
    public nonisolated func group(_ reference: String) throws(ClientError) -> GroupEntry {
        try Self.findGroup(reference, in: groups)
    }

    /// The group `reference` names: a decimal id (one not among `groups` is taken as it is,
    /// named by its id, and left to the server to accept), or a group name, with or without
    /// a leading `#` (`#42` is the group named "42"). A name matches exactly, else ignoring
    /// case.
    ///
    /// - Throws: ``ClientError`` 335 when no group has the name, 118 when several have it
    ///   (the message lists their ids) or the reference is empty.
    public static func findGroup(_ reference: String, in groups: [GroupEntry]) throws(ClientError) -> GroupEntry {
        var name = reference.trimmingWhitespace()
        if name.hasPrefix("#") {
            name.removeFirst()
        } else if let id = Int64(name) {
            return groups.first { $0.groupID == id } ?? GroupEntry(groupName: name, groupID: id)
        }
        guard !name.isEmpty else { throw ClientError(.invalidField, "give a group id or name") }
        var matches = groups.filter { $0.groupName == name }
        if matches.isEmpty { matches = groups.filter { $0.groupName.lowercased() == name.lowercased() } }
        switch matches.count {
        case 1:
            return matches[0]
        case 0:
            let known = groups.prefix(10).map { "\($0.groupName) (\($0.groupID))" }.joined(separator: ", ")
            let hint = groups.isEmpty ? "you are in no group yet" : "yours: \(known)\(groups.count > 10 ? ", …" : "")"
            throw ClientError(.notAMember, "you are in no group named '\(name)' (\(hint)); give the group's name or id")
        default:
            let ids = matches.map { String($0.groupID) }.joined(separator: ", ")
            throw ClientError(.invalidField, "'\(name)' names \(matches.count) of your groups (ids \(ids)); give the id instead")
        }
    }

    /// Creates a group named `name` with `members` besides the user (4 → 15; bare names are in
    /// the user's domain). Members who are online get 16.
    ///
    /// - Throws: ``ClientError`` with the server's code and message: 332 naming the addresses
    ///   without an account, 336 for too many members, 337 for an invalid name.
    public func createGroup(name: String, members: [String]) async throws(ClientError) -> GroupCreated {
        let create = CreateGroup(name: name, members: members.map { qualified($0) })
        let reply = try await request(create.packet, awaiting: .message(MessageType.groupCreated.rawValue), timeout: nil)
        return try decode(GroupCreated.self, from: reply)
    }

    /// Adds `user` to the group `groupID` (5; a bare name is in the user's domain).
    ///
    /// - Returns: the members after (17). The invitee gets 16, the other members 47 `joined`.
    /// - Throws: ``ClientError`` 335 (the user is not a member), 332, 339 (already a member), 336.
    public func invite(_ user: String, to groupID: Int64) async throws(ClientError) -> GroupMembers {
        let invite = InviteToGroup(groupID: groupID, username: qualified(user))
        let reply = try await request(invite.packet, awaiting: .groupMembers(groupID), timeout: nil)
        return try decode(GroupMembers.self, from: reply)
    }

    /// The members of the group `groupID` (7 → 17).
    ///
    /// - Throws: ``ClientError`` 335 when the user is not a member.
    public func members(of groupID: Int64) async throws(ClientError) -> GroupMembers {
        let reply = try await request(GroupMembersQuery(groupID: groupID).packet, awaiting: .groupMembers(groupID), timeout: nil)
        return try decode(GroupMembers.self, from: reply)
    }

    /// Leaves the group `groupID` (45).
    ///
    /// - Returns: the server's 47 `left` naming the user; the other members get the same.
    /// - Throws: ``ClientError`` 335 when the user is not a member.
    @discardableResult
    public func leave(_ groupID: Int64) async throws(ClientError) -> GroupNotice {
        let reply = try await request(LeaveGroup(groupID: groupID).packet, awaiting: .groupLeft(groupID), timeout: nil)
        return try decode(GroupNotice.self, from: reply)
    }

    /// Removes `user` from the group `groupID`, which the user owns (46; a bare name is in the
    /// user's domain).
    ///
    /// - Returns: the members after (17). The removed member and the others get 47 `removed`.
    /// - Throws: ``ClientError`` 338 when the user is not the owner, 335 when `user` is not a member.
    @discardableResult
    public func remove(_ user: String, from groupID: Int64) async throws(ClientError) -> GroupMembers {
        let remove = RemoveFromGroup(groupID: groupID, username: qualified(user))
        let reply = try await request(remove.packet, awaiting: .groupMembers(groupID), timeout: nil)
        return try decode(GroupMembers.self, from: reply)
    }

    /// Sends `text` to the group `groupID`; every online member, the user included, gets it
    /// (18 with the group's `seq`). Returns the 8 (with `seq`), or for QoS 0 the user's copy.
    @discardableResult
    public func send(text: String, toGroup groupID: Int64, qos: QoS = .atLeastOnce) async throws(ClientError) -> ChatAccepted {
        try await send(.text(text), to: .group(groupID), qos: qos)
    }

    /// Sends an image (at most ``MessagingOptions/maxImageBytes``) to the group `groupID`.
    @discardableResult
    public func send(image: [UInt8], mime: String?, toGroup groupID: Int64, qos: QoS = .atLeastOnce) async throws(ClientError) -> ChatAccepted {
        try await send(.image(bytes: image, mime: mime), to: .group(groupID), qos: qos)
    }
}
