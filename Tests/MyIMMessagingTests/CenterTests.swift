import Foundation
import MyIMCenter
import MyIMLink
import MyIMPresence
import MyIMWire
import NIOCore
import Synchronization
import Testing

/// A test clock in milliseconds.
final class CenterClock: Sendable {
    private let now = Mutex<Int64>(1_800_000_000_000)
    var milliseconds: Int64 { now.withLock { $0 } }
    func advance(_ milliseconds: Int64) { now.withLock { $0 += milliseconds } }
}

extension StaticDirectory {
    /// The accounts the messaging tests use (everyone but `nobody@alpha.example`), with user ids
    /// 1, 2, 3… in this order.
    static var testUsers: StaticDirectory {
        let names = ["alice", "bob", "carol", "dave", "erin", "frank", "gina", "hal", "ivan", "judy", "kate", "leo", "mallory", "mia", "ned"]
        return StaticDirectory(Dictionary(uniqueKeysWithValues: names.enumerated().map { ("\($1)@alpha.example", Int64($0 + 1)) }))
    }
}

/// A center in-process on 127.0.0.1 with a real SQLite file, restartable on the same file.
struct TestCenter {
    let center: Center
    let port: Int
    let directory: URL
    let presence: InMemoryPresenceStore
    private let task: Task<Void, any Error>

    static func start(
        directory: URL? = nil, presence: InMemoryPresenceStore? = nil, clock: CenterClock = CenterClock(),
        configure: (inout CenterConfiguration) -> Void = { _ in }
    ) async throws -> TestCenter {
        let directory = directory ?? FileManager.default.temporaryDirectory.appendingPathComponent("myim-center-\(UUID().uuidString)")
        let presence = presence ?? InMemoryPresenceStore(domain: "alpha.example", now: { clock.milliseconds })
        var configuration = CenterConfiguration(
            node: "alpha-center", domain: "alpha.example", host: "127.0.0.1", port: 0, protection: .plain,
            databasePath: directory.appendingPathComponent("center.sqlite").path, endpoints: ["ep1", "ep2"], presence: presence,
            directory: StaticDirectory.testUsers)
        configuration.clock = { clock.milliseconds }
        configuration.maxImageBytes = 1024
        configure(&configuration)
        let center = try Center(configuration: configuration)
        let listener = try await center.bind()
        let port = try #require(listener.channel.localAddress?.port)
        let task = Task { try await center.serve(listener) }
        return TestCenter(center: center, port: port, directory: directory, presence: presence, task: task)
    }

    func stop() async {
        task.cancel()
        _ = try? await task.value
    }

    func remove() {
        try? FileManager.default.removeItem(at: directory)
    }
}

/// One end of a link, as an endpoint would hold it: send link messages, read what comes.
final class FakeEndpoint {
    let node: String
    private var inbound: NIOAsyncChannelInboundStream<Packet>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<Packet>
    /// Packets read while looking for another one.
    private var backlog: [Packet] = []

    private init(node: String, inbound: NIOAsyncChannelInboundStream<Packet>, outbound: NIOAsyncChannelOutboundWriter<Packet>) {
        self.node = node
        self.inbound = inbound.makeAsyncIterator()
        self.outbound = outbound
    }

    static func with<T>(_ node: String, port: Int, sessions: [SessionInfo] = [], _ body: (FakeEndpoint) async throws -> T) async throws -> T {
        let channel = try await LinkChannel.connect(host: "127.0.0.1", port: port, serverName: "alpha-center", protection: .plain)
        return try await channel.executeThenClose { inbound, outbound in
            let endpoint = FakeEndpoint(node: node, inbound: inbound, outbound: outbound)
            try await outbound.write(LinkHello(node: node, domain: "alpha.example", sessions: sessions).packet)
            _ = try LinkWelcome(packet: try await endpoint.next { $0.type == LinkMessageType.welcome.rawValue })
            return try await body(endpoint)
        }
    }

    func send(_ message: some LinkMessage) async throws {
        try await outbound.write(message.packet)
    }

    /// Opens a session for `user` and returns message 10's body.
    /// `senderCopies`: the client's 41 `sender_copies` (seed 000's clients ask for copies).
    func open(_ user: String, session: String, userID: Int64 = 1, senderCopies: Bool = true) async throws -> InitialState {
        try await send(SessionOpen(info: SessionInfo(
            session: session, user: user, login: "login-\(session)", device: "dev", since: 1, userID: userID, senderCopies: senderCopies)))
        let ready = try SessionReady(packet: try await next { $0.type == LinkMessageType.sessionReady.rawValue })
        #expect(ready.session == session)
        return try InitialState(body: ready.initial)
    }

    func request(_ message: some WireMessage, session: String) async throws {
        try await send(FromClient(session: session, payload: message.packet))
    }

