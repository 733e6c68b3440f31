import MyIMLink
import MyIMWire

/// Group chat: create (4 → 15, 16), invite (5 → 17, 16, 47), members (7 → 17), leave (45 → 47),
/// remove (46 → 17, 47) and group messages (6 type 1 → 8, 18 with `seq`).
///
/// Every operation is authorised by the session's user, never by a body field. Membership
/// and each member's joined-at sequence are cached in memory per group, so a message costs
/// one SQLite transaction and no Redis round trip whatever the group's size, and crosses
/// each endpoint's link once (``ToClient`` names every member session on that endpoint).
///
/// The cache is checked against the membership version the message was sequenced under:
/// when a change committed meanwhile (the actor suspends during every store call), the
/// member list is read again before the fan-out, and members who joined after the message
/// are skipped by their joined-at sequence. No member misses a live message, and none
/// receives one from before they joined.
extension Center {
    /// What the center keeps in memory of a group it has served.
    struct CachedGroup {
        var name: String
        var owner: String
        /// Member → joined-at sequence: a member receives only messages with a greater one.
        var members: [String: Int64]
        /// The store's membership version this list reflects.
        var version: Int64
    }

    /// Group messages waiting for their turn to be fanned out: every member must receive a
    /// group's messages in sequence order (their acknowledgement is a cursor), but two posts
    /// to one group finish their SQLite writes, and resume here, in any order.
    struct FanOutQueue {
        /// The sequence number to send next.
        var next: Int64
        var held: [Int64: (packet: Packet, version: Int64)] = [:]
        var sending = false
    }

    // MARK: - Requests

    func createGroup(_ request: CreateGroup, session: String, user: String) async throws {
        let name = try groupName(request.name)
        // Checked before any work on the list: a body may carry 65,536 entries.
        guard request.members.count < configuration.maxGroupMembers * 2 else {
            throw CenterRefusal(.groupFull, "a group has at most \(configuration.maxGroupMembers) members; \(request.members.count) were named")
        }
        var members: [String] = []
        var seen: Set<String> = [user]
        for raw in request.members {
            let address = try address(raw)
            if seen.insert(address).inserted { members.append(address) }
        }
        guard members.count + 1 <= configuration.maxGroupMembers else {
            throw CenterRefusal(.groupFull, "a group has at most \(configuration.maxGroupMembers) members, this one would have \(members.count + 1)")
        }
        try await requireAccounts(members)
        let group = try await store.createGroup(name: name, owner: user, members: members, now: configuration.clock())
        groupCache[group.id] = CachedGroup(
            name: name, owner: user, members: Dictionary(uniqueKeysWithValues: ([user] + members).map { ($0, 0) }), version: 0)
        fanOutQueues[group.id] = FanOutQueue(next: 1)
        await reply(GroupCreated(groupID: group.id, groupName: name), to: session)
        let added = AddedToGroup(groupID: group.id, groupName: name, by: user).packet
        await deliverToMembers(added, members: members)
        logger.info("group created", metadata: ["group": "\(group.id)", "owner": "\(user)", "members": "\(members.count + 1)"])
    }

    func invite(_ request: InviteToGroup, session: String, user: String) async throws {
        let group = try await requireMember(user, of: request.groupID)
        let invitee = try address(request.username)
        guard group.members[invitee] == nil else {
            throw CenterRefusal(.alreadyAMember, "\(invitee) is already a member of group \(request.groupID)")
        }
        guard group.members.count + 1 <= configuration.maxGroupMembers else {
            throw CenterRefusal(.groupFull, "group \(request.groupID) has \(configuration.maxGroupMembers) members, the most a group can have")
        }
        _ = try await existingUser(invitee)
        let joinedSeq = try await store.addMember(invitee, to: request.groupID, now: configuration.clock())
        // Read again: the change, and any other made while this request waited.
        groupCache[request.groupID] = nil
        guard joinedSeq != nil, let updated = try await cachedGroup(request.groupID) else { throw notAMember(request.groupID) }
        await reply(members(of: request.groupID, updated), to: session)
        await deliverToMembers(AddedToGroup(groupID: request.groupID, groupName: group.name, by: user).packet, members: [invitee])
        let notice = GroupNotice(
            groupID: request.groupID, groupName: group.name, kind: .joined, username: invitee, by: user, time: configuration.clock())
        await deliverToMembers(notice.packet, members: updated.members.keys.filter { $0 != user && $0 != invitee })
        logger.info("group member added", metadata: [
            "group": "\(request.groupID)", "member": "\(invitee)", "by": "\(user)", "joined_seq": "\(joinedSeq ?? 0)",
        ])
    }

