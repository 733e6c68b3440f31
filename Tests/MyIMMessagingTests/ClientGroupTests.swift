import Foundation
import MyIMClient
import MyIMSecureChannel
import MyIMTransport
import MyIMWire
import NIOCore
import Testing

/// Group chat in the client: finding groups by name, group acknowledgements, reply matching
/// against a scripted endpoint, and end to end through a real center and two real endpoints.
@Suite("Client groups", .timeLimit(.minutes(1)))
struct ClientGroupTests {
    // MARK: - Without a server

    @Test func groupsAreFoundByIdOrName() throws {
        let groups = [
            GroupEntry(groupName: "climbers", groupID: 3), GroupEntry(groupName: "Hikers", groupID: 4),
            GroupEntry(groupName: "hikers", groupID: 5), GroupEntry(groupName: "42", groupID: 6),
            GroupEntry(groupName: "Runners", groupID: 7), GroupEntry(groupName: "runners", groupID: 8),
            GroupEntry(groupName: "runners", groupID: 9),
        ]
        #expect(try MessagingConnection.findGroup("3", in: groups) == groups[0])
        #expect(try MessagingConnection.findGroup(" climbers ", in: groups) == groups[0])
        #expect(try MessagingConnection.findGroup("#climbers", in: groups) == groups[0])
        #expect(try MessagingConnection.findGroup("CLIMBERS", in: groups) == groups[0])
        // An exact name wins over one that differs in case.
        #expect(try MessagingConnection.findGroup("hikers", in: groups) == groups[2])
        // A number is an id; #number is a name.
        #expect(try MessagingConnection.findGroup("42", in: groups) == GroupEntry(groupName: "42", groupID: 42))
        #expect(try MessagingConnection.findGroup("#42", in: groups) == groups[3])

        let ambiguous = #expect(throws: ClientError.self) { try MessagingConnection.findGroup("runners", in: groups) }
        #expect(ambiguous?.code == .invalidField)
        #expect(ambiguous?.message.contains("ids 8, 9") == true)
        let caseAmbiguous = #expect(throws: ClientError.self) { try MessagingConnection.findGroup("HIKERS", in: groups) }
        #expect(caseAmbiguous?.message.contains("ids 4, 5") == true)
        let unknown = #expect(throws: ClientError.self) { try MessagingConnection.findGroup("skiers", in: groups) }
        #expect(unknown?.code == .notAMember)
        #expect(unknown?.message.contains("no group named 'skiers'") == true)
        let none = #expect(throws: ClientError.self) { try MessagingConnection.findGroup("skiers", in: []) }
        #expect(none?.message.contains("you are in no group yet") == true)
        #expect(throws: ClientError.self) { try MessagingConnection.findGroup("#", in: groups) }
    }

    @Test func acknowledgementsAreIdsForOthersAndOneCursorPerGroupIncludingOwnCopies() {
        func delivery(
            _ kind: ChatKind, from sender: String, to recipient: String = "alice@alpha.example", target: Int64, id: Int64, seq: Int64? = nil,
            qos: QoS = .atLeastOnce
        ) -> ChatDelivery {
            ChatDelivery(
                kind: kind, time: 1, senderID: 1, senderName: sender, targetID: target, targetName: kind == .group ? "g\(target)" : recipient,
                content: .text("x"), serverMessageID: id, clientMessageID: "c\(id)", qos: qos, seq: seq)
        }
        let deliveries = [
            delivery(.user, from: "bob@alpha.example", target: 1, id: 10),
            delivery(.group, from: "bob@alpha.example", target: 5, id: 11, seq: 1),
            delivery(.user, from: "Alice@alpha.example", to: "bob@alpha.example", target: 2, id: 12),  // alice's own, to bob: not hers to ack
            delivery(.group, from: "alice@alpha.example", target: 5, id: 13, seq: 2),  // own group copy: counts
            delivery(.group, from: "bob@alpha.example", target: 6, id: 14, seq: 7),
            delivery(.user, from: "bob@alpha.example", target: 1, id: 15, qos: .bestEffort),
            delivery(.group, from: "bob@alpha.example", target: 9, id: 16, seq: 3),
            delivery(.user, from: "alice@alpha.example", to: "Alice@alpha.example", target: 1, id: 17),  // to herself: stored for her
        ]
        let acks = MessagingConnection.acknowledgements(for: deliveries, owner: "alice@alpha.example", unsafeGroups: [9])
        #expect(acks.ids == [10, 17])
        #expect(acks.groups == [GroupCursor(groupID: 5, seq: 2), GroupCursor(groupID: 6, seq: 7)])
    }

