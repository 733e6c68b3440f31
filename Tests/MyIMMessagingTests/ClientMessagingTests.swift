import Foundation
import MyIMCenter
import MyIMClient
import MyIMSecureChannel
import MyIMWire
import Testing

/// The messaging client: local history, the choice of endpoint from the signed server list,
/// the connection against a scripted endpoint, and end to end through a real center and two
/// real endpoints.
@Suite("Client messaging", .timeLimit(.minutes(1)))
struct ClientMessagingTests {
    private static func delivery(
        id: Int64, from sender: String = "bob@alpha.example", to target: String = "alice@alpha.example",
        content: ChatContent = .text("hi"), time: Int64 = 1_800_000_000_000
    ) -> ChatDelivery {
        ChatDelivery(
            kind: .user, time: time, senderID: 2, senderName: sender, targetID: 1, targetName: target, content: content,
            serverMessageID: id, clientMessageID: "c-\(id)", qos: .atLeastOnce, serverID: "alpha-center")
    }

    private static func permissions(_ path: String) throws -> Int {
        try #require(FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber).intValue & 0o777
    }

    // MARK: - History

    @Test func historyLinesUseMessage18sKeysInWireOrder() throws {
        let temporary = ClientMessagingHome()
        defer { temporary.remove() }
        let history = MessageHistory(home: temporary.home, owner: "alice@alpha.example")
        #expect(try history.append(Self.delivery(id: 1, content: .text("héllo \"there\"\n/"))))
        #expect(try history.append(Self.delivery(id: 2, content: .image(bytes: [0x89, 0x50, 0x4e, 0x47, 0, 255], mime: "image/png"))))

        let path = history.path(forPeer: "bob@alpha.example")
        #expect(path == temporary.home.path + "/history/bob@alpha.example.jsonl")
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 3 && lines[2].isEmpty)
        #expect(lines[0] == """
            {"type":0,"time":1800000000000,"sender_id":2,"sender_name":"bob@alpha.example","target_id":1,\
            "target_name":"alice@alpha.example","message":{"type":0,"data":"héllo \\"there\\"\\n/"},"server_msg_id":1,\
            "client_msg_id":"c-1","qos":1,"server_id":"alpha-center"}
            """)
        let image = try JSONSerialization.jsonObject(with: Data(lines[1].utf8)) as? [String: Any]
        let message = try #require(image?["message"] as? [String: Any])
        #expect(message["type"] as? Int == 1)
        #expect(message["data"] as? String == Data([0x89, 0x50, 0x4e, 0x47, 0, 255]).base64EncodedString())
        #expect(message["mime"] as? String == "image/png")

        // Read back, the records are the deliveries.
        let records = try history.records(withPeer: "bob@alpha.example")
        #expect(records.map(\.delivery) == [Self.delivery(id: 1, content: .text("héllo \"there\"\n/")),
                                            Self.delivery(id: 2, content: .image(bytes: [0x89, 0x50, 0x4e, 0x47, 0, 255], mime: "image/png"))])
        #expect(try Self.permissions(history.directory) == 0o700)
        #expect(try Self.permissions(path) == 0o600)
    }

    @Test func historyDeduplicatesByServerMessageIDAlsoAcrossInstances() throws {
        let temporary = ClientMessagingHome()
        defer { temporary.remove() }
        let history = MessageHistory(home: temporary.home, owner: "alice@alpha.example")
        #expect(try history.append(Self.delivery(id: 10)))
        #expect(try history.append(Self.delivery(id: 11)))
        #expect(try !history.append(Self.delivery(id: 10)))
        // Another process (a fresh instance) after a crash gets the same messages again.
        let restarted = MessageHistory(home: temporary.home, owner: "alice@alpha.example")
        #expect(try !restarted.append(Self.delivery(id: 11)))
        #expect(try restarted.append(Self.delivery(id: 12)))
        // The first instance sees what the other appended.
        #expect(try !history.append(Self.delivery(id: 12)))
        #expect(try history.records(withPeer: "bob@alpha.example").map(\.serverMessageID) == [10, 11, 12])
    }

    @Test func historyFilesAreNamedByThePeerAndSurviveATornLine() throws {
        let temporary = ClientMessagingHome()
        defer { temporary.remove() }
        let history = MessageHistory(home: temporary.home, owner: "Alice@alpha.example")
        // What alice sent is filed under the recipient; what she received under the sender.
        try history.append(Self.delivery(id: 1, from: "alice@alpha.example", to: "carol@alpha.example"))
        try history.append(Self.delivery(id: 2, from: "Carol@alpha.example", to: "alice@alpha.example"))
        #expect(try history.records(withPeer: "carol@alpha.example").map(\.serverMessageID) == [1, 2])
        #expect(history.path(forPeer: "../evil/x").hasSuffix("/history/_.._evil_x.jsonl"))

        // A crash in the middle of a line: the next record still gets a line of its own.
        let path = history.path(forPeer: "carol@alpha.example")
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("{\"type\":0,\"ti".utf8))
        try handle.close()
        #expect(try MessageHistory(home: temporary.home, owner: "alice@alpha.example").append(Self.delivery(id: 3, from: "carol@alpha.example")))
        #expect(try history.records(withPeer: "carol@alpha.example").map(\.serverMessageID) == [1, 2, 3])
    }

    // MARK: - Choosing the endpoint

    private static let fingerprintA = "sha256:" + String(repeating: "a", count: 64)
    private static let fingerprintB = "sha256:" + String(repeating: "b", count: 64)

    @Test func candidatesFollowPriorityAndSkipUnusableEntries() throws {
        var session = clientMessagingSession(servers: [])
        session.servers = [
            SavedServer(name: "late", host: "10.0.0.3", port: 7003, priority: 20, fingerprint: Self.fingerprintA),
            SavedServer(name: "bad-key", host: "10.0.0.9", port: 7009, priority: 0, fingerprint: "md5:nope"),
            SavedServer(name: "b-first", host: "10.0.0.2", port: 7002, priority: 10, fingerprint: Self.fingerprintB),
            SavedServer(name: "a-first", host: "10.0.0.1", port: 7001, priority: 10, fingerprint: Self.fingerprintA),
        ]
        let candidates = try session.endpointCandidates()
        #expect(candidates.map(\.name) == ["a-first", "b-first", "late"])
        #expect(candidates[1].fingerprint == KeyFingerprint(Self.fingerprintB))
        #expect(candidates[1].address == ServerAddress(host: "10.0.0.2", port: 7002))

        // An explicit listed endpoint pins its listed key.
        let explicit = try session.endpointCandidates(explicit: "10.0.0.3:7003")
        #expect(explicit.map(\.name) == ["late"])
        #expect(explicit[0].fingerprint == KeyFingerprint(Self.fingerprintA))
    }

    @Test func anExplicitEndpointOutsideTheListIsRefusedWithoutAPin() throws {
        let session = clientMessagingSession(servers: [
            SavedServer(name: "ep1", host: "10.0.0.1", port: 7001, priority: 0, fingerprint: Self.fingerprintA),
        ])
        let refused = #expect(throws: ClientError.self) { try session.endpointCandidates(explicit: "10.0.0.5:7005") }
        #expect(refused?.code == .serverKeyMismatch)
        #expect(refused?.message.contains("not in the signed server list") == true)
        // With a pin it is allowed, pinned to that key.
        let pinned = try session.endpointCandidates(explicit: "10.0.0.5:7005", pin: KeyFingerprint(Self.fingerprintB))
        #expect(pinned == [EndpointCandidate(
            name: nil, address: ServerAddress(host: "10.0.0.5", port: 7005), fingerprint: try #require(KeyFingerprint(Self.fingerprintB)),
            priority: nil)])
        // A pin contradicting the signed list is refused.
        let contradicted = #expect(throws: ClientError.self) {
            try session.endpointCandidates(explicit: "10.0.0.1:7001", pin: KeyFingerprint(Self.fingerprintB))
        }
        #expect(contradicted?.code == .serverKeyMismatch)
        // An empty list says to log in again.
        let empty = #expect(throws: ClientError.self) { try clientMessagingSession(servers: []).endpointCandidates() }
        #expect(empty?.message.contains("log in again") == true)
    }

    @Test func openFallsBackToTheNextEndpointWhenTheFirstRefusesConnections() async throws {
        let temporary = ClientMessagingHome()
        defer { temporary.remove() }
        let fake = try await ClientMessagingFakeEndpoint.start("second")
        let refusedPort = try await clientMessagingRefusedPort()
        let session = clientMessagingSession(servers: [
            fake.entry(priority: 5),
            SavedServer(name: "first", host: "127.0.0.1", port: refusedPort, priority: 1, fingerprint: Self.fingerprintA),
        ])
        let connection = try await MessagingConnection.open(session: session, home: temporary.home)
        #expect(connection.endpoint.name == "second")
        #expect(connection.authOK.node == "second")
        #expect(connection.skipped.map(\.endpoint.name) == ["first"])
        #expect(connection.skipped.first?.error.code == .notEstablished)
        #expect(try await connection.quit().lastSeen == 42)
        let auth = try TokenAuth(packet: try #require(await fake.received.first))
        #expect(auth.token == "token")
        #expect(auth.device == "sha256:device")
        #expect(!auth.senderCopies, "the library makes the user's own messages from their 8")
        await fake.stop()
    }

    @Test func openRefusesAnEndpointWithAnotherKeyThanTheListAndAnUnlistedOne() async throws {
        let temporary = ClientMessagingHome()
        defer { temporary.remove() }
        let fake = try await ClientMessagingFakeEndpoint.start("ep1")
        // The list says another key: the handshake is refused (203), nothing is sent.
        var entry = fake.entry(priority: 0)
        entry.fingerprint = Self.fingerprintA
        let wrongKey = await #expect(throws: ClientError.self) {
            try await MessagingConnection.open(session: clientMessagingSession(servers: [entry]), home: temporary.home)
        }
        #expect(wrongKey?.code == .serverKeyMismatch)
        #expect(await fake.received.isEmpty)

        // Explicit but unlisted: refused before connecting; with its pin, accepted.
        let session = clientMessagingSession(servers: [
            SavedServer(name: "other", host: "127.0.0.1", port: 1, priority: 0, fingerprint: Self.fingerprintA),
        ])
        let unlisted = await #expect(throws: ClientError.self) {
            try await MessagingConnection.open(session: session, home: temporary.home, endpoint: "127.0.0.1:\(fake.port)")
        }
        #expect(unlisted?.code == .serverKeyMismatch)
        #expect(await fake.connections == 1)
        let pinned = try await MessagingConnection.open(
            session: session, home: temporary.home, endpoint: "127.0.0.1:\(fake.port)", pin: fake.fingerprint)
        #expect(pinned.endpoint.name == nil)
        await pinned.close()
        await fake.stop()
    }

    // MARK: - The connection, against a scripted endpoint

    @Test func aRefusedTokenIsTheServersErrorWithAHint() async throws {
        let temporary = ClientMessagingHome()
        defer { temporary.remove() }
        let fake = try await ClientMessagingFakeEndpoint.start("ep1")
        await fake.refuseTokens(with: ErrorMessage(code: .tokenExpired, data: "the token expired"))
        let error = await #expect(throws: ClientError.self) {
            try await MessagingConnection.open(session: clientMessagingSession(servers: [fake.entry(priority: 0)]), home: temporary.home)
        }
        #expect(error?.code == .tokenExpired)
        #expect(error?.message.hasPrefix("the token expired") == true)
        #expect(error?.message.contains("log in again") == true)
        await fake.stop()
    }

    @Test func anExpiredSavedTokenIsRefusedBeforeConnecting() async throws {
        var session = clientMessagingSession(servers: [])
        session.expires = 1
        let error = await #expect(throws: ClientError.self) {
            try await MessagingConnection.open(session: session, home: ClientHome(path: "/nonexistent"))
        }
        #expect(error?.code == .tokenExpired)
    }

    @Test func unreadMessagesAreInHistoryAndSendsRetryOnceOn330WithTheSameID() async throws {
        let temporary = ClientMessagingHome()
        defer { temporary.remove() }
        let fake = try await ClientMessagingFakeEndpoint.start("ep1")
        await fake.setUnread([Self.delivery(id: 1, time: 10), Self.delivery(id: 2, time: 20)])
        var options = MessagingOptions()
        options.centerRetryDelay = .milliseconds(50)
        let connection = try await MessagingConnection.open(
            session: clientMessagingSession(servers: [fake.entry(priority: 0)]), home: temporary.home, options: options)
        #expect(connection.initialState.messages.map(\.serverMessageID) == [1, 2])
        let history = try #require(connection.history)
        #expect(try history.records(withPeer: "bob@alpha.example").map(\.serverMessageID) == [1, 2])

        await fake.refuseChats(1)
        let accepted = try await connection.send(text: "hello", to: "bob")
        #expect(accepted.serverMessageID == 101)
        let chats = await fake.chats
        #expect(chats.count == 2)
        #expect(chats[0].clientMessageID == chats[1].clientMessageID)
        #expect(chats[0].clientMessageID == accepted.clientMessageID)
        #expect(chats[0].target == .user("bob@alpha.example"))

        // Twice 330: the error reaches the caller.
        await fake.refuseChats(2)
        let error = await #expect(throws: ClientError.self) { try await connection.send(text: "again", to: "bob@alpha.example") }
        #expect(error?.code == .centerUnavailable)

        // QoS 0 is answered by nothing: no server id. Refused, it comes back as an event naming it.
        let bestEffort = try await connection.send(text: "fast", to: "bob@alpha.example", qos: .bestEffort)
        #expect(bestEffort.serverMessageID == 0)
        #expect(try await connection.ping() < .seconds(5))  // The fake has handled it: refuse the next.
        await fake.refuseChats(1)
        let refused = try await connection.send(text: "refused", to: "bob@alpha.example", qos: .bestEffort)
        #expect(try await connection.ping() < .seconds(5))
        #expect(await fake.chats.map(\.clientMessageID).suffix(2) == [bestEffort.clientMessageID, refused.clientMessageID])

        // Images over the limit are refused before sending.
        let big = await #expect(throws: ClientError.self) {
            try await connection.send(image: [UInt8](repeating: 0, count: 4 * 1024 * 1024 + 1), mime: "image/png", to: "bob@alpha.example")
        }
        #expect(big?.code == .contentTooLarge)

        // The accepted QoS 1 chat is the user's own delivery, made from its 8 (the server sends
        // no copy), and in history with the unread ones; the QoS 0 ones are not kept.
        var events: [IncomingEvent] = []
        while let event = await connection.next(timeout: .milliseconds(200)) { events.append(event) }
        let own = ChatDelivery(
            kind: .user, time: 5101, senderID: 7, senderName: "alice@alpha.example", targetID: 8, targetName: "bob@alpha.example",
            content: .text("hello"), serverMessageID: 101, clientMessageID: accepted.clientMessageID, qos: .atLeastOnce)
        #expect(events.first == .delivery(own))
        #expect(events.count == 2)
        if case .chatRefused(let id, let error)? = events.dropFirst().first {
            #expect(id == refused.clientMessageID && error.code == .centerUnavailable)
        } else {
            Issue.record("expected the QoS 0 chat's refusal, got \(events)")
        }
        #expect(try history.records(withPeer: "bob@alpha.example").map(\.serverMessageID) == [1, 2, 101])
        #expect(try await connection.quit().lastSeen == 42)
        #expect(await connection.closedReason?.message.contains("quit") == true)
        await fake.stop()
    }

    @Test func aCopyAServerSendsAnywayIsNotASecondMessage() async throws {
        let temporary = ClientMessagingHome()
        defer { temporary.remove() }
        let fake = try await ClientMessagingFakeEndpoint.start("ep1")
        let connection = try await MessagingConnection.open(
            session: clientMessagingSession(servers: [fake.entry(priority: 0)]), home: temporary.home)
        await fake.sendCopiesAnyway()
        let accepted = try await connection.send(text: "once", to: "bob")
        #expect(try await connection.ping() < .seconds(5))  // The copy, sent before the pong, has been read.
        var events: [IncomingEvent] = []
        while let event = await connection.next(timeout: .milliseconds(200)) { events.append(event) }
        #expect(events.count == 1, "\(events)")
        guard case .delivery(let own)? = events.first else {
            Issue.record("expected the user's own message, got \(events)")
            return
        }
        #expect(own.serverMessageID == accepted.serverMessageID && own.serverID == nil, "made from the 8, not the copy")
        #expect(try connection.history?.records(withPeer: "bob@alpha.example").map(\.serverMessageID) == [accepted.serverMessageID])
        await connection.close()
        await fake.stop()
    }

    @Test func anAcceptanceThatComesAfterTheSendGaveUpStillRecordsTheMessage() async throws {
        let temporary = ClientMessagingHome()
        defer { temporary.remove() }
        let fake = try await ClientMessagingFakeEndpoint.start("ep1")
        var options = MessagingOptions()
        options.replyTimeout = .milliseconds(200)
        let connection = try await MessagingConnection.open(
            session: clientMessagingSession(servers: [fake.entry(priority: 0)]), home: temporary.home, options: options)
        await fake.delayAccepts(by: .milliseconds(600))
        let gaveUp = await #expect(throws: ClientError.self) { try await connection.send(.text("slow"), to: "bob", clientMessageID: "slow-1") }
        #expect(gaveUp?.code == .centerUnavailable)
        // The server stored it and will deliver it: when its 8 comes, it is the user's message all the same.
        guard case .delivery(let own)? = await connection.next(timeout: .seconds(5)) else {
            Issue.record("no delivery for the late 8")
            return
        }
        #expect(own.clientMessageID == "slow-1" && own.serverMessageID == 101 && own.content == .text("slow"))
        #expect(try connection.history?.records(withPeer: "bob@alpha.example").map(\.serverMessageID) == [101])
        await connection.close()
        await fake.stop()
    }

    // MARK: - End to end

    @Test func aMessageToOneselfComesOnceAndIsAcknowledged() async throws {
        try await ClientMessagingCluster.with(homes: 1) { cluster, homes in
            let session = try await cluster.session("alice@alpha.example", userID: 11, priorities: (1, 2))
            let alice = try await MessagingConnection.open(session: session, home: homes[0].home)
            let accepted = try await alice.send(text: "note to self", to: "alice")
            // It comes as the recipient's 18, once: the client makes no own copy of it as well.
            var deliveries: [ChatDelivery] = []
            while let event = await alice.next(timeout: .milliseconds(300)) {
                if case .delivery(let delivery) = event { deliveries.append(delivery) }
            }
            #expect(deliveries.map(\.serverMessageID) == [accepted.serverMessageID])
            #expect(deliveries.first?.targetID == 11 && accepted.targetID == 11)
            #expect(try alice.history?.records(withPeer: "alice@alpha.example").map(\.serverMessageID) == [accepted.serverMessageID])
            // Addressed to alice, so acknowledged by her: it does not come back at every login.
            try await alice.acknowledge(deliveries)
            try await expectEventually { try await cluster.center.store.pendingCount() == 0 }
            try await alice.quit()
        }
    }

    @Test func aliceAndBobChatAcrossTwoEndpointsAndBobGetsWhatCameWhileOffline() async throws {
        try await ClientMessagingCluster.with(homes: 2) { cluster, homes in
            let aliceHome = homes[0]
            let bobHome = homes[1]
            let aliceSession = try await cluster.session("alice@alpha.example", userID: 11, priorities: (1, 2))
            let bobSession = try await cluster.session("bob@alpha.example", userID: 22, priorities: (2, 1))
            let bob = try await MessagingConnection.open(session: bobSession, home: bobHome.home)
            let alice = try await MessagingConnection.open(session: aliceSession, home: aliceHome.home)
            #expect(alice.endpoint.name == "ep1")
            #expect(bob.endpoint.name == "ep2")
            #expect(bob.authOK.username == "bob@alpha.example")

            let image: [UInt8] = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a] + (0..<2000).map { UInt8($0 % 251) }
            let text = try await alice.send(text: "hello bob", to: "bob@alpha.example")
            let picture = try await alice.send(image: image, mime: "image/png", to: "bob@alpha.example")
            #expect(picture.serverMessageID > text.serverMessageID)

            let received = await clientMessagingDeliveries(2, on: bob)
            #expect(received.map(\.content) == [.text("hello bob"), .image(bytes: image, mime: "image/png")])
            #expect(received.map(\.serverMessageID) == [text.serverMessageID, picture.serverMessageID])
            #expect(received.allSatisfy { $0.senderName == "alice@alpha.example" && $0.senderID == 11 && $0.targetID == 22 })
            try await bob.ack(received.map(\.serverMessageID))

            // Alice's own messages reach her history too: the same deliveries as bob's, made
            // from her 8s (the center sends her no copy), except for the node that stored them.
            let copies = await clientMessagingDeliveries(2, on: alice)
            #expect(copies == received.map { delivery in
                var own = delivery
                own.serverID = nil
                return own
            })
            let aliceHistory = try #require(alice.history)
            #expect(try aliceHistory.records(withPeer: "bob@alpha.example").compactMap(\.delivery) == copies)
            let bobHistory = try #require(bob.history)
            #expect(try bobHistory.records(withPeer: "alice@alpha.example").compactMap(\.delivery) == received)

            // QoS 0 to a live recipient.
            let quick = try await alice.send(text: "quick", to: "bob@alpha.example", qos: .bestEffort)
            let quickDelivery = await clientMessagingDeliveries(1, on: bob)
            #expect(quickDelivery.map(\.clientMessageID) == [quick.clientMessageID])
            #expect(quickDelivery.first?.qos == .bestEffort && quick.serverMessageID == 0)

            // Bob leaves; three messages wait for him.
            try await bob.quit()
            var offline: [ChatAccepted] = []
            for index in 1...3 { offline.append(try await alice.send(text: "offline \(index)", to: "bob@alpha.example")) }

            let bobAgain = try await MessagingConnection.open(session: bobSession, home: bobHome.home)
            var waiting = bobAgain.initialState.messages
            if waiting.count < 3 { waiting += await clientMessagingDeliveries(3 - waiting.count, on: bobAgain) }
            #expect(waiting.map(\.serverMessageID) == offline.map(\.serverMessageID))
            #expect(waiting.map(\.content) == [.text("offline 1"), .text("offline 2"), .text("offline 3")])
            #expect(waiting.map(\.time) == waiting.map(\.time).sorted())
            try await bobAgain.ack(waiting.map(\.serverMessageID))
            let ids = try bobHistory.records(withPeer: "alice@alpha.example").map(\.serverMessageID)
            #expect(ids == [text.serverMessageID, picture.serverMessageID] + quickDelivery.map(\.serverMessageID) + offline.map(\.serverMessageID))

            // A newer login of bob takes over: the older connection is kicked.
            let bobThird = try await MessagingConnection.open(session: bobSession, home: bobHome.home)
            #expect(bobThird.initialState.messages.isEmpty)
            var kicked = false
            while let event = await bobAgain.next(timeout: .seconds(5)) {
                if event == .kicked { kicked = true }
            }
            #expect(kicked)
            #expect(await bobAgain.closedReason?.code == .notLoggedIn)

            try await bobThird.quit()
            try await alice.quit()
            #expect(try await cluster.center.store.pendingCount() == 0)
        }
    }
}