    func groupMembers(_ request: GroupMembersQuery, session: String, user: String) async throws {
        let group = try await requireMember(user, of: request.groupID)
        await reply(members(of: request.groupID, group), to: session)
    }

    func leaveGroup(_ request: LeaveGroup, session: String, user: String) async throws {
        let group = try await requireMember(user, of: request.groupID)
        try await depart(user, from: request.groupID, group: group, kind: .left, by: nil)
    }

    func removeFromGroup(_ request: RemoveFromGroup, session: String, user: String) async throws {
        let group = try await requireMember(user, of: request.groupID)
        guard group.owner == user else {
            throw CenterRefusal(.notGroupOwner, "only the owner of group \(request.groupID) (\(group.owner)) removes members")
        }
        let member = try address(request.username)
        guard member != user else { throw CenterRefusal(.invalidField, "the owner leaves with 45 (leave group), not by removing themselves") }
        guard group.members[member] != nil else {
            throw CenterRefusal(.notAMember, "\(member) is not a member of group \(request.groupID)")
        }
        try await depart(member, from: request.groupID, group: group, kind: .removed, by: user)
        if let remaining = groupCache[request.groupID] { await reply(members(of: request.groupID, remaining), to: session) }
    }

    /// Takes `member` out of the group: they stop receiving at once and no longer hold back
    /// the cleanup; they and the remaining members hear of it (47).
    private func depart(_ member: String, from groupID: Int64, group: CachedGroup, kind: GroupNotice.Kind, by: String?) async throws {
        let departure = try await store.removeMember(member, from: groupID)
        groupCache[groupID] = nil
        guard departure.removed else { throw notAMember(groupID) }
        let remaining = try await cachedGroup(groupID) ?? CachedGroup(name: group.name, owner: group.owner, members: [:], version: 0)
        let notice = GroupNotice(groupID: groupID, groupName: group.name, kind: kind, username: member, by: by, time: configuration.clock())
        await deliverToMembers(notice.packet, members: [member] + remaining.members.keys.filter { $0 != member })
        logger.info("group member gone", metadata: [
            "group": "\(groupID)", "member": "\(member)", "kind": "\(kind.rawValue)",
            "new_owner": "\(departure.newOwner ?? "-")", "group_deleted": "\(departure.groupDeleted)",
        ])
    }

    // MARK: - Group messages (6 type 1 → 8, 18)

    func groupChat(_ chat: Chat, groupID: Int64, session: String, user: String) async throws {
        let group = try await requireMember(user, of: groupID)
        let now = configuration.clock()
        let senderID = userIDs[user] ?? 0
        let node = configuration.node
        let delivery = { @Sendable (id: Int64, time: Int64, seq: Int64?) in
            ChatDelivery(
                kind: .group, time: time, senderID: senderID, senderName: user, targetID: groupID, targetName: group.name,
                content: chat.content, serverMessageID: id, clientMessageID: chat.clientMessageID, qos: chat.qos, seq: seq,
                serverID: node)
        }
        switch chat.qos {
        case .atLeastOnce:
            switch try await store.post(to: groupID, sender: user, clientMessageID: chat.clientMessageID, now: now, makeDelivery: delivery) {
            case .notMember:
                groupCache[groupID] = nil
                throw notAMember(groupID)
            case .duplicate(let id, let time, let seq):
                await reply(ChatAccepted(clientMessageID: chat.clientMessageID, serverMessageID: id, time: time, seq: seq), to: session)
            case .stored(let id, let time, let seq, let version):
                await reply(ChatAccepted(clientMessageID: chat.clientMessageID, serverMessageID: id, time: time, seq: seq), to: session)
                await fanOutInOrder(delivery(id, time, seq).packet, groupID: groupID, seq: seq, version: version)
            }
        case .bestEffort:
            let id = try await store.allocateMessageID()
            await fanOut(delivery(id, now, nil).packet, groupID: groupID, seq: nil, version: nil)
        }
    }