    /// The next client packet for `session`, of `type` if given. A link message naming other
    /// sessions too stays, for them, where it was.
    func delivery(for session: String, type: MessageType? = nil) async throws -> Packet {
        let (packet, position) = try await take { packet in
            guard packet.type == LinkMessageType.toClient.rawValue, let message = try? ToClient(packet: packet) else { return false }
            return message.sessions.contains(session) && (type == nil || message.payload.type == type!.rawValue)
        }
        let message = try ToClient(packet: packet)
        let others = message.sessions.filter { $0 != session }
        if !others.isEmpty { backlog.insert(ToClient(sessions: others, payload: message.payload).packet, at: position) }
        return message.payload
    }

    /// The next packet matching `predicate` (within 5 s); others are kept for later.
    func next(where predicate: (Packet) -> Bool) async throws -> Packet {
        try await take(where: predicate).packet
    }

    /// The next packet matching `predicate`, and where in the backlog it stood (its end for a
    /// packet read now).
    private func take(where predicate: (Packet) -> Bool) async throws -> (packet: Packet, position: Int) {
        if let index = backlog.firstIndex(where: predicate) { return (backlog.remove(at: index), index) }
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline {
            guard let packet = try await inbound.next() else { throw CenterTestFailure("the center closed the link") }
            if predicate(packet) { return (packet, backlog.count) }
            backlog.append(packet)
        }
        throw CenterTestFailure("nothing matching arrived within 5 s")
    }

    /// Whether anything for `session` is waiting now (read what is buffered, without waiting long).
    var pendingTypes: [UInt32] { backlog.map(\.type) }

    /// Returns once the center has handled everything `session` sent before: its session open
    /// (and the backlog flush that makes it a live recipient) included. A friend-list query
    /// takes the same per-user lane, and its answer comes after.
    func barrier(session: String) async throws {
        try await request(FriendListQuery(), session: session)
        _ = try await delivery(for: session, type: .friendList)
    }

    /// Sends a best-effort chat from `session` to `user` and waits for it at `recipient`'s
    /// `recipientSession`: the center then holds ids for best-effort chats (it reserves them in
    /// blocks, the first when one is needed), and the next ones can be routed on the link's
    /// event loop.
    func warmUp(from session: String, to user: String, on recipient: FakeEndpoint, session recipientSession: String) async throws {
        try await request(Chat(target: .user(user), content: .text("warm-up"), clientMessageID: "warm-up", qos: .bestEffort), session: session)
        #expect(try ChatDelivery(packet: try await recipient.delivery(for: recipientSession)).clientMessageID == "warm-up")
    }

    /// Whether a chat delivery (18) for `session` was read and is kept in the backlog.
    func holds(for session: String) -> Bool {
        backlog.contains { packet in
            guard packet.type == LinkMessageType.toClient.rawValue, let message = try? ToClient(packet: packet) else { return false }
            return message.sessions.contains(session) && message.payload.type == MessageType.chatDelivery.rawValue
        }
    }
}

struct CenterTestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

@Suite("Center (fake endpoints over real link sockets, real SQLite)", .timeLimit(.minutes(1)))
struct CenterTests {
    private func withCenter(_ body: (TestCenter) async throws -> Void) async throws {
        let center = try await TestCenter.start()
        do { try await body(center) } catch {
            await center.stop()
            center.remove()
            throw error
        }
        await center.stop()
        center.remove()
    }

