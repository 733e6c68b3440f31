import Foundation
import MyIMCenter
import MyIMLink
import MyIMWire
import Testing

extension FakeEndpoint {
    /// The next `ToClient` carrying a message of `type` (the whole link message, so that a
    /// test can see which sessions one crossing of the link served).
    func toClient(_ type: MessageType) async throws -> ToClient {
        let packet = try await next { packet in
            guard packet.type == LinkMessageType.toClient.rawValue, let message = try? ToClient(packet: packet) else { return false }
            return message.payload.type == type.rawValue
        }
        return try ToClient(packet: packet)
    }

    /// Sends a group message as `session` and returns the center's 8.
    @discardableResult
    func post(_ text: String, to group: Int64, session: String, id: String? = nil) async throws -> ChatAccepted {
        let clientID = id ?? "\(session)-\(text)"
        try await request(Chat(target: .group(group), content: .text(text), clientMessageID: clientID), session: session)
        let accepted = try ChatAccepted(packet: try await next { packet in
            guard let message = try? ToClient(packet: packet), message.sessions == [session],
                  message.payload.type == MessageType.chatAccepted.rawValue
            else { return false }
            return (try? ChatAccepted(packet: message.payload))?.clientMessageID == clientID
        }.payloadOfToClient())
        return accepted
    }

    /// The 20 the center answered `session` with.
    func refusal(for session: String) async throws -> ErrorMessage {
        try ErrorMessage(packet: try await delivery(for: session, type: .error))
    }

    /// The group chat deliveries (18, type 1) for `session`, `count` of them, in arrival order.
    func groupDeliveries(_ count: Int, for session: String) async throws -> [ChatDelivery] {
        var deliveries: [ChatDelivery] = []
        while deliveries.count < count {
            let delivery = try ChatDelivery(packet: try await delivery(for: session, type: .chatDelivery))
            if delivery.kind == .group { deliveries.append(delivery) }
        }
        return deliveries
    }
}

extension Packet {
    fileprivate func payloadOfToClient() throws -> Packet { try ToClient(packet: self).payload }
}

/// Groups through a real center: fake endpoints on real link sockets, a real SQLite file.
@Suite("Center groups", .timeLimit(.minutes(1)))
struct CenterGroupTests {
    private func withCenter(
        clock: CenterClock = CenterClock(), configure: (inout CenterConfiguration) -> Void = { _ in },
        _ body: (TestCenter) async throws -> Void
    ) async throws {
        let center = try await TestCenter.start(clock: clock, configure: configure)
        do { try await body(center) } catch {
            await center.stop()
            center.remove()
            throw error
        }
        await center.stop()
        center.remove()
    }

    /// alice creates `name` with `members`; returns the group id from 15.
    private func create(_ name: String, members: [String], on endpoint: FakeEndpoint, session: String) async throws -> Int64 {
        try await endpoint.request(CreateGroup(name: name, members: members), session: session)
        let created = try GroupCreated(packet: try await endpoint.delivery(for: session, type: .groupCreated))
        #expect(created.groupName == name)
        return created.groupID
    }