    /// Fans out message `seq` of the group once every earlier one has gone.
    private func fanOutInOrder(_ packet: Packet, groupID: Int64, seq: Int64, version: Int64) async {
        var queue = fanOutQueues[groupID] ?? FanOutQueue(next: seq)
        guard seq >= queue.next else {
            // Sequenced before this process knew the group's position (it loaded it since): send now.
            await fanOut(packet, groupID: groupID, seq: seq, version: version)
            return
        }
        queue.held[seq] = (packet, version)
        fanOutQueues[groupID] = queue
        guard !queue.sending else { return }  // The task sending now will send this one in turn.
        fanOutQueues[groupID]?.sending = true
        while let next = fanOutQueues[groupID]?.next, let item = fanOutQueues[groupID]?.held.removeValue(forKey: next) {
            fanOutQueues[groupID]?.next = next + 1
            await fanOut(item.packet, groupID: groupID, seq: next, version: item.version)
        }
        fanOutQueues[groupID]?.sending = false
    }

    /// Sends a group message to every member online now whose joined-at sequence is below
    /// `seq`, one ``ToClient`` per endpoint. A member whose session is still being flushed is
    /// marked, and the flush picks the message up from the store. `version` is the membership
    /// version the message was sequenced under; an older cached list is read again first.
    private func fanOut(_ packet: Packet, groupID: Int64, seq: Int64?, version: Int64?) async {
        if let version, let cached = groupCache[groupID], cached.version < version { groupCache[groupID] = nil }
        guard let group = try? await cachedGroup(groupID) else { return }
        var byEndpoint: [String: [String]] = [:]
        for (member, joinedSeq) in group.members {
            if let seq, joinedSeq >= seq { continue }
            guard let sessionID = sessionByUser[member], let session = sessions[sessionID] else { continue }
            guard session.ready else {
                sessions[sessionID]?.missed = true
                continue
            }
            byEndpoint[session.endpoint, default: []].append(sessionID)
        }
        await send(packet, byEndpoint: byEndpoint)
    }

    /// Sends `packet` to those of `members` who are online, one ``ToClient`` per endpoint.
    private func deliverToMembers(_ packet: Packet, members: some Sequence<String>) async {
        var byEndpoint: [String: [String]] = [:]
        for member in members {
            guard let sessionID = sessionByUser[member], let session = sessions[sessionID] else { continue }
            byEndpoint[session.endpoint, default: []].append(sessionID)
        }
        await send(packet, byEndpoint: byEndpoint)
    }

    /// One ``ToClient`` per endpoint; a body going to more than one is encoded once.
    private func send(_ packet: Packet, byEndpoint: [String: [String]]) async {
        let packet = byEndpoint.count > 1 ? packet.encodingBody() : packet
        for (endpoint, sessionIDs) in byEndpoint {
            await send(packet, toSessions: sessionIDs, on: endpoint)
        }
    }

    // MARK: - Session open

    /// The user's groups for message 10, with where each one's backlog starts.
    func groupsAtOpen(of user: String) async throws -> [(entry: GroupEntry, after: Int64)] {
        try await store.groups(of: user).map { group, membership in
            (GroupEntry(groupName: group.name, groupID: group.id), membership.deliveredSeq)
        }
    }