    @Test func chatAcrossTwoEndpointsIsAcceptedDeliveredAndAcked() async throws {
        try await withCenter { center in
            try await FakeEndpoint.with("ep1", port: center.port) { ep1 in
                try await FakeEndpoint.with("ep2", port: center.port) { ep2 in
                    _ = try await ep1.open("alice@alpha.example", session: "ep1:1", userID: 11, senderCopies: false)
                    _ = try await ep2.open("bob@alpha.example", session: "ep2:1", userID: 22)

                    // A forged sender in the body is ignored: the session decides.
                    var chat = Chat(target: .user("Bob@alpha.example"), content: .text("hello bob"), clientMessageID: "c1").packet
                    chat.body["sender_name"] = .string("mallory@alpha.example")
                    chat.body["from"] = .string("mallory@alpha.example")
                    try await ep1.send(FromClient(session: "ep1:1", payload: chat))

                    let accepted = try ChatAccepted(packet: try await ep1.delivery(for: "ep1:1"))
                    #expect(accepted.clientMessageID == "c1")
                    #expect(accepted.targetID == 22, "8 carries what the sender lacks of the delivery")
                    let delivered = try ChatDelivery(packet: try await ep2.delivery(for: "ep2:1"))
                    #expect(delivered.senderName == "alice@alpha.example")
                    #expect(delivered.senderID == 11)
                    #expect(delivered.targetName == "bob@alpha.example" && delivered.targetID == 22)
                    #expect(delivered.content == .text("hello bob"))
                    #expect(delivered.serverMessageID == accepted.serverMessageID)
                    #expect(delivered.time == accepted.time)

                    // alice's client records its own messages (41 sender_copies false). QoS 0:
                    // delivered, and nothing goes back to her.
                    try await ep1.request(
                        Chat(target: .user("bob@alpha.example"), content: .text("quick"), clientMessageID: "q1", qos: .bestEffort), session: "ep1:1")
                    let quick = try ChatDelivery(packet: try await ep2.delivery(for: "ep2:1"))
                    #expect(quick.content == .text("quick") && quick.qos == .bestEffort)
                    // The sender gets no copy of either: what comes next for it answers its next request.
                    try await ep1.request(FriendListQuery(), session: "ep1:1")
                    let next = try await ep1.delivery(for: "ep1:1")
                    #expect(next.type == MessageType.friendList.rawValue, "got \(next.type), not the answer to 30")

                    #expect(try await center.center.store.pendingCount() == 1, "kept until bob acks")
                    try await ep2.request(DeliveryAck(ids: [delivered.serverMessageID]), session: "ep2:1")
                    try await expectEventually { try await center.center.store.pendingCount() == 0 }

                    // bob's client, like seed 000's, asked for copies: he gets 8, then the copy.
                    try await ep2.request(Chat(target: .user("alice@alpha.example"), content: .text("hi alice"), clientMessageID: "b1"), session: "ep2:1")
                    let bobsAccepted = try ChatAccepted(packet: try await ep2.delivery(for: "ep2:1"))
                    let copy = try ChatDelivery(packet: try await ep2.delivery(for: "ep2:1"))
                    #expect(copy.serverMessageID == bobsAccepted.serverMessageID && copy.senderName == "bob@alpha.example")
                    #expect(try ChatDelivery(packet: try await ep1.delivery(for: "ep1:1")).content == .text("hi alice"))
                    // QoS 0 too: the copy is his only answer.
                    try await ep2.request(
                        Chat(target: .user("alice@alpha.example"), content: .text("quick"), clientMessageID: "b2", qos: .bestEffort), session: "ep2:1")
                    let quickCopy = try ChatDelivery(packet: try await ep2.delivery(for: "ep2:1"))
                    #expect(quickCopy.clientMessageID == "b2" && quickCopy.qos == .bestEffort)
                    #expect(try ChatDelivery(packet: try await ep1.delivery(for: "ep1:1")).clientMessageID == "b2")
                }
            }
        }
    }

    @Test func aDrainingCenterRefusesNewSendsWith330ButStillTakesAcks() async throws {
        try await withCenter { center in
            try await FakeEndpoint.with("ep1", port: center.port) { ep1 in
                _ = try await ep1.open("alice@alpha.example", session: "ep1:1")
                _ = try await ep1.open("bob@alpha.example", session: "ep1:2")
                try await ep1.request(Chat(target: .user("bob@alpha.example"), content: .text("before"), clientMessageID: "b1"), session: "ep1:1")
                _ = try ChatAccepted(packet: try await ep1.delivery(for: "ep1:1", type: .chatAccepted))
                let delivered = try ChatDelivery(packet: try await ep1.delivery(for: "ep1:2", type: .chatDelivery))

                try await ep1.barrier(session: "ep1:2")
                try await ep1.warmUp(from: "ep1:1", to: "bob@alpha.example", on: ep1, session: "ep1:2")

                await center.center.drain(timeout: .seconds(2))
                try await ep1.request(Chat(target: .user("bob@alpha.example"), content: .text("during"), clientMessageID: "d1"), session: "ep1:1")
                #expect(try ErrorMessage(packet: try await ep1.delivery(for: "ep1:1", type: .error)).code == .centerUnavailable)
                // A best-effort chat to a live recipient too, though it would otherwise be routed on the link's event loop.
                try await ep1.request(
                    Chat(target: .user("bob@alpha.example"), content: .text("during"), clientMessageID: "d2", qos: .bestEffort), session: "ep1:1")
                let refusal = try ErrorMessage(packet: try await ep1.delivery(for: "ep1:1", type: .error))
                #expect(refusal.code == .centerUnavailable && refusal.clientMessageID == "d2")
                try await ep1.request(DeliveryAck(ids: [delivered.serverMessageID]), session: "ep1:2")
                try await expectEventually { try await center.center.store.pendingCount() == 0 }
            }
        }
    }