    @Test func groupDeliveriesAreKeptPerGroupWhoeverSentThem() throws {
        let temporary = ClientMessagingHome()
        defer { temporary.remove() }
        let history = MessageHistory(home: temporary.home, owner: "alice@alpha.example")
        let fromBob = ChatDelivery(
            kind: .group, time: 1, senderID: 2, senderName: "bob@alpha.example", targetID: 12, targetName: "climbers",
            content: .text("hi all"), serverMessageID: 1, clientMessageID: "b1", seq: 1)
        let own = ChatDelivery(
            kind: .group, time: 2, senderID: 1, senderName: "alice@alpha.example", targetID: 12, targetName: "climbers",
            content: .text("hi bob"), serverMessageID: 2, clientMessageID: "a1", seq: 2)
        #expect(history.peer(of: fromBob) == "group-12")
        #expect(history.peer(of: own) == "group-12")
        #expect(try history.append(fromBob))
        #expect(try history.append(own))
        #expect(try !history.append(own))
        #expect(try history.records(withPeer: "group-12").compactMap(\.delivery) == [fromBob, own])
        #expect(history.path(forPeer: "group-12") == temporary.home.path + "/history/group-12.jsonl")
        #expect(try history.records(withPeer: "bob@alpha.example").isEmpty)
    }