    @Test func aGroupAcrossTwoEndpointsCreatesInvitesListsAndFansOutOncePerEndpoint() async throws {
        try await withCenter { center in
            try await FakeEndpoint.with("ep1", port: center.port) { ep1 in
                try await FakeEndpoint.with("ep2", port: center.port) { ep2 in
                    _ = try await ep1.open("alice@alpha.example", session: "ep1:1", userID: 1)
                    _ = try await ep2.open("bob@alpha.example", session: "ep2:1", userID: 2)
                    _ = try await ep2.open("carol@alpha.example", session: "ep2:2", userID: 3)

                    // A forged creator in the body is ignored: alice's session owns the group.
                    var create = CreateGroup(name: "climbers", members: ["bob@alpha.example"], from: "mallory@alpha.example").packet
                    create.body["owner"] = .string("mallory@alpha.example")
                    try await ep1.send(FromClient(session: "ep1:1", payload: create))
                    let created = try GroupCreated(packet: try await ep1.delivery(for: "ep1:1", type: .groupCreated))
                    let group = created.groupID
                    let added = try AddedToGroup(packet: try await ep2.delivery(for: "ep2:1", type: .addedToGroup))
                    #expect(added == AddedToGroup(groupID: group, groupName: "climbers", by: "alice@alpha.example"))

                    try await ep2.request(GroupMembersQuery(groupID: group), session: "ep2:1")
                    let members = try GroupMembers(packet: try await ep2.delivery(for: "ep2:1", type: .groupMembers))
                    #expect(members.members == ["alice@alpha.example", "bob@alpha.example"] && members.number == 2)

                    try await ep1.request(InviteToGroup(groupID: group, username: "carol@alpha.example"), session: "ep1:1")
                    let after = try GroupMembers(packet: try await ep1.delivery(for: "ep1:1", type: .groupMembers))
                    #expect(after.members == ["alice@alpha.example", "bob@alpha.example", "carol@alpha.example"])
                    #expect(try AddedToGroup(packet: try await ep2.delivery(for: "ep2:2", type: .addedToGroup)).groupID == group)
                    let joined = try GroupNotice(packet: try await ep2.delivery(for: "ep2:1", type: .groupNotice))
                    #expect(joined.kind == .joined && joined.username == "carol@alpha.example" && joined.by == "alice@alpha.example")

                    let accepted = try await ep1.post("on the wall at six", to: group, session: "ep1:1")
                    #expect(accepted.seq == 1)
                    // bob and carol are both on ep2: one link message names both sessions.
                    let fanned = try await ep2.toClient(.chatDelivery)
                    #expect(Set(fanned.sessions) == ["ep2:1", "ep2:2"])
                    let delivery = try ChatDelivery(packet: fanned.payload)
                    #expect(delivery.kind == .group && delivery.targetID == group && delivery.targetName == "climbers")
                    #expect(delivery.senderName == "alice@alpha.example" && delivery.seq == 1)
                    #expect(delivery.serverMessageID == accepted.serverMessageID)
                    let copy = try await ep1.groupDeliveries(1, for: "ep1:1")
                    #expect(copy.first?.seq == 1, "the sender gets 18 too")
                    #expect(try await center.center.store.groupMessageCount() == 1, "stored once, not once per member")
                }
            }
        }
    }

    @Test func postsFromManySendersReachEveryMemberInSequenceOrder() async throws {
        try await withCenter { center in
            try await FakeEndpoint.with("ep1", port: center.port) { ep1 in
                try await FakeEndpoint.with("ep2", port: center.port) { ep2 in
                    _ = try await ep1.open("alice@alpha.example", session: "ep1:1")
                    _ = try await ep1.open("bob@alpha.example", session: "ep1:2")
                    _ = try await ep2.open("carol@alpha.example", session: "ep2:1")
                    let group = try await create("busy", members: ["bob@alpha.example", "carol@alpha.example"], on: ep1, session: "ep1:1")
                    // Both senders' posts in flight at once: their SQLite writes finish in any order.
                    for index in 0..<40 {
                        for session in ["ep1:1", "ep1:2"] {
                            let chat = Chat(target: .group(group), content: .text("\(session) \(index)"), clientMessageID: "\(session)-\(index)")
                            try await ep1.request(chat, session: session)
                        }
                    }
                    let received = try await ep2.groupDeliveries(80, for: "ep2:1")
                    #expect(received.map(\.seq) == (1...80).map { Optional(Int64($0)) }, "carol's cursor ack is only safe if seqs come in order")
                }
            }
        }
    }

    @Test func anOfflineMemberGetsEveryMessageInOrderAtLoginAndAcksThemAway() async throws {
        try await withCenter { center in
            try await FakeEndpoint.with("ep1", port: center.port) { ep1 in
                _ = try await ep1.open("alice@alpha.example", session: "ep1:1")
                let group = try await create("night owls", members: ["bob@alpha.example"], on: ep1, session: "ep1:1")
                for text in ["one", "two", "three"] { try await ep1.post(text, to: group, session: "ep1:1") }

                let initial = try await ep1.open("bob@alpha.example", session: "ep1:2")
                #expect(initial.groups == [GroupEntry(groupName: "night owls", groupID: group)])
                let backlog = try await ep1.groupDeliveries(3, for: "ep1:2")
                #expect(backlog.map(\.seq) == [1, 2, 3])
                #expect(backlog.map(\.content) == [.text("one"), .text("two"), .text("three")])

                try await ep1.request(DeliveryAck(groups: [GroupCursor(groupID: group, seq: 3)]), session: "ep1:2")
                try await ep1.send(SessionClose(session: "ep1:2", reason: "test"))
                _ = try await ep1.open("bob@alpha.example", session: "ep1:3")
                try await ep1.post("four", to: group, session: "ep1:1")
                let next = try await ep1.groupDeliveries(1, for: "ep1:3")
                #expect(next.map(\.seq) == [4], "nothing acknowledged comes again")
            }
        }
    }