    @Test func aSessionBoundAgainByARelinkedEndpointKeepsItsNoCopiesChoice() async throws {
        try await withCenter { center in
            // ep1 relinks holding alice's session, whose client asked for no copies (41).
            let alice = SessionInfo(
                session: "ep1:1", user: "alice@alpha.example", login: "l1", device: "d", since: 1, userID: 11, senderCopies: false)
            try await FakeEndpoint.with("ep1", port: center.port, sessions: [alice]) { ep1 in
                _ = try await ep1.next { $0.type == LinkMessageType.sessionReady.rawValue && (try? SessionReady(packet: $0).session) == "ep1:1" }
                _ = try await ep1.open("bob@alpha.example", session: "ep1:2", userID: 22)
                try await ep1.request(Chat(target: .user("bob@alpha.example"), content: .text("after relink"), clientMessageID: "r1"), session: "ep1:1")
                #expect(try ChatAccepted(packet: try await ep1.delivery(for: "ep1:1", type: .chatAccepted)).targetID == 22)
                #expect(try ChatDelivery(packet: try await ep1.delivery(for: "ep1:2", type: .chatDelivery)).clientMessageID == "r1")
                try await ep1.request(FriendListQuery(), session: "ep1:1")
                let next = try await ep1.delivery(for: "ep1:1")
                #expect(next.type == MessageType.friendList.rawValue, "got \(next.type): a copy went to a session that asked for none")
            }
        }
    }

    @Test func aBestEffortChatToALiveRecipientIsRoutedOnTheLinksLoopAsTheActorWouldRouteIt() async throws {
        try await withCenter { center in
            try await FakeEndpoint.with("ep1", port: center.port) { ep1 in
                try await FakeEndpoint.with("ep2", port: center.port) { ep2 in
                    // carol takes copies of what she sends, as seed 000's clients do; dave does not.
                    _ = try await ep1.open("carol@alpha.example", session: "ep1:1", userID: 3)
                    _ = try await ep2.open("dave@alpha.example", session: "ep2:1", userID: 4, senderCopies: false)
                    try await ep1.barrier(session: "ep1:1")
                    try await ep2.barrier(session: "ep2:1")
                    try await ep2.warmUp(from: "ep2:1", to: "carol@alpha.example", on: ep1, session: "ep1:1")
                    let before = center.center.chatsRoutedOnLoop

                    try await ep1.request(
                        Chat(target: .user("Dave@alpha.example"), content: .text("to dave"), clientMessageID: "c1", qos: .bestEffort), session: "ep1:1")
                    let delivered = try ChatDelivery(packet: try await ep2.delivery(for: "ep2:1"))
                    #expect(delivered.senderName == "carol@alpha.example" && delivered.senderID == 3)
                    #expect(delivered.targetName == "dave@alpha.example" && delivered.targetID == 4 && delivered.kind == .user)
                    #expect(delivered.content == .text("to dave") && delivered.clientMessageID == "c1" && delivered.qos == .bestEffort)
                    #expect(delivered.serverID == "alpha-center" && delivered.time == CenterClock().milliseconds && delivered.serverMessageID > 0)
                    #expect(try ChatDelivery(packet: try await ep1.delivery(for: "ep1:1")) == delivered, "carol's copy")

                    // dave's chat goes to carol only; his chat to himself comes once.
                    try await ep2.request(
                        Chat(target: .user("carol@alpha.example"), content: .text("to carol"), clientMessageID: "d1", qos: .bestEffort), session: "ep2:1")
                    let toCarol = try ChatDelivery(packet: try await ep1.delivery(for: "ep1:1"))
                    #expect(toCarol.clientMessageID == "d1" && toCarol.serverMessageID != delivered.serverMessageID)
                    try await ep2.request(
                        Chat(target: .user("dave@alpha.example"), content: .text("note"), clientMessageID: "d2", qos: .bestEffort), session: "ep2:1")
                    #expect(try ChatDelivery(packet: try await ep2.delivery(for: "ep2:1")).clientMessageID == "d2")
                    try await ep2.barrier(session: "ep2:1")
                    #expect(!ep2.holds(for: "ep2:1"), "dave got a copy")
                    #expect(center.center.chatsRoutedOnLoop == before + 3, "not all three were routed on the loop")

                    // A chat not of the usual shape (a key the center does not know, which it
                    // ignores) is parsed in full, and routed on the loop all the same.
                    var unusual = Chat(target: .user("dave@alpha.example"), content: .text("unusual"), clientMessageID: "c2", qos: .bestEffort).body
                    unusual["x-client"] = .string("ignored")
                    try await ep1.send(FromClient(session: "ep1:1", payload: Packet(type: MessageType.chat.rawValue, body: unusual)))
                    let unusualDelivered = try ChatDelivery(packet: try await ep2.delivery(for: "ep2:1"))
                    #expect(unusualDelivered.content == .text("unusual") && unusualDelivered.clientMessageID == "c2")
                    #expect(try ChatDelivery(packet: try await ep1.delivery(for: "ep1:1")) == unusualDelivered, "carol's copy")
                    #expect(center.center.chatsRoutedOnLoop == before + 4)
                }
            }
        }
    }