    /// 17s and 47s that concern another group, or another member, never answer a request;
    /// the user's groups follow 15, 16 and 47.
    @Test func repliesAreMatchedByGroupAndMember() async throws {
        let endpoint = try await GroupScriptEndpoint.start()
        let temporary = ClientMessagingHome()
        defer { temporary.remove() }
        let session = clientMessagingSession(servers: [endpoint.entry])
        let connection = try await MessagingConnection.open(session: session, home: temporary.home)
        #expect(connection.groups.map(\.groupID) == [5, 6])

        // The server sends a 17 for group 6 before the answer for group 5.
        let members = try await connection.members(of: 5)
        #expect(members == GroupMembers(groupID: 5, number: 2, members: ["alice@alpha.example", "bob@alpha.example"]))
        // Before its own 47, a notice about bob leaving 5, and one about alice leaving 6.
        let left = try await connection.leave(5)
        #expect(left.groupID == 5 && left.username == "alice@alpha.example" && left.kind == .left)
        #expect(connection.groups.isEmpty)
        // A 16 for another group comes before the 15.
        let created = try await connection.createGroup(name: "climbers", members: ["bob"])
        #expect(created == GroupCreated(groupID: 7, groupName: "climbers"))
        #expect(connection.groups == [GroupEntry(groupName: "skiers", groupID: 9), GroupEntry(groupName: "climbers", groupID: 7)])
        #expect(try connection.group("climbers").groupID == 7)
        let refused = await #expect(throws: ClientError.self) { try await connection.invite("bob", to: 7) }
        #expect(refused?.code == .alreadyAMember)

        var events: [IncomingEvent] = []
        while events.count < 4, let event = await connection.next(timeout: .seconds(5)) { events.append(event) }
        #expect(events == [
            .other(GroupMembers(groupID: 6, number: 1, members: ["carol@alpha.example"]).packet),
            .groupNotice(GroupNotice(groupID: 5, groupName: "climbers", kind: .left, username: "bob@alpha.example", time: 10)),
            .groupNotice(GroupNotice(groupID: 6, groupName: "hikers", kind: .left, username: "alice@alpha.example", time: 11)),
            .addedToGroup(AddedToGroup(groupID: 9, groupName: "skiers", by: "bob@alpha.example")),
        ])
        let sent = await endpoint.received.dropFirst().map(\.type)
        #expect(sent == [7, 45, 4, 5].map { UInt32($0) })
        let create = try #require(await endpoint.received.first { $0.type == MessageType.createGroup.rawValue })
        #expect(try CreateGroup(packet: create).members == ["bob@alpha.example"])
        try await connection.quit()
        await endpoint.stop()
    }

    // MARK: - Through a center

    @Test func aGroupIsCreatedAcrossBothEndpointsAndItsLifeCycleReachesEveryMember() async throws {
        let cluster = try await ClientMessagingCluster.start()
        let homes = (0..<5).map { _ in ClientMessagingHome() }
        defer { homes.forEach { $0.remove() } }
        do {
            let alice = try await MessagingConnection.open(
                session: try await cluster.session("alice@alpha.example", userID: 1, priorities: (1, 2)), home: homes[0].home)
            let bob = try await MessagingConnection.open(
                session: try await cluster.session("bob@alpha.example", userID: 2, priorities: (2, 1)), home: homes[1].home)
            let carol = try await MessagingConnection.open(
                session: try await cluster.session("carol@alpha.example", userID: 3, priorities: (1, 2)), home: homes[2].home)
            let erin = try await MessagingConnection.open(
                session: try await cluster.session("erin@alpha.example", userID: 5, priorities: (2, 1)), home: homes[3].home)
            #expect(alice.endpoint.name == "ep1" && bob.endpoint.name == "ep2" && carol.endpoint.name == "ep1")
            #expect(alice.initialState.groups.isEmpty)

            // Refusals: an address without an account (named), an invalid name.
            let unknown = await #expect(throws: ClientError.self) {
                try await alice.createGroup(name: "climbers", members: ["bob", "nobody@alpha.example"])
            }
            #expect(unknown?.code == .unknownRecipient)
            #expect(unknown?.message.contains("nobody@alpha.example") == true)
            let badName = await #expect(throws: ClientError.self) { try await alice.createGroup(name: "", members: ["bob"]) }
            #expect(badName?.code == .invalidGroupName)

            let created = try await alice.createGroup(name: "climbers", members: ["bob", "carol@alpha.example"])
            #expect(created.groupName == "climbers")
            let id = created.groupID
            #expect(alice.groups == [GroupEntry(groupName: "climbers", groupID: id)])
            for member in [bob, carol] {
                let added = try await Self.event(on: member) { event -> AddedToGroup? in
                    if case .addedToGroup(let added) = event { added } else { nil }
                }
                #expect(added == AddedToGroup(groupID: id, groupName: "climbers", by: "alice@alpha.example"))
                #expect(member.groups == [GroupEntry(groupName: "climbers", groupID: id)])
            }

            // One message: 8 with seq; every member, alice included, gets it with that seq.
            let accepted = try await alice.send(text: "hello climbers", toGroup: id)
            let seq = try #require(accepted.seq)
            for member in [alice, bob, carol] {
                let delivery = try #require(await clientMessagingDeliveries(1, on: member).first)
                #expect(delivery.kind == .group)
                #expect(delivery.targetID == id && delivery.targetName == "climbers")
                #expect(delivery.senderName == "alice@alpha.example")
                #expect(delivery.serverMessageID == accepted.serverMessageID)
                #expect(delivery.seq == seq)
                #expect(delivery.content == .text("hello climbers"))
                try await member.acknowledge([delivery])
                let kept = try #require(member.history).records(withPeer: "group-\(id)").compactMap(\.delivery)
                #expect(kept == [delivery])
            }

            let members = try await bob.members(of: id)
            #expect(members.groupID == id)
            #expect(members.number == 3)
            #expect(Set(members.members) == ["alice@alpha.example", "bob@alpha.example", "carol@alpha.example"])
            let outsider = await #expect(throws: ClientError.self) { try await erin.members(of: id) }
            #expect(outsider?.code == .notAMember)
            let outsiderSend = await #expect(throws: ClientError.self) { try await erin.send(text: "let me in", toGroup: id) }
            #expect(outsiderSend?.code == .notAMember)
            let outsiderInvite = await #expect(throws: ClientError.self) { try await erin.invite("erin", to: id) }
            #expect(outsiderInvite?.code == .notAMember)

            // Invite erin: 17 to alice, 16 to erin, 47 joined to bob and carol.
            let afterInvite = try await alice.invite("erin", to: id)
            #expect(afterInvite.groupID == id && afterInvite.number == 4)
            #expect(Set(afterInvite.members) == ["alice@alpha.example", "bob@alpha.example", "carol@alpha.example", "erin@alpha.example"])
            let invited = try await Self.event(on: erin) { event -> AddedToGroup? in
                if case .addedToGroup(let added) = event { added } else { nil }
            }
            #expect(invited == AddedToGroup(groupID: id, groupName: "climbers", by: "alice@alpha.example"))
            #expect(erin.groups.map(\.groupID) == [id])
            for member in [bob, carol] {
                let joined = try await Self.notice(on: member, .joined, about: "erin@alpha.example")
                #expect(joined.groupID == id && joined.groupName == "climbers")
                #expect(joined.by == "alice@alpha.example")
            }
            let twice = await #expect(throws: ClientError.self) { try await bob.invite("erin@alpha.example", to: id) }
            #expect(twice?.code == .alreadyAMember)
            let nobody = await #expect(throws: ClientError.self) { try await bob.invite("nobody", to: id) }
            #expect(nobody?.code == .unknownRecipient)

            // Carol leaves: her 47, and the same to the others.
            let left = try await carol.leave(id)
            #expect(left.groupID == id && left.kind == .left && left.username == "carol@alpha.example")
            #expect(carol.groups.isEmpty)
            for member in [alice, bob, erin] {
                let notice = try await Self.notice(on: member, .left, about: "carol@alpha.example")
                #expect(notice.groupID == id)
            }
            let gone = await #expect(throws: ClientError.self) { try await carol.members(of: id) }
            #expect(gone?.code == .notAMember)

            // Only the owner removes.
            let notOwner = await #expect(throws: ClientError.self) { try await bob.remove("erin", from: id) }
            #expect(notOwner?.code == .notGroupOwner)
            let afterRemove = try await alice.remove("bob", from: id)
            #expect(afterRemove.groupID == id && afterRemove.number == 2)
            #expect(Set(afterRemove.members) == ["alice@alpha.example", "erin@alpha.example"])
            let removed = try await Self.notice(on: bob, .removed, about: "bob@alpha.example")
            #expect(removed.groupID == id)
            #expect(removed.by == "alice@alpha.example")
            #expect(bob.groups.isEmpty)
            let erinSaw = try await Self.notice(on: erin, .removed, about: "bob@alpha.example")
            #expect(erinSaw.groupID == id && erinSaw.by == "alice@alpha.example")
            let removedSend = await #expect(throws: ClientError.self) { try await bob.send(text: "still here?", toGroup: id) }
            #expect(removedSend?.code == .notAMember)

            // What is sent now reaches alice and erin only.
            let later = try await erin.send(text: "just us", toGroup: id)
            #expect(try #require(later.seq) > seq)
            for member in [alice, erin] {
                let delivery = try #require(await clientMessagingDeliveries(1, on: member).first)
                #expect(delivery.serverMessageID == later.serverMessageID && delivery.seq == later.seq)
                try await member.acknowledge([delivery])
            }
            #expect(await clientMessagingDeliveries(1, on: bob, within: .milliseconds(300)).isEmpty)
            #expect(await clientMessagingDeliveries(1, on: carol, within: .milliseconds(300)).isEmpty)

            // A new session lists the group in 10.
            try await erin.quit()
            let erinAgain = try await MessagingConnection.open(
                session: try await cluster.session("erin@alpha.example", userID: 5, priorities: (2, 1)), home: homes[3].home)
            #expect(erinAgain.initialState.groups == [GroupEntry(groupName: "climbers", groupID: id)])
            #expect(erinAgain.initialState.messages.isEmpty)
            // Nothing from before she joined, and what she acknowledged does not come again.
            #expect(await clientMessagingDeliveries(1, on: erinAgain, within: .milliseconds(500)).isEmpty)

            for connection in [alice, bob, carol, erinAgain] { try await connection.quit() }
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    @Test func aRetriedGroupSendIsDeliveredOnceAndQoS0IsAnsweredByTheCopy() async throws {
        try await ClientMessagingCluster.with(homes: 2) { cluster, homes in
            let aliceHome = homes[0]
            let bobHome = homes[1]
            let alice = try await MessagingConnection.open(
                session: try await cluster.session("alice@alpha.example", userID: 1, priorities: (1, 2)), home: aliceHome.home)
            let bob = try await MessagingConnection.open(
                session: try await cluster.session("bob@alpha.example", userID: 2, priorities: (2, 1)), home: bobHome.home)
            let id = try await alice.createGroup(name: "pair", members: ["bob"]).groupID

            let first = try await alice.send(.text("once"), to: .group(id), clientMessageID: "retry-1")
            let second = try await alice.send(.text("once"), to: .group(id), clientMessageID: "retry-1")
            #expect(second == first)
            #expect(first.seq != nil)
            let next = try await alice.send(text: "after", toGroup: id)

            let received = await clientMessagingDeliveries(2, on: bob)
            #expect(received.map(\.content) == [.text("once"), .text("after")])
            #expect(received.map(\.seq) == [first.seq, next.seq])
            #expect(try #require(next.seq) > #require(first.seq))
            let copies = await clientMessagingDeliveries(2, on: alice)
            #expect(copies.map(\.serverMessageID) == [first.serverMessageID, next.serverMessageID])
            try await bob.acknowledge(received)
            try await alice.acknowledge(copies)

            // QoS 0: no 8; the answer is alice's own copy.
            let quick = try await alice.send(text: "quick", toGroup: id, qos: .bestEffort)
            let quickDelivery = try #require(await clientMessagingDeliveries(1, on: bob).first)
            #expect(quickDelivery.serverMessageID == quick.serverMessageID)
            #expect(quickDelivery.qos == .bestEffort)
            #expect(quickDelivery.seq == quick.seq)
            try await bob.acknowledge([quickDelivery])
            #expect(await clientMessagingDeliveries(1, on: bob, within: .milliseconds(300)).isEmpty)

            try await alice.quit()
            try await bob.quit()
        }
    }

    @Test func anOfflineMemberGetsTheBacklogInOrderUntilItIsAcknowledged() async throws {
        try await ClientMessagingCluster.with(homes: 2) { cluster, homes in
            let aliceHome = homes[0]
            let bobHome = homes[1]
            let aliceSession = try await cluster.session("alice@alpha.example", userID: 1, priorities: (1, 2))
            let bobSession = try await cluster.session("bob@alpha.example", userID: 2, priorities: (2, 1))
            let alice = try await MessagingConnection.open(session: aliceSession, home: aliceHome.home)
            let id = try await alice.createGroup(name: "backlog", members: ["bob"]).groupID

            var sent: [ChatAccepted] = []
            for index in 1...3 { sent.append(try await alice.send(text: "while away \(index)", toGroup: id)) }
            let copies = await clientMessagingDeliveries(3, on: alice)
            #expect(copies.map(\.serverMessageID) == sent.map(\.serverMessageID))
            try await alice.acknowledge(copies)
            try await alice.quit()

            // Bob was offline: the three arrive at login, in seq order. Not acknowledged.
            let bob = try await MessagingConnection.open(session: bobSession, home: bobHome.home)
            #expect(bob.initialState.groups == [GroupEntry(groupName: "backlog", groupID: id)])
            let backlog = try await Self.groupMessages(3, on: bob)
            #expect(backlog.map(\.serverMessageID) == sent.map(\.serverMessageID))
            #expect(backlog.map(\.seq) == sent.map(\.seq))
            #expect(backlog.map(\.content) == (1...3).map { .text("while away \($0)") })
            #expect(backlog.allSatisfy { $0.kind == .group && $0.targetID == id && $0.targetName == "backlog" })
            try await bob.quit()

            // Again, since nothing was acknowledged; this time bob acknowledges.
            let bobAgain = try await MessagingConnection.open(session: bobSession, home: bobHome.home)
            let again = try await Self.groupMessages(3, on: bobAgain)
            #expect(again.map(\.serverMessageID) == sent.map(\.serverMessageID))
            try await bobAgain.acknowledge(again)
            try await bobAgain.quit()
            // History has each once.
            let kept = try #require(bobAgain.history).records(withPeer: "group-\(id)").map(\.serverMessageID)
            #expect(kept == sent.map(\.serverMessageID))

            // Acknowledged: nothing waits for bob, nor for alice (whose copies she acknowledged).
            let bobThird = try await MessagingConnection.open(session: bobSession, home: bobHome.home)
            #expect(bobThird.initialState.messages.isEmpty)
            #expect(await clientMessagingDeliveries(1, on: bobThird, within: .milliseconds(500)).isEmpty)
            let aliceAgain = try await MessagingConnection.open(session: aliceSession, home: aliceHome.home)
            #expect(aliceAgain.initialState.messages.isEmpty)
            #expect(await clientMessagingDeliveries(1, on: aliceAgain, within: .milliseconds(500)).isEmpty)
            try await bobThird.quit()
            try await aliceAgain.quit()
        }
    }

    @Test func aChatSessionTalksToAGroupWithSlashGroup() async throws {
        try await ClientMessagingCluster.with(homes: 2) { cluster, homes in
            let aliceHome = homes[0]
            let bobHome = homes[1]
            let alice = try await MessagingConnection.open(
                session: try await cluster.session("alice@alpha.example", userID: 1, priorities: (1, 2)), home: aliceHome.home)
            let bobSession = try await cluster.session("bob@alpha.example", userID: 2, priorities: (2, 1))
            let bob = try await MessagingConnection.open(session: bobSession, home: bobHome.home)
            let transcript = ChatTranscript()
            let chat = ChatSession(connection: bob, peer: nil) { transcript.append($0) }
            let (lines, typing) = AsyncStream<String>.makeStream()
            let running = Task { await chat.run(lines: lines) }

            typing.yield("/group climbers")
            try await transcript.waitFor("! you are in no group named 'climbers'")

            // Bob learns of the group from 16, during the session.
            let id = try await alice.createGroup(name: "climbers", members: ["bob"]).groupID
            try await transcript.waitFor("* alice added you to #climbers (group \(id))")
            typing.yield("/groups")
            try await transcript.waitFor("* #climbers (group \(id))")

            _ = try await alice.send(text: "hi all", toGroup: id)
            try await transcript.waitFor("#climbers alice: hi all")

            typing.yield("/group climbers")
            try await transcript.waitFor("* talking to #climbers (group \(id))")
            typing.yield("hello climbers")
            let fromBob = try #require(await clientMessagingDeliveries(2, on: alice).first { $0.senderName == "bob@alpha.example" })
            #expect(fromBob.kind == .group && fromBob.targetID == id && fromBob.content == .text("hello climbers"))
            try await transcript.waitFor("#climbers you: hello climbers")

            _ = try await alice.invite("carol", to: id)
            try await transcript.waitFor("* #climbers: carol joined (added by alice)")
            _ = try await alice.remove("carol", from: id)
            try await transcript.waitFor("* #climbers: carol was removed by alice")

            // A group by id works too; /to goes back to a user.
            typing.yield("/group \(id)")
            try await transcript.waitFor("* talking to #climbers (group \(id))", count: 2)
            typing.yield("/to alice")
            try await transcript.waitFor("* talking to alice")

            typing.yield("/quit")
            #expect(await running.value == nil)

            // Everything bob saw was acknowledged, his own copy included.
            let again = try await MessagingConnection.open(session: bobSession, home: bobHome.home)
            #expect(again.initialState.messages.isEmpty)
            #expect(await clientMessagingDeliveries(1, on: again, within: .milliseconds(500)).isEmpty)
            try await again.quit()
            try await alice.quit()
        }
    }

    // MARK: - Helpers

    /// The first event on `connection` that `match` picks, skipping others, within 10 s.
    private static func event<T>(on connection: MessagingConnection, _ match: (IncomingEvent) -> T?) async throws -> T {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            guard let event = await connection.next(timeout: deadline - ContinuousClock.now) else { break }
            if let found = match(event) { return found }
        }
        throw ClientError(.internalError, "the expected event did not come within 10 s")
    }

    /// The next group notice (47) on `connection` of `kind` about `username` (others skipped).
    private static func notice(on connection: MessagingConnection, _ kind: GroupNotice.Kind, about username: String) async throws -> GroupNotice {
        try await event(on: connection) { event -> GroupNotice? in
            if case .groupNotice(let notice) = event, notice.kind == kind, notice.username == username { notice } else { nil }
        }
    }

    /// `count` group messages: those of 10 first, then deliveries.
    private static func groupMessages(_ count: Int, on connection: MessagingConnection) async throws -> [ChatDelivery] {
        var messages = connection.initialState.messages.filter { $0.kind == .group }
        if messages.count < count { messages += await clientMessagingDeliveries(count - messages.count, on: connection) }
        return messages
    }
}