    @Test func aMemberAddedAfterMessageNGetsNPlusOneOnwardAndNeverN() async throws {
        try await withCenter { center in
            try await FakeEndpoint.with("ep1", port: center.port) { ep1 in
                _ = try await ep1.open("alice@alpha.example", session: "ep1:1")
                let group = try await create("boundary", members: [], on: ep1, session: "ep1:1")
                try await ep1.post("m1", to: group, session: "ep1:1")
                try await ep1.post("m2", to: group, session: "ep1:1")  // N = 2

                // dave joins while online, erin while offline: both at joined-at sequence 2.
                _ = try await ep1.open("dave@alpha.example", session: "ep1:2")
                for invitee in ["dave@alpha.example", "erin@alpha.example"] {
                    try await ep1.request(InviteToGroup(groupID: group, username: invitee), session: "ep1:1")
                    _ = try await ep1.delivery(for: "ep1:1", type: .groupMembers)
                }
                try await ep1.post("m3", to: group, session: "ep1:1")
                #expect(try await ep1.groupDeliveries(1, for: "ep1:2").map(\.seq) == [3])

                // At login (erin) or at a new login without acks (dave): 3, never 1 or 2.
                try await ep1.send(SessionClose(session: "ep1:2", reason: "test"))
                _ = try await ep1.open("dave@alpha.example", session: "ep1:3")
                _ = try await ep1.open("erin@alpha.example", session: "ep1:4")
                try await ep1.post("m4", to: group, session: "ep1:1")
                #expect(try await ep1.groupDeliveries(2, for: "ep1:3").map(\.seq) == [3, 4])
                #expect(try await ep1.groupDeliveries(2, for: "ep1:4").map(\.seq) == [3, 4])
                #expect(try await center.center.store.members(of: group).first { $0.address == "erin@alpha.example" }?.joinedSeq == 2)
            }
        }
    }

    @Test func nonMembersCannotPostInviteListLeaveOrRemove() async throws {
        try await withCenter { center in
            try await FakeEndpoint.with("ep1", port: center.port) { ep1 in
                _ = try await ep1.open("alice@alpha.example", session: "ep1:1")
                _ = try await ep1.open("mallory@alpha.example", session: "ep1:2")
                _ = try await ep1.open("bob@alpha.example", session: "ep1:3")
                let group = try await create("private", members: ["bob@alpha.example"], on: ep1, session: "ep1:1")

                let requests: [any WireMessage] = [
                    Chat(target: .group(group), content: .text("let me in"), clientMessageID: "x1"),
                    InviteToGroup(groupID: group, username: "mallory@alpha.example"),
                    GroupMembersQuery(groupID: group),
                    LeaveGroup(groupID: group),
                    RemoveFromGroup(groupID: group, username: "bob@alpha.example"),
                    GroupMembersQuery(groupID: 9_999),  // no such group: the same answer
                ]
                for request in requests {
                    try await ep1.send(FromClient(session: "ep1:2", payload: request.packet))
                    let refusal = try await ep1.refusal(for: "ep1:2")
                    #expect(refusal.code == .notAMember, "\(type(of: request))")
                }
                // A member who is not the owner cannot remove anyone.
                try await ep1.request(RemoveFromGroup(groupID: group, username: "alice@alpha.example"), session: "ep1:3")
                #expect(try await ep1.refusal(for: "ep1:3").code == .notGroupOwner)
                #expect(try await center.center.store.groupMessageCount() == 0)
                #expect(try await center.center.store.members(of: group).map(\.address) == ["alice@alpha.example", "bob@alpha.example"])
            }
        }
    }

    @Test func aRetriedGroupSendIsAcceptedAgainButDeliveredOnce() async throws {
        try await withCenter { center in
            try await FakeEndpoint.with("ep1", port: center.port) { ep1 in
                _ = try await ep1.open("alice@alpha.example", session: "ep1:1")
                _ = try await ep1.open("bob@alpha.example", session: "ep1:2")
                let group = try await create("once", members: ["bob@alpha.example"], on: ep1, session: "ep1:1")
                let first = try await ep1.post("hello", to: group, session: "ep1:1", id: "same-id")
                let second = try await ep1.post("hello", to: group, session: "ep1:1", id: "same-id")
                #expect(second == first)
                try await ep1.post("marker", to: group, session: "ep1:1")
                let received = try await ep1.groupDeliveries(2, for: "ep1:2")
                #expect(received.map(\.content) == [.text("hello"), .text("marker")])
                #expect(received.map(\.seq) == [1, 2])
                #expect(try await center.center.store.groupMessageCount() == 2)
            }
        }
    }