    /// A session bound without its user's id (a token that carried none) is routed through
    /// the actor until the center learns the id; from then on, on the loop.
    @Test func aRecipientWhoseIdIsLearnedAfterBindIsRoutedOnTheLoopFromThen() async throws {
        try await withCenter { center in
            try await FakeEndpoint.with("ep1", port: center.port) { ep1 in
                try await FakeEndpoint.with("ep2", port: center.port) { ep2 in
                    _ = try await ep1.open("carol@alpha.example", session: "ep1:1", userID: 3, senderCopies: false)
                    _ = try await ep2.open("dave@alpha.example", session: "ep2:1", userID: 0)
                    try await ep2.barrier(session: "ep2:1")
                    let before = center.center.chatsRoutedOnLoop
                    // The first goes through the actor, which asks the directory for dave's id.
                    try await ep1.warmUp(from: "ep1:1", to: "dave@alpha.example", on: ep2, session: "ep2:1")
                    #expect(center.center.chatsRoutedOnLoop == before)
                    try await ep1.request(
                        Chat(target: .user("dave@alpha.example"), content: .text("now"), clientMessageID: "c2", qos: .bestEffort), session: "ep1:1")
                    let delivered = try ChatDelivery(packet: try await ep2.delivery(for: "ep2:1"))
                    #expect(delivered.clientMessageID == "c2" && delivered.targetID == 4)
                    #expect(center.center.chatsRoutedOnLoop == before + 1, "dave's id, once learned, reaches the routes")
                }
            }
        }
    }

    @Test(arguments: [false, true])
    func aBestEffortChatNeverOvertakesAnEarlierRequestOfItsSession(bobOnTheSameEndpoint: Bool) async throws {
        try await withCenter { center in
            try await FakeEndpoint.with("ep1", port: center.port) { ep1 in
                try await FakeEndpoint.with("ep2", port: center.port) { other in
                    // On one endpoint, both sessions' packets share the link and its event loop.
                    let ep2 = bobOnTheSameEndpoint ? ep1 : other
                    let bob = bobOnTheSameEndpoint ? "ep1:2" : "ep2:1"
                    _ = try await ep1.open("alice@alpha.example", session: "ep1:1", userID: 1, senderCopies: false)
                    _ = try await ep2.open("bob@alpha.example", session: bob, userID: 2)
                    try await ep2.barrier(session: bob)
                    // Ids are now reserved for best-effort chats: the next ones can be routed on the loop.
                    try await ep1.warmUp(from: "ep1:1", to: "bob@alpha.example", on: ep2, session: bob)
                    // Each stored chat waits on SQLite; the best-effort chat sent right after it
                    // could be routed at once, on the link's event loop, if nothing held it back.
                    var sent: [String] = []
                    for round in 0..<5 {
                        for qos in [QoS.atLeastOnce, .bestEffort] {
                            let id = "\(qos)-\(round)"
                            try await ep1.request(Chat(target: .user("bob@alpha.example"), content: .text(id), clientMessageID: id, qos: qos), session: "ep1:1")
                            sent.append(id)
                        }
                    }
                    var received: [String] = []
                    for _ in sent { received.append(try ChatDelivery(packet: try await ep2.delivery(for: bob)).clientMessageID) }
                    #expect(received == sent)

                    // Once bob's session is closed, nothing more is sent for it.
                    try await ep2.send(SessionClose(session: bob, reason: "quit"))
                    try await expectEventually { await center.presence.lookup(["bob@alpha.example"]).isEmpty }
                    try await ep1.request(
                        Chat(target: .user("bob@alpha.example"), content: .text("late"), clientMessageID: "late", qos: .bestEffort), session: "ep1:1")
                    try await ep1.barrier(session: "ep1:1")
                    try await ep2.send(LinkPing(time: 1))
                    _ = try await ep2.next { $0.type == LinkMessageType.pong.rawValue }
                    #expect(!ep2.holds(for: bob), "a closed session was sent a delivery")
                }
            }
        }
    }

    @Test func aSessionComingBackWithItsEndpointDoesNotKickANewerLogin() async throws {
        try await withCenter { center in
            try await FakeEndpoint.with("ep2", port: center.port) { ep2 in
                // bob logged in again through ep2 (at time 5) while ep1's link was down.
                try await ep2.send(SessionOpen(info: SessionInfo(session: "ep2:1", user: "bob@alpha.example", login: "l2", device: "d", since: 5)))
                _ = try await ep2.next { $0.type == LinkMessageType.sessionReady.rawValue }
                // ep1 relinks, still holding bob's older session (time 1).
                let older = SessionInfo(session: "ep1:1", user: "bob@alpha.example", login: "l1", device: "d", since: 1)
                try await FakeEndpoint.with("ep1", port: center.port, sessions: [older]) { ep1 in
                    let kick = try KickSession(packet: try await ep1.next { $0.type == LinkMessageType.kickSession.rawValue })
                    #expect(kick.session == "ep1:1")
                }
                #expect(await center.center.onlineUsers == ["bob@alpha.example"])
                #expect(await center.presence.lookup(["bob@alpha.example"])["bob@alpha.example"]?.session == "ep2:1")
            }
        }
    }