    // MARK: - Housekeeping

    /// Deletes the group messages every member has and those past their retention; returns
    /// how many went.
    public func sweepGroupMessages() async throws -> Int {
        let removed = try await store.sweepGroupMessages(expiredBefore: configuration.clock() - configuration.groupMessageRetention)
        logger.info("swept group messages", metadata: ["removed": "\(removed)"])
        return removed
    }

    func groupSweepLoop() async throws {
        while !Task.isCancelled {
            try await Task.sleep(for: configuration.groupSweepInterval)
            do { _ = try await sweepGroupMessages() } catch {
                logger.error("group message sweep failed", metadata: ["error": "\(error)"])
            }
        }
    }

    // MARK: - Helpers

    private func groupName(_ raw: String) throws(CenterRefusal) -> String {
        let name = raw.trimmingCharacters(in: .whitespaces)
        guard !name.isEmpty, name.utf8.count <= configuration.maxGroupNameBytes else {
            throw CenterRefusal(.invalidGroupName, "a group name is 1 to \(configuration.maxGroupNameBytes) bytes of UTF-8, not \(name.utf8.count)")
        }
        guard !name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw CenterRefusal(.invalidGroupName, "a group name has no control characters")
        }
        return name
    }

    /// Every address has an account (known here, or per the directory); else 332 naming
    /// those that have none.
    private func requireAccounts(_ addresses: [String]) async throws {
        var unknown: [String] = []
        for address in addresses where userIDs[address] == nil {
            if let stored = try await store.userID(of: address), stored != 0 {
                userIDs[address] = stored
            } else {
                unknown.append(address)
            }
        }
        guard !unknown.isEmpty else { return }
        let found: [String: Int64]
        do {
            found = try await configuration.directory.lookup(unknown)
        } catch {
            throw CenterRefusal(.directoryUnavailable, "cannot check the members' accounts: \(error.message); try again shortly")
        }
        let missing = unknown.filter { found[$0] == nil }
        guard missing.isEmpty else {
            throw CenterRefusal(.unknownRecipient, "there is no user \(missing.sorted().joined(separator: ", "))")
        }
        for (address, id) in found {
            try await store.remember(user: address, userID: id)
            userIDs[address] = id
        }
    }

    /// The group, if `user` is a member; 335 otherwise (an unknown group gets the same
    /// answer, so that group ids cannot be probed).
    private func requireMember(_ user: String, of groupID: Int64) async throws -> CachedGroup {
        guard let group = try await cachedGroup(groupID), group.members[user] != nil else { throw notAMember(groupID) }
        return group
    }

    private func cachedGroup(_ groupID: Int64) async throws -> CachedGroup? {
        if let cached = groupCache[groupID] { return cached }
        guard let (stored, members) = try await store.groupWithMembers(groupID) else { return nil }
        let group = CachedGroup(
            name: stored.name, owner: stored.owner, members: Dictionary(uniqueKeysWithValues: members.map { ($0.address, $0.joinedSeq) }),
            version: stored.memberVersion)
        // Another request may have loaded a newer state while this one read: keep the newest.
        if let newer = groupCache[groupID], newer.version >= group.version { return newer }
        if groupCache.count >= configuration.groupCacheLimit { groupCache.removeAll(keepingCapacity: true) }
        groupCache[groupID] = group
        if fanOutQueues[groupID] == nil { fanOutQueues[groupID] = FanOutQueue(next: stored.maxSeq + 1) }
        return group
    }

    private func members(of groupID: Int64, _ group: CachedGroup) -> GroupMembers {
        GroupMembers(groupID: groupID, number: Int64(group.members.count), members: group.members.keys.sorted())
    }

    private func notAMember(_ groupID: Int64) -> CenterRefusal {
        CenterRefusal(.notAMember, "you are not a member of group \(groupID)")
    }
}