    @Test func messagesGoOnceEveryMemberHasThemOrWhenTheyExpire() async throws {
        let clock = CenterClock()
        try await withCenter(clock: clock) { center in
            try await FakeEndpoint.with("ep1", port: center.port) { ep1 in
                _ = try await ep1.open("alice@alpha.example", session: "ep1:1")
                let group = try await create("sweep", members: ["bob@alpha.example", "carol@alpha.example"], on: ep1, session: "ep1:1")
                try await ep1.post("a", to: group, session: "ep1:1")
                try await ep1.post("b", to: group, session: "ep1:1")
                #expect(try await center.center.sweepGroupMessages() == 0, "bob and carol have nothing yet")

                _ = try await ep1.open("bob@alpha.example", session: "ep1:2")
                _ = try await ep1.open("carol@alpha.example", session: "ep1:3")
                _ = try await ep1.groupDeliveries(2, for: "ep1:2")
                _ = try await ep1.groupDeliveries(2, for: "ep1:3")
                try await ep1.request(DeliveryAck(groups: [GroupCursor(groupID: group, seq: 2)]), session: "ep1:2")
                try await ep1.request(DeliveryAck(groups: [GroupCursor(groupID: group, seq: 1)]), session: "ep1:3")
                try await expectEventually {
                    try await center.center.store.members(of: group).map(\.deliveredSeq) == [2, 2, 1]
                }
                #expect(try await center.center.sweepGroupMessages() == 1, "only a: carol has not acknowledged b")
                // An ack beyond the last message moves the cursor to the last message only.
                try await ep1.request(DeliveryAck(groups: [GroupCursor(groupID: group, seq: 99)]), session: "ep1:3")
                try await expectEventually { try await center.center.store.members(of: group).map(\.deliveredSeq) == [2, 2, 2] }
                #expect(try await center.center.sweepGroupMessages() == 1)

                // Unacknowledged, but past the retention (7 days by default).
                try await ep1.post("c", to: group, session: "ep1:1")
                #expect(try await center.center.sweepGroupMessages() == 0)
                clock.advance(7 * 24 * 3_600_000 + 1)
                #expect(try await center.center.sweepGroupMessages() == 1)
                #expect(try await center.center.store.groupMessageCount() == 0)
            }
        }
    }

    @Test func aMemberWhoLeavesStopsReceivingAndHoldsNothingBack() async throws {
        try await withCenter { center in
            try await FakeEndpoint.with("ep1", port: center.port) { ep1 in
                _ = try await ep1.open("alice@alpha.example", session: "ep1:1")
                _ = try await ep1.open("bob@alpha.example", session: "ep1:2")
                _ = try await ep1.open("carol@alpha.example", session: "ep1:3")
                let group = try await create("leavers", members: ["bob@alpha.example", "carol@alpha.example"], on: ep1, session: "ep1:1")
                for session in ["ep1:2", "ep1:3"] { _ = try await ep1.delivery(for: session, type: .addedToGroup) }

                try await ep1.request(LeaveGroup(groupID: group), session: "ep1:3")
                let own = try GroupNotice(packet: try await ep1.delivery(for: "ep1:3", type: .groupNotice))
                #expect(own.kind == .left && own.username == "carol@alpha.example")
                for session in ["ep1:1", "ep1:2"] {
                    let told = try GroupNotice(packet: try await ep1.delivery(for: session, type: .groupNotice))
                    #expect(told.kind == .left && told.username == "carol@alpha.example")
                }

                try await ep1.post("after carol", to: group, session: "ep1:1")
                _ = try await ep1.groupDeliveries(1, for: "ep1:2")
                try await ep1.request(DeliveryAck(groups: [GroupCursor(groupID: group, seq: 1)]), session: "ep1:2")
                try await expectEventually { try await center.center.store.members(of: group).allSatisfy { $0.deliveredSeq == 1 } }
                #expect(try await center.center.sweepGroupMessages() == 1, "carol's missing ack holds nothing back")
                // Carol got nothing: the next thing for her session is a message she asks for.
                try await ep1.request(GroupMembersQuery(groupID: group), session: "ep1:3")
                let next = try await ep1.delivery(for: "ep1:3")
                #expect(next.type == MessageType.error.rawValue)

                // The owner leaves: the longest-standing member owns the group and may remove.
                try await ep1.request(LeaveGroup(groupID: group), session: "ep1:1")
                let gone = try GroupNotice(packet: try await ep1.delivery(for: "ep1:1", type: .groupNotice))
                #expect(gone.kind == .left && gone.username == "alice@alpha.example")
                #expect(try await center.center.store.group(group)?.owner == "bob@alpha.example")
            }
        }
    }