    @Test func aRetriedSendIsAcceptedAgainButDeliveredOnce() async throws {
        try await withCenter { center in
            try await FakeEndpoint.with("ep1", port: center.port) { ep1 in
                _ = try await ep1.open("alice@alpha.example", session: "ep1:1")
                _ = try await ep1.open("bob@alpha.example", session: "ep1:2")
                let chat = Chat(target: .user("bob@alpha.example"), content: .text("once"), clientMessageID: "retry-me")
                try await ep1.request(chat, session: "ep1:1")
                let first = try ChatAccepted(packet: try await ep1.delivery(for: "ep1:1"))
                _ = try ChatDelivery(packet: try await ep1.delivery(for: "ep1:2"))
                _ = try await ep1.delivery(for: "ep1:1")  // the sender's copy (a seed 000 client)
                try await ep1.request(chat, session: "ep1:1")
                let second = try ChatAccepted(packet: try await ep1.delivery(for: "ep1:1"))
                #expect(second.serverMessageID == first.serverMessageID && second.time == first.time)
                // A marker message proves nothing else was sent to bob in between.
                try await ep1.request(Chat(target: .user("bob@alpha.example"), content: .text("marker"), clientMessageID: "m"), session: "ep1:1")
                let next = try ChatDelivery(packet: try await ep1.delivery(for: "ep1:2"))
                #expect(next.content == .text("marker"))
                #expect(try await center.center.store.pendingCount() == 2)
            }
        }
    }

    @Test func anOfflineRecipientGetsEverythingInOrderAtLogin() async throws {
        try await withCenter { center in
            try await FakeEndpoint.with("ep1", port: center.port) { ep1 in
                _ = try await ep1.open("alice@alpha.example", session: "ep1:1")
                for index in 0..<5 {
                    try await ep1.request(
                        Chat(target: .user("carol@alpha.example"), content: .text("m\(index)"), clientMessageID: "c\(index)"), session: "ep1:1")
                    _ = try ChatAccepted(packet: try await ep1.delivery(for: "ep1:1", type: .chatAccepted))
                }
                try await FakeEndpoint.with("ep2", port: center.port) { ep2 in
                    let initial = try await ep2.open("carol@alpha.example", session: "ep2:1")
                    #expect(initial.messages.map(\.content) == (0..<5).map { .text("m\($0)") })
                    #expect(initial.messages.map(\.serverMessageID) == initial.messages.map(\.serverMessageID).sorted())
                }
            }
        }
    }

    @Test func fetchOfflineResendsWhatIsUnackedInPagesThenSaysWhetherMoreWait() async throws {
        try await withCenter { center in
            try await FakeEndpoint.with("ep1", port: center.port) { ep1 in
                _ = try await ep1.open("mia@alpha.example", session: "ep1:1")
                for index in 0..<3 {
                    try await ep1.request(Chat(target: .user("ned@alpha.example"), content: .text("f\(index)"), clientMessageID: "f\(index)"), session: "ep1:1")
                    _ = try await ep1.delivery(for: "ep1:1", type: .chatAccepted)
                }
                let initial = try await ep1.open("ned@alpha.example", session: "ep1:2")
                #expect(initial.messages.count == 3)
                try await ep1.request(FetchOffline(limit: 2), session: "ep1:2")
                let first = try ChatDelivery(packet: try await ep1.delivery(for: "ep1:2", type: .chatDelivery))
                let second = try ChatDelivery(packet: try await ep1.delivery(for: "ep1:2", type: .chatDelivery))
                #expect([first.content, second.content] == [.text("f0"), .text("f1")])
                let done = try OfflineDone(packet: try await ep1.delivery(for: "ep1:2", type: .offlineDone))
                #expect(done.count == 2 && done.more)
                try await ep1.request(DeliveryAck(ids: initial.messages.map(\.serverMessageID)), session: "ep1:2")
                try await ep1.request(FetchOffline(limit: 10_000), session: "ep1:2")
                let empty = try OfflineDone(packet: try await ep1.delivery(for: "ep1:2", type: .offlineDone))
                #expect(empty.count == 0 && !empty.more)
            }
        }
    }