/// The next `count` deliveries on `connection` (other events skipped), waiting up to `within`.
func clientMessagingDeliveries(_ count: Int, on connection: MessagingConnection, within: Duration) async -> [ChatDelivery] {
    var deliveries: [ChatDelivery] = []
    let deadline = ContinuousClock.now + within
    while deliveries.count < count, ContinuousClock.now < deadline {
        guard let event = await connection.next(timeout: deadline - ContinuousClock.now) else { break }
        if case .delivery(let delivery) = event { deliveries.append(delivery) }
    }
    return deliveries
}

/// A scripted endpoint for reply matching: 10 lists groups 5 (climbers) and 6 (hikers); 7 is
/// answered after a 17 for group 6; 45 after 47s about bob and about another group; 4 after a
/// 16 for group 9; 5 with 20 (339); 43 with 44.
actor GroupScriptEndpoint {
    let identity: ServerIdentityKey
    let port: Int
    private let listener: NIOAsyncChannel<SecureConnection, Never>
    private(set) var received: [Packet] = []

    private init(identity: ServerIdentityKey, listener: NIOAsyncChannel<SecureConnection, Never>) {
        self.identity = identity
        self.listener = listener
        port = listener.channel.localAddress!.port!
    }

    static func start() async throws -> GroupScriptEndpoint {
        let identity = ServerIdentityKey.generateEd25519()
        let listener = try await SecureListener.bind(host: "127.0.0.1", port: 0, identity: identity)
        let endpoint = GroupScriptEndpoint(identity: identity, listener: listener)
        Task { await endpoint.accept() }
        return endpoint
    }

    nonisolated var entry: SavedServer {
        SavedServer(name: "script", host: "127.0.0.1", port: port, priority: 1, fingerprint: identity.publicKey.fingerprint.description)
    }

    func stop() async { try? await listener.channel.close() }

    private func accept() async {
        await withDiscardingTaskGroup { group in
            do {
                try await listener.executeThenClose { inbound in
                    for try await connection in inbound {
                        group.addTask { await self.serve(connection) }
                    }
                }
            } catch {}
        }
    }

    private func serve(_ connection: SecureConnection) async {
        try? await connection.channel.executeThenClose { inbound, outbound in
            _ = try await connection.session.get()
            for try await packet in inbound {
                received.append(packet)
                let replies: [Packet]
                switch MessageType(rawValue: packet.type) {
                case .tokenAuth:
                    replies = [
                        AuthOK(username: "alice@alpha.example", sessionID: "s1", serverTime: 1, node: "script").packet,
                        InitialState(
                            friends: [], groups: [GroupEntry(groupName: "climbers", groupID: 5), GroupEntry(groupName: "hikers", groupID: 6)],
                            messages: []).packet,
                    ]
                case .groupMembersQuery:
                    let id = try GroupMembersQuery(packet: packet).groupID
                    replies = [
                        GroupMembers(groupID: 6, number: 1, members: ["carol@alpha.example"]).packet,
                        GroupMembers(groupID: id, number: 2, members: ["alice@alpha.example", "bob@alpha.example"]).packet,
                    ]
                case .leaveGroup:
                    let id = try LeaveGroup(packet: packet).groupID
                    replies = [
                        GroupNotice(groupID: id, groupName: "climbers", kind: .left, username: "bob@alpha.example", time: 10).packet,
                        GroupNotice(groupID: 6, groupName: "hikers", kind: .left, username: "alice@alpha.example", time: 11).packet,
                        GroupNotice(groupID: id, groupName: "climbers", kind: .left, username: "alice@alpha.example", time: 12).packet,
                    ]
                case .createGroup:
                    let name = try CreateGroup(packet: packet).name
                    replies = [
                        AddedToGroup(groupID: 9, groupName: "skiers", by: "bob@alpha.example").packet,
                        GroupCreated(groupID: 7, groupName: name).packet,
                    ]
                case .inviteToGroup:
                    replies = [ErrorMessage(code: .alreadyAMember, data: "bob@alpha.example is a member already").packet]
                case .quit:
                    try await outbound.write(QuitAck(lastSeen: 42).packet)
                    return
                default:
                    replies = []
                }
                for reply in replies { try await outbound.write(reply) }
            }
        }
    }
}

extension ChatTranscript {
    /// Waits up to 10 s for `count` lines containing `text`.
    func waitFor(_ text: String, count: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while all.filter({ $0.contains(text) }).count < count {
            try #require(ContinuousClock.now < deadline, "fewer than \(count) lines with \"\(text)\" in:\n\(all.joined(separator: "\n"))")
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}