    @Test func theOwnerRemovesAMemberAndEveryoneHears() async throws {
        try await withCenter { center in
            try await FakeEndpoint.with("ep1", port: center.port) { ep1 in
                _ = try await ep1.open("alice@alpha.example", session: "ep1:1")
                _ = try await ep1.open("bob@alpha.example", session: "ep1:2")
                _ = try await ep1.open("mallory@alpha.example", session: "ep1:3")
                let group = try await create("moderated", members: ["bob@alpha.example", "mallory@alpha.example"], on: ep1, session: "ep1:1")
                try await ep1.request(RemoveFromGroup(groupID: group, username: "mallory@alpha.example"), session: "ep1:1")
                let members = try GroupMembers(packet: try await ep1.delivery(for: "ep1:1", type: .groupMembers))
                #expect(members.members == ["alice@alpha.example", "bob@alpha.example"])
                for session in ["ep1:2", "ep1:3"] {
                    let notice = try GroupNotice(packet: try await ep1.delivery(for: session, type: .groupNotice))
                    #expect(notice.kind == .removed && notice.username == "mallory@alpha.example" && notice.by == "alice@alpha.example")
                }
                try await ep1.request(Chat(target: .group(group), content: .text("still here?"), clientMessageID: "m1"), session: "ep1:3")
                #expect(try await ep1.refusal(for: "ep1:3").code == .notAMember)
            }
        }
    }

    @Test func limitsOnNamesSizesAndMembersEachHaveTheirCode() async throws {
        try await withCenter(configure: { $0.maxGroupMembers = 3 }) { center in
            try await FakeEndpoint.with("ep1", port: center.port) { ep1 in
                _ = try await ep1.open("alice@alpha.example", session: "ep1:1")
                let cases: [(CreateGroup, ErrorCode)] = [
                    (CreateGroup(name: "", members: []), .invalidGroupName),
                    (CreateGroup(name: String(repeating: "x", count: 65), members: []), .invalidGroupName),
                    (CreateGroup(name: "tab\there", members: []), .invalidGroupName),
                    (CreateGroup(name: "big", members: ["bob@alpha.example", "carol@alpha.example", "dave@alpha.example"]), .groupFull),
                    (CreateGroup(name: "ghosts", members: ["bob@alpha.example", "nobody@alpha.example"]), .unknownRecipient),
                    // A list far past the limit is refused before it is read, even if it repeats one name.
                    (CreateGroup(name: "flood", members: Array(repeating: "bob@alpha.example", count: 60_000)), .groupFull),
                    (CreateGroup(name: "abroad", members: ["bob@beta.example"]), .unknownRecipient),
                ]
                for (request, code) in cases {
                    try await ep1.request(request, session: "ep1:1")
                    let refusal = try await ep1.refusal(for: "ep1:1")
                    #expect(refusal.code == code, "\(request.name.prefix(10)): \(refusal.data)")
                }
                #expect(try await center.center.store.groups(of: "alice@alpha.example").isEmpty, "nothing was created")

                let group = try await create("three", members: ["bob@alpha.example"], on: ep1, session: "ep1:1")
                try await ep1.request(InviteToGroup(groupID: group, username: "bob@alpha.example"), session: "ep1:1")
                #expect(try await ep1.refusal(for: "ep1:1").code == .alreadyAMember)
                try await ep1.request(InviteToGroup(groupID: group, username: "carol@alpha.example"), session: "ep1:1")
                _ = try await ep1.delivery(for: "ep1:1", type: .groupMembers)
                try await ep1.request(InviteToGroup(groupID: group, username: "dave@alpha.example"), session: "ep1:1")
                #expect(try await ep1.refusal(for: "ep1:1").code == .groupFull)
            }
        }
    }
}