    @Test func aNewerLoginKicksTheOlderSession() async throws {
        try await withCenter { center in
            try await FakeEndpoint.with("ep1", port: center.port) { ep1 in
                try await FakeEndpoint.with("ep2", port: center.port) { ep2 in
                    _ = try await ep1.open("dave@alpha.example", session: "ep1:7")
                    _ = try await ep2.open("dave@alpha.example", session: "ep2:9", senderCopies: false)
                    let kick = try KickSession(packet: try await ep1.next { $0.type == LinkMessageType.kickSession.rawValue })
                    #expect(kick.session == "ep1:7")
                    let entry = await center.presence.lookup(["dave@alpha.example"])["dave@alpha.example"]
                    #expect(entry?.session == "ep2:9" && entry?.endpoint == "ep2")

                    // Live deliveries, best-effort ones too, go to the newer session only; the
                    // kicked one sends nothing more. (With ids reserved for best-effort chats,
                    // after the warm-up, these could be routed on the links' event loops.)
                    _ = try await ep1.open("carol@alpha.example", session: "ep1:8", userID: 3, senderCopies: false)
                    try await ep2.barrier(session: "ep2:9")
                    try await ep1.barrier(session: "ep1:8")
                    try await ep2.warmUp(from: "ep2:9", to: "carol@alpha.example", on: ep1, session: "ep1:8")
                    try await ep1.request(
                        Chat(target: .user("dave@alpha.example"), content: .text("hi"), clientMessageID: "c1", qos: .bestEffort), session: "ep1:8")
                    #expect(try ChatDelivery(packet: try await ep2.delivery(for: "ep2:9")).clientMessageID == "c1")
                    try await ep1.request(
                        Chat(target: .user("carol@alpha.example"), content: .text("as dave"), clientMessageID: "k1", qos: .bestEffort), session: "ep1:7")
                    try await ep1.barrier(session: "ep1:8")
                    #expect(!ep1.holds(for: "ep1:7"), "the kicked session was sent a delivery")
                    #expect(!ep1.holds(for: "ep1:8"), "the kicked session's chat was delivered")
                }
            }
        }
    }

    @Test func anEndpointCannotActForAnotherEndpointsSession() async throws {
        try await withCenter { center in
            try await FakeEndpoint.with("ep1", port: center.port) { ep1 in
                try await FakeEndpoint.with("ep2", port: center.port) { ep2 in
                    _ = try await ep1.open("erin@alpha.example", session: "ep1:1")
                    _ = try await ep2.open("frank@alpha.example", session: "ep2:1")
                    try await ep2.barrier(session: "ep2:1")
                    try await ep1.warmUp(from: "ep1:1", to: "frank@alpha.example", on: ep2, session: "ep2:1")
                    // ep2 claims erin's session: ignored, whatever the QoS.
                    for qos in QoS.allCases {
                        try await ep2.request(
                            Chat(target: .user("frank@alpha.example"), content: .text("x"), clientMessageID: "f", qos: qos), session: "ep1:1")
                    }
                    try await ep1.request(Chat(target: .user("frank@alpha.example"), content: .text("real"), clientMessageID: "r"), session: "ep1:1")
                    let delivered = try ChatDelivery(packet: try await ep2.delivery(for: "ep2:1"))
                    #expect(delivered.content == .text("real"))
                }
            }
        }
    }

    @Test func badRequestsGetCodedErrors() async throws {
        try await withCenter { center in
            try await FakeEndpoint.with("ep1", port: center.port) { ep1 in
                _ = try await ep1.open("gina@alpha.example", session: "ep1:1")
                try await ep1.request(Chat(target: .user("x@beta.example"), content: .text("x"), clientMessageID: "1"), session: "ep1:1")
                #expect(try ErrorMessage(packet: try await ep1.delivery(for: "ep1:1")).code == .unknownRecipient)
                try await ep1.request(
                    Chat(target: .user("hal@alpha.example"), content: .image(bytes: Array(repeating: 1, count: 2000), mime: "image/png"), clientMessageID: "2"),
                    session: "ep1:1")
                #expect(try ErrorMessage(packet: try await ep1.delivery(for: "ep1:1")).code == .contentTooLarge)
                try await ep1.request(Chat(target: .group(7), content: .text("x"), clientMessageID: "3"), session: "ep1:1")
                #expect(try ErrorMessage(packet: try await ep1.delivery(for: "ep1:1")).code == .notAMember)
                try await ep1.send(FromClient(session: "ep1:1", payload: Packet(type: 6, body: ["type": .int(0)])))
                #expect(try ErrorMessage(packet: try await ep1.delivery(for: "ep1:1")).code == .missingKey)
            }
        }
    }

    @Test func addressesAreCheckedAndTakenInLowerCase() async throws {
        try await withCenter { center in
            try await FakeEndpoint.with("ep1", port: center.port) { ep1 in
                _ = try await ep1.open("kim@alpha.example", session: "ep1:1")
                _ = try await ep1.open("lee@alpha.example", session: "ep1:2")
                let malformed = ["lee", "@alpha.example", "lee@", "lee@alpha.example@alpha.example", "a@b@alpha.example",
                                 String(repeating: "a", count: 33) + "@alpha.example", "lee@alpha.examples", "lee@beta.example"]
                for (index, address) in malformed.enumerated() {
                    // QoS 0 too: a refusal names the chat, which gets no other answer.
                    let qos: QoS = index.isMultiple(of: 2) ? .atLeastOnce : .bestEffort
                    try await ep1.request(Chat(target: .user(address), content: .text("x"), clientMessageID: "m\(index)", qos: qos), session: "ep1:1")
                    let refusal = try ErrorMessage(packet: try await ep1.delivery(for: "ep1:1"))
                    #expect(refusal.code == .unknownRecipient, "\(address)")
                    #expect(refusal.clientMessageID == "m\(index)")
                }
                for (index, address) in ["LEE@Alpha.Example", "lee@ALPHA.EXAMPLE", "lee@alpha.example"].enumerated() {
                    try await ep1.request(Chat(target: .user(address), content: .text("hi"), clientMessageID: "ok\(index)"), session: "ep1:1")
                    let delivered = try ChatDelivery(packet: try await ep1.delivery(for: "ep1:2"))
                    #expect(delivered.targetName == "lee@alpha.example" && delivered.clientMessageID == "ok\(index)")
                    let accepted = try ChatAccepted(packet: try await ep1.delivery(for: "ep1:1"))
                    let copy = try ChatDelivery(packet: try await ep1.delivery(for: "ep1:1"))
                    #expect(accepted.clientMessageID == "ok\(index)" && accepted.targetID == delivered.targetID)
                    #expect(copy.targetName == "lee@alpha.example" && copy.serverMessageID == accepted.serverMessageID)
                }
            }
        }
    }

    @Test func friendsSeeEachOthersPresence() async throws {
        try await withCenter { center in
            try await FakeEndpoint.with("ep1", port: center.port) { ep1 in
                _ = try await ep1.open("ivan@alpha.example", session: "ep1:1")
                _ = try await ep1.open("judy@alpha.example", session: "ep1:2")
                try await ep1.request(AddFriend(to: "judy@alpha.example"), session: "ep1:1")
                #expect(try AddFriendResult(packet: try await ep1.delivery(for: "ep1:1")).status == .added)
                #expect(try AddFriendResult(packet: try await ep1.delivery(for: "ep1:2")).username == "ivan@alpha.example")
                try await ep1.request(AddFriend(to: "judy@alpha.example"), session: "ep1:1")
                #expect(try AddFriendResult(packet: try await ep1.delivery(for: "ep1:1")).status == .alreadyFriends)
                try await ep1.request(AddFriend(to: "nobody@alpha.example"), session: "ep1:1")
                #expect(try ErrorMessage(packet: try await ep1.delivery(for: "ep1:1")).code == .unknownRecipient)

                try await ep1.request(FriendPresenceQuery(), session: "ep1:1")
                let list = try FriendPresenceList(packet: try await ep1.delivery(for: "ep1:1"))
                #expect(list.friends.map(\.username) == ["judy@alpha.example"] && list.friends[0].online)

                try await ep1.send(SessionClose(session: "ep1:2", reason: "closed"))
                let notice = try FriendPresenceNotice(packet: try await ep1.delivery(for: "ep1:1"))
                #expect(notice.username == "judy@alpha.example" && !notice.online)
            }
        }
    }

    @Test func acknowledgedMessagesSurviveARestartAndNothingIsDeliveredTwice() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("myim-center-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        var first = try await TestCenter.start(directory: directory)
        try await FakeEndpoint.with("ep1", port: first.port) { ep1 in
            _ = try await ep1.open("kate@alpha.example", session: "ep1:1")
            for index in 0..<3 {
                try await ep1.request(Chat(target: .user("leo@alpha.example"), content: .text("t\(index)"), clientMessageID: "k\(index)"), session: "ep1:1")
                _ = try ChatAccepted(packet: try await ep1.delivery(for: "ep1:1", type: .chatAccepted))
            }
        }
        await first.stop()
        first = try await TestCenter.start(directory: directory)
        defer { Task { [first] in await first.stop() } }
        try await FakeEndpoint.with("ep1", port: first.port) { ep1 in
            // The sender retries its last message after the restart: recognised.
            _ = try await ep1.open("kate@alpha.example", session: "ep1:2")
            try await ep1.request(Chat(target: .user("leo@alpha.example"), content: .text("t2"), clientMessageID: "k2"), session: "ep1:2")
            _ = try ChatAccepted(packet: try await ep1.delivery(for: "ep1:2", type: .chatAccepted))
            let initial = try await ep1.open("leo@alpha.example", session: "ep1:3")
            #expect(initial.messages.map(\.content) == [.text("t0"), .text("t1"), .text("t2")])
            try await ep1.request(DeliveryAck(ids: initial.messages.map(\.serverMessageID)), session: "ep1:3")
            try await expectEventually { try await first.center.store.pendingCount() == 0 }
        }
        await first.stop()
    }
}

/// Polls `condition` for up to 5 s.
func expectEventually(_ condition: () async throws -> Bool, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    let deadline = ContinuousClock.now + .seconds(5)
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    Issue.record("the condition did not become true within 5 s", sourceLocation: sourceLocation)
}
