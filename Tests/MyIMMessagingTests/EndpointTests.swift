import Foundation
import MyIMAuth
@testable import MyIMEndpoint
import MyIMLink
import MyIMPresence
import MyIMWire
import Testing

/// The endpoint against a scripted center: token auth, relaying both ways, kicks, the link
/// going down and coming back, presence heartbeats, limits and timeouts.
@Suite struct EndpointTests {
    // MARK: - Authentication

    @Test func tokenAuthGetsAuthOKThenInitialStateInOrder() async throws {
        try await EndpointHarness.with { harness in
            let client = try await harness.connect()
            try await client.send(TokenAuth(token: try await harness.token(login: "login-42"), device: "sha256:device"))

            let authOK = try AuthOK(packet: try #require(await client.next()))
            #expect(authOK.username == "alice@alpha.example")
            #expect(authOK.sessionID == "login-42")
            #expect(authOK.node == EndpointHarness.node)
            let initial = try #require(await client.next())
            #expect(initial.type == MessageType.initialState.rawValue)
            #expect(try InitialState(packet: initial) == InitialState(friends: [], groups: [], messages: []))

            let open = try SessionOpen(packet: try #require(await harness.center.take(.sessionOpen)))
            #expect(open.info.user == "alice@alpha.example")
            #expect(open.info.login == "login-42")
            #expect(open.info.session == "\(EndpointHarness.node):1")
            #expect(open.info.device == TokenClaims.deviceHash(of: "sha256:device"))
            #expect(open.info.userID == 7)
            #expect(open.info.senderCopies, "a 41 without sender_copies asks for copies, as seed 000's clients expect")
            #expect(await harness.endpoint.sessionCount == 1)
        }
    }

    @Test func aClientThatRecordsItsOwnMessagesTellsTheCenterItWantsNoCopies() async throws {
        try await EndpointHarness.with { harness in
            let client = try await harness.connect()
            try await client.send(TokenAuth(token: try await harness.token(), senderCopies: false))
            let open = try SessionOpen(packet: try #require(await harness.center.take(.sessionOpen)))
            #expect(!open.info.senderCopies)
            #expect(try SessionOpen(packet: open.packet).info.senderCopies == false, "it crosses the link")
        }
    }

    @Test func aFirstMessageOtherThanTokenAuthIsRefusedAndClosed() async throws {
        try await EndpointHarness.with { harness in
            let client = try await harness.connect()
            try await client.send(Ping(time: 1))
            let error = try ErrorMessage(packet: try #require(await client.next()))
            #expect(error.code == .notLoggedIn)
            #expect(error.data.contains("token auth (41)"))
            #expect(await client.waitClosed())
            #expect(await harness.center.take(.sessionOpen, timeout: .milliseconds(100)) == nil)
        }
    }

    @Test(arguments: [
        (TokenCase.expired, ErrorCode.tokenExpired), (.forged, .tokenBadSignature), (.otherDomain, .unknownDomain),
    ])
    func aBadTokenIsRefusedWithItsCodeAndClosed(token: TokenCase, code: ErrorCode) async throws {
        try await EndpointHarness.with { harness in
            let client = try await harness.connect()
            let text = switch token {
            case .expired: try await harness.token(now: Date().addingTimeInterval(-2 * 86_400))
            case .forged: try await harness.token(key: .init())
            case .otherDomain: try await harness.token("bob@beta.example")
            }
            try await client.send(TokenAuth(token: text))
            let error = try ErrorMessage(packet: try #require(await client.next()))
            #expect(error.code == code)
            #expect(!error.data.isEmpty)
            #expect(await client.waitClosed())
        }
    }

    /// A reconnect with a token this endpoint verified before is answered on the connection's
    /// event loop without a second signature check, and is still refused for another device and
    /// once expired.
    @Test func aTokenSeenBeforeIsAcceptedAgainAndStillCheckedEachTime() async throws {
        let clock = EndpointTestClock()
        try await EndpointHarness.with({ $0.clock = { clock.milliseconds } }) { harness in
            let issued = Date(timeIntervalSince1970: Double(clock.milliseconds) / 1000)
            let token = try await harness.token(now: issued)
            for attempt in 1...3 {
                let client = try await harness.connect()
                try await client.send(TokenAuth(token: token, device: "sha256:device"))
                let authOK = try AuthOK(packet: try #require(await client.next(), "attempt \(attempt)"))
                #expect(authOK.username == "alice@alpha.example")
                #expect(try #require(await client.next()).type == MessageType.initialState.rawValue)
                let open = try SessionOpen(packet: try #require(await harness.center.take(.sessionOpen)))
                #expect(open.info.user == "alice@alpha.example")
                #expect(open.info.userID == 7)
                await client.close()
                #expect(await harness.center.take(.sessionClose) != nil)
            }
            #expect(harness.endpoint.verifier.signatureVerifications == 1, "checked once, remembered after")

            let elsewhere = try await harness.connect()
            try await elsewhere.send(TokenAuth(token: token, device: "sha256:another-device"))
            #expect(try ErrorMessage(packet: try #require(await elsewhere.next())).code == .invalidDevice)
            #expect(await elsewhere.waitClosed())

            clock.advance(milliseconds: 25 * 3_600_000)
            let late = try await harness.connect()
            try await late.send(TokenAuth(token: token, device: "sha256:device"))
            #expect(try ErrorMessage(packet: try #require(await late.next())).code == .tokenExpired)
            #expect(await late.waitClosed())
            #expect(harness.endpoint.verifier.signatureVerifications == 1)
            #expect(await harness.center.take(.sessionOpen, timeout: .milliseconds(100)) == nil)
        }
    }

    enum TokenCase: Sendable, CustomTestStringConvertible {
        case expired, forged, otherDomain
        var testDescription: String { "\(self)" }
    }

    @Test func aSessionTheCenterNeverBindsGets330AndIsClosed() async throws {
        try await EndpointHarness.with({ $0.sessionReadyTimeout = .milliseconds(300) }) { harness in
            await harness.center.setMode(.ignoreSessionOpens)
            let client = try await harness.connect()
            try await client.send(TokenAuth(token: try await harness.token()))
            let error = try ErrorMessage(packet: try #require(await client.next()))
            #expect(error.code == .centerUnavailable)
            #expect(await client.waitClosed())
            #expect(await endpointEventually { await harness.endpoint.sessionCount == 0 })
        }
    }

    // MARK: - Relaying

    @Test func clientRequestsReachTheCenterUnderTheEndpointsSessionID() async throws {
        try await EndpointHarness.with { harness in
            let (client, session) = try await harness.authenticated()
            // A body field cannot choose the session: the endpoint stamps its own.
            var chat = Chat(target: .user("bob@alpha.example"), content: .text("hi"), clientMessageID: "c1").packet
            chat.body["session"] = .string("ep9:999")
            try await client.send(chat)

            let relayed = try FromClient(packet: try #require(await harness.center.take(.fromClient)))
            #expect(relayed.session == session)
            #expect(relayed.payload == chat)
            // The fake center echoes chats back as ToClient.
            #expect(await client.next() == chat)
        }
    }

    @Test func toClientReachesListedSessionsAndIgnoresUnknownOnes() async throws {
        try await EndpointHarness.with { harness in
            let (alice, aliceSession) = try await harness.authenticated("alice@alpha.example")
            let (bob, bobSession) = try await harness.authenticated("bob@alpha.example")
            let accepted = ChatAccepted(clientMessageID: "c1", serverMessageID: 9, time: 5).packet
            try await harness.center.send(ToClient(sessions: ["ep1:404", aliceSession, bobSession], payload: accepted))
            #expect(await alice.next() == accepted)
            #expect(await bob.next() == accepted)
        }
    }

    @Test func pingIsAnsweredLocally() async throws {
        try await EndpointHarness.with { harness in
            let (client, _) = try await harness.authenticated()
            try await client.send(Ping(time: 1234))
            #expect(try Pong(packet: try #require(await client.next())).time == 1234)
            #expect(await harness.center.take(.fromClient, timeout: .milliseconds(100)) == nil)
        }
    }

    @Test func unknownAndLinkTypesGet117AndTheConnectionStaysOpen() async throws {
        try await EndpointHarness.with { harness in
            let (client, _) = try await harness.authenticated()
            for type: UInt32 in [LinkMessageType.fromClient.rawValue, 9999, MessageType.authOK.rawValue, MessageType.tokenAuth.rawValue] {
                try await client.send(Packet(type: type, body: ["session": .string("ep1:1"), "type": .int(6), "body": .dict([:])]))
                let error = try ErrorMessage(packet: try #require(await client.next()))
                let expected: ErrorCode = type >= 2001 || type == 9999 ? .unknownMessageType : .notSupportedHere
                #expect(error.code == expected, "type \(type)")
            }
            try await client.send(Ping(time: 1))
            #expect(await client.next()?.type == MessageType.pong.rawValue)
            #expect(await harness.center.take(.fromClient, timeout: .milliseconds(100)) == nil)
        }
    }

    /// PROTOCOL 5.1: a handshake type inside a frame closes the connection (201), enforced by
    /// the secure channel before the endpoint sees it.
    @Test func aHandshakeTypeAfterTheHandshakeClosesTheConnection() async throws {
        try await EndpointHarness.with { harness in
            let (client, session) = try await harness.authenticated()
            try await client.send(Packet(type: MessageType.clientHello.rawValue))
            #expect(await client.waitClosed())
            let close = try SessionClose(packet: try #require(await harness.center.take(.sessionClose)))
            #expect(close.session == session)
        }
    }

    // MARK: - Ending sessions

    @Test func kickSendsKickedThenCloses() async throws {
        try await EndpointHarness.with { harness in
            let (client, session) = try await harness.authenticated()
            try await harness.center.send(KickSession(session: session, reason: "newer login"))
            #expect(await client.next()?.type == MessageType.kicked.rawValue)
            #expect(await client.waitClosed())
            let close = try SessionClose(packet: try #require(await harness.center.take(.sessionClose)))
            #expect(close.session == session)
            #expect(close.reason.contains("kicked"))
        }
    }

    /// A kick behind deliveries the client has not read yet (tens of MiB, past the socket
    /// buffers, still in the endpoint's): the connection closes only once 19 has been written,
    /// so a client that reads again gets every delivery and then 19.
    @Test func aKickBehindUnreadDeliveriesStillReachesTheClient() async throws {
        try await EndpointHarness.with({ $0.maxUnreadBytes = 256 << 20 }) { harness in
            let (client, session) = try await harness.authenticated()
            await client.pauseReading()
            let delivery = ChatDelivery(
                kind: .user, time: 1, senderID: 2, senderName: "bob@alpha.example", targetID: 7, targetName: "alice@alpha.example",
                content: .text(String(repeating: "x", count: 60 * 1024)), serverMessageID: 1, clientMessageID: "c", qos: .bestEffort)
            // 48 MiB: more than loopback's socket buffers hold (up to 32 + 4 MiB here).
            let count = 800
            for _ in 0..<count { try await harness.center.send(ToClient(sessions: [session], payload: delivery.packet)) }
            try await harness.center.send(KickSession(session: session, reason: "newer login"))
            try await Task.sleep(for: .milliseconds(500))
            await client.resumeReading()
            #expect(await client.waitClosed(timeout: .seconds(20)))
            let received = await client.drain()
            #expect(received.filter { $0.type == MessageType.chatDelivery.rawValue }.count == count)
            #expect(received.last?.type == MessageType.kicked.rawValue)
        }
    }

    @Test func quitIsRelayedAndTheConnectionClosesAfterTheAck() async throws {
        try await EndpointHarness.with { harness in
            let (client, session) = try await harness.authenticated()
            try await client.send(Quit())
            let relayed = try FromClient(packet: try #require(await harness.center.take(.fromClient)))
            #expect(relayed.payload.type == MessageType.quit.rawValue)
            #expect(try QuitAck(packet: try #require(await client.next())).lastSeen == 42)
            #expect(await client.waitClosed())
            let close = try SessionClose(packet: try #require(await harness.center.take(.sessionClose)))
            #expect(close == SessionClose(session: session, reason: "quit"))
        }
    }

    /// A client may send right after its token, before 42: what it sends waits for the center
    /// to bind the session and then reaches it in order, under the session's id.
    @Test func packetsSentBeforeTheSessionIsBoundReachTheCenterInOrderOnceItIs() async throws {
        try await EndpointHarness.with { harness in
            await harness.center.setMode(.ignoreSessionOpens)
            let client = try await harness.connect()
            try await client.send(TokenAuth(token: try await harness.token()))
            let chats = (1...3).map { Chat(target: .user("bob@alpha.example"), content: .text("early \($0)"), clientMessageID: "e\($0)").packet }
            for chat in chats { try await client.send(chat) }
            let open = try SessionOpen(packet: try #require(await harness.center.take(.sessionOpen)))
            #expect(await harness.center.take(.fromClient, timeout: .milliseconds(300)) == nil, "relayed before the session was bound")

            await harness.center.setMode(.normal)
            let initial = InitialState(friends: [], groups: [], messages: []).body
            try await harness.center.send(SessionReady(session: open.info.session, initial: initial))
            #expect(await client.next()?.type == MessageType.authOK.rawValue)
            #expect(await client.next()?.type == MessageType.initialState.rawValue)
            for chat in chats {
                let relayed = try FromClient(packet: try #require(await harness.center.take(.fromClient)))
                #expect(relayed == FromClient(session: open.info.session, payload: chat))
            }
        }
    }

    /// A center that stops reading fills the link; the endpoint then stops reading the client
    /// (its socket stops taking writes) instead of buffering without bound, and once the center
    /// reads again every chat arrives, in order.
    @Test func aStalledCenterPushesBackOnTheClientAndLosesNothing() async throws {
        try await EndpointHarness.with { harness in
            let (client, session) = try await harness.authenticated()
            await harness.center.setReadingPaused(true)  // After the next packet it reads.
            let sent = await Self.sendUntilPushedBack(client)

            await harness.center.setReadingPaused(false)
            try await Self.expectChats(1...sent, from: session, at: harness.center)
        }
    }

    /// While the endpoint holds a client's reads back (its link is congested), the silence is
    /// the endpoint's: the client is not closed as idle, and what it sent arrives.
    @Test func aClientHeldBackByACongestedLinkIsNotIdle() async throws {
        try await EndpointHarness.with({ $0.idleTimeout = .milliseconds(300) }) { harness in
            let (client, session) = try await harness.authenticated()
            await harness.center.setReadingPaused(true)
            let sent = await Self.sendUntilPushedBack(client)
            try await Task.sleep(for: .seconds(1))  // Over three idle timeouts.

            await harness.center.setReadingPaused(false)
            try await Self.expectChats(1...sent, from: session, at: harness.center)
        }
    }

    /// Once the endpoint reads a held-back client again, the client has a whole idle timeout
    /// from then, not from the last bytes it sent before the hold. Held here as a client that
    /// sends before its session is bound (before 42) is, for longer than the idle timeout.
    @Test func aClientHeldBackHasAWholeIdleTimeoutOnceReadsResume() async throws {
        try await EndpointHarness.with({ $0.idleTimeout = .milliseconds(300) }) { harness in
            await harness.center.setMode(.ignoreSessionOpens)
            let client = try await harness.connect()
            try await client.send(TokenAuth(token: try await harness.token()))
            let chat = Chat(target: .user("bob@alpha.example"), content: .text("early"), clientMessageID: "e1", qos: .bestEffort)
            try await client.send(chat)
            let open = try SessionOpen(packet: try #require(await harness.center.take(.sessionOpen)))
            try await Task.sleep(for: .seconds(1))  // Over three idle timeouts, reads held.
            #expect(await client.closed == false, "closed as idle while the endpoint held its reads")

            await harness.center.setMode(.normal)
            let initial = InitialState(friends: [], groups: [], messages: []).body
            try await harness.center.send(SessionReady(session: open.info.session, initial: initial))
            _ = try #require(await harness.center.take(.fromClient))  // Relayed as reads resume.
            let resumed = ContinuousClock.now
            #expect(await client.waitClosed(timeout: .seconds(5)))
            let idle = ContinuousClock.now - resumed
            #expect(idle >= .milliseconds(250), "closed \(idle) after its reads resumed; the idle timeout is 300 ms")
        }
    }

    /// A client that sent its token and waits quietly for 42 while the center is slow to bind
    /// its session is not idle: the silence is the endpoint's, and its session opens after.
    @Test func aClientWaitingForItsSessionIsNotIdle() async throws {
        try await EndpointHarness.with({ $0.idleTimeout = .milliseconds(300) }) { harness in
            await harness.center.setMode(.ignoreSessionOpens)
            let client = try await harness.connect()
            try await client.send(TokenAuth(token: try await harness.token()))
            let open = try SessionOpen(packet: try #require(await harness.center.take(.sessionOpen)))
            try await Task.sleep(for: .seconds(1))  // Over three idle timeouts, waiting for 42.
            #expect(await client.closed == false, "closed as idle while it waited for its session")

            await harness.center.setMode(.normal)
            let initial = InitialState(friends: [], groups: [], messages: []).body
            try await harness.center.send(SessionReady(session: open.info.session, initial: initial))
            #expect(await client.next()?.type == MessageType.authOK.rawValue)
            #expect(await client.next()?.type == MessageType.initialState.rawValue)
        }
    }

    /// A client that sends and closes while the link is congested: the endpoint reads all it
    /// sent at the end of the stream, and relays it ahead of the session's close.
    @Test func whatAClientSentBeforeClosingReachesTheCenterWhileTheLinkIsCongested() async throws {
        try await EndpointHarness.with { harness in
            let (busy, busySession) = try await harness.authenticated()
            let (leaving, leavingSession) = try await harness.authenticated("carol@alpha.example")
            await harness.center.setReadingPaused(true)
            let sent = await Self.sendUntilPushedBack(busy)  // The link is over its mark now.

            let chats = (1...3).map {
                Chat(target: .user("bob@alpha.example"), content: .text("last \($0)"), clientMessageID: "l\($0)", qos: .bestEffort).packet
            }
            for chat in chats { try await leaving.send(chat) }
            await leaving.close()
            try await Task.sleep(for: .milliseconds(300))  // The endpoint sees the end of the stream.

            await harness.center.setReadingPaused(false)
            try await Self.expectChats(1...sent, from: busySession, at: harness.center)
            for chat in chats {
                let packet = try #require(await harness.center.take(.fromClient) { (try? FromClient(packet: $0))?.session == leavingSession })
                #expect(try FromClient(packet: packet).payload == chat)
            }
            let close = try SessionClose(packet: try #require(await harness.center.take(.sessionClose)))
            #expect(close == SessionClose(session: leavingSession, reason: "the client disconnected"))
        }
    }

    /// Sends chats of 64 KiB until the endpoint stops reading them (up to 256 MiB: far more than
    /// the link's 8 MiB high-water mark and the socket buffers on both sides, as Linux grows a
    /// loopback receive buffer up to tcp_rmem's 32 MiB); how many it sent.
    private static func sendUntilPushedBack(_ client: EndpointTestClient) async -> Int {
        let text = String(repeating: "x", count: 64 * 1024)
        var sent = 0
        var pushedBack = false
        while sent < 4096, !pushedBack {
            sent += 1
            let chat = Chat(target: .user("bob@alpha.example"), content: .text(text), clientMessageID: "c\(sent)", qos: .bestEffort)
            pushedBack = await !client.send(chat.packet, thenWaitWritable: .milliseconds(500))
        }
        #expect(pushedBack, "the client could write \(sent) chats of 64 KiB without the endpoint pushing back")
        return sent
    }

    /// Expects chats `c<number>` of `session`, in order, at the center.
    private static func expectChats(_ numbers: ClosedRange<Int>, from session: String, at center: EndpointFakeCenter) async throws {
        for number in numbers {
            let packet = try #require(
                await center.take(.fromClient, timeout: .seconds(20)) { (try? FromClient(packet: $0))?.session == session },
                "chat \(number) of \(numbers.upperBound) lost")
            #expect(try Chat(packet: FromClient(packet: packet).payload).clientMessageID == "c\(number)")
        }
    }

    /// Closing the listener closes every connection it accepted, and the center hears why
    /// for each session.
    @Test func shuttingTheListenerDownClosesEveryConnectionAndTellsTheCenter() async throws {
        try await EndpointHarness.with { harness in
            var clients: [EndpointTestClient] = []
            var sessions: Set<String> = []
            for user in ["alice", "bob", "carol"] {
                let (client, session) = try await harness.authenticated("\(user)@alpha.example")
                clients.append(client)
                sessions.insert(session)
            }
            try await harness.endpoint.shutdown()
            for client in clients { #expect(await client.waitClosed()) }
            var closed: Set<String> = []
            for _ in sessions {
                let close = try SessionClose(packet: try #require(await harness.center.take(.sessionClose)))
                #expect(close.reason == "the endpoint is shutting down")
                closed.insert(close.session)
            }
            #expect(closed == sessions)
            #expect(await endpointEventually { await harness.endpoint.sessionCount == 0 })
        }
    }

    @Test func aClientDisconnectingClosesItsSessionAtTheCenter() async throws {
        try await EndpointHarness.with { harness in
            let (client, session) = try await harness.authenticated()
            await client.close()
            let close = try SessionClose(packet: try #require(await harness.center.take(.sessionClose)))
            #expect(close == SessionClose(session: session, reason: "the client disconnected"))
            #expect(await endpointEventually { await harness.endpoint.sessionCount == 0 })
        }
    }

    /// A client that stops reading is closed once more than `maxUnreadBytes` wait for it, and
    /// the center is told why; the endpoint does not buffer without bound.
    @Test func aClientThatStopsReadingIsClosedAsTooSlow() async throws {
        try await EndpointHarness.with({ $0.maxUnreadBytes = 256 * 1024 }) { harness in
            let (client, session) = try await harness.authenticated()
            await client.pauseReading()
            let delivery = ChatDelivery(
                kind: .user, time: 1, senderID: 2, senderName: "bob@alpha.example", targetID: 7, targetName: "alice@alpha.example",
                content: .text(String(repeating: "x", count: 16 * 1024)), serverMessageID: 1, clientMessageID: "c", qos: .bestEffort)
            // Up to 128 MiB: far more than the 256 KiB allowed unread and the socket buffers (Linux
            // grows a loopback receive buffer up to tcp_rmem's maximum, 32 MiB here).
            for _ in 0..<8192 {
                try await harness.center.send(ToClient(sessions: [session], payload: delivery.packet))
                if await harness.endpoint.sessionCount == 0 { break }
            }
            let close = try SessionClose(packet: try #require(await harness.center.take(.sessionClose, timeout: .seconds(10))))
            #expect(close == SessionClose(session: session, reason: "the client did not read what it was sent"))
            #expect(await endpointEventually { await harness.endpoint.sessionCount == 0 })
        }
    }

    @Test func aSilentClientIsClosedAfterTheIdleTimeout() async throws {
        try await EndpointHarness.with({ $0.idleTimeout = .milliseconds(300) }) { harness in
            let (client, session) = try await harness.authenticated()
            #expect(await client.waitClosed())
            let close = try SessionClose(packet: try #require(await harness.center.take(.sessionClose)))
            #expect(close.session == session)
            #expect(close.reason.contains("idle timeout"))
        }
    }

    /// Any byte counts, part of a frame too: a client slowly sending one large frame is not
    /// idle; once it stops, it is.
    @Test func aClientSendingPartOfAFrameSlowlyIsNotIdle() async throws {
        try await EndpointHarness.with({ $0.idleTimeout = .milliseconds(300) }) { harness in
            let (client, session) = try await harness.authenticated()
            // The header of a 64 KiB frame, then 16 bytes of it every 100 ms for 1.2 s.
            try await client.sendRaw(withUnsafeBytes(of: UInt32(65_536).bigEndian, Array.init) + [0])
            for _ in 0..<12 {
                try await Task.sleep(for: .milliseconds(100))
                try await client.sendRaw(Array(repeating: 7, count: 16))
            }
            #expect(await client.closed == false, "closed as idle while bytes kept coming")
            #expect(await client.waitClosed())
            let close = try SessionClose(packet: try #require(await harness.center.take(.sessionClose)))
            #expect(close.session == session)
            #expect(close.reason.contains("idle timeout"))
        }
    }

    @Test func connectionsOverThePerSourceLimitGet331() async throws {
        try await EndpointHarness.with({ $0.maxConnectionsPerSource = 1 }) { harness in
            let (first, _) = try await harness.authenticated()
            let second = try await harness.connect()
            let error = try ErrorMessage(packet: try #require(await second.next()))
            #expect(error.code == .tooManyConnections)
            #expect(await second.waitClosed())
            // The first is untouched, and its slot is freed when it leaves.
            try await first.send(Ping())
            #expect(await first.next()?.type == MessageType.pong.rawValue)
            await first.close()
            #expect(await endpointEventually { harness.endpoint.limiter.count("127.0.0.1") == 0 })
            let third = try await harness.connect()
            try await third.send(TokenAuth(token: try await harness.token()))
            #expect(await third.next()?.type == MessageType.authOK.rawValue)
        }
    }

    // MARK: - The link

    @Test func whileTheCenterIsDownRequestsGet330AndTheLinkComesBackWithTheSession() async throws {
        try await EndpointHarness.with { harness in
            let (client, session) = try await harness.authenticated()
            _ = await harness.center.take(.hello)
            await harness.center.setMode(.refuseLinks)
            await harness.center.dropLink()
            #expect(await endpointEventually { await !harness.endpoint.isLinkUp })

            let chat = Chat(target: .user("bob@alpha.example"), content: .text("hi"), clientMessageID: "c1")
            try await client.send(chat)
            let error = try ErrorMessage(packet: try #require(await client.next()))
            #expect(error.code == .centerUnavailable)
            #expect(error.data == "the center is unreachable; retry")
            #expect(error.clientMessageID == "c1", "the 330 names the chat it refuses")

            await harness.center.setMode(.normal)
            let hello = try LinkHello(packet: try #require(await harness.center.take(.hello)))
            #expect(hello.node == EndpointHarness.node)
            #expect(hello.domain == EndpointHarness.domain)
            #expect(hello.sessions.map(\.session) == [session])
            #expect(await endpointEventually { await harness.endpoint.isLinkUp })

            // The QoS-1 retry with the same client_msg_id now goes through; the center's
            // SessionReady for the re-bound session sends the client no second 42 or 10.
            try await client.send(chat)
            let relayed = try FromClient(packet: try #require(await harness.center.take(.fromClient)))
            #expect(relayed.session == session)
            #expect(await client.next() == chat.packet)
            #expect(await harness.center.take(.sessionClose, timeout: .milliseconds(200)) == nil)
        }
    }

    @Test func aClientAuthenticatingWhileTheLinkIsDownIsBoundWhenItReturns() async throws {
        try await EndpointHarness.with { harness in
            _ = await harness.center.take(.hello)
            await harness.center.setMode(.refuseLinks)
            await harness.center.dropLink()
            #expect(await endpointEventually { await !harness.endpoint.isLinkUp })

            let client = try await harness.connect()
            try await client.send(TokenAuth(token: try await harness.token()))
            try await Task.sleep(for: .milliseconds(300))
            await harness.center.setMode(.normal)
            #expect(await client.next()?.type == MessageType.authOK.rawValue)
            #expect(await client.next()?.type == MessageType.initialState.rawValue)
            let hello = try LinkHello(packet: try #require(await harness.center.take(.hello)))
            #expect(hello.sessions.isEmpty)
            // Opened exactly once on the new link.
            #expect(await harness.center.take(.sessionOpen) != nil)
            #expect(await harness.center.take(.sessionOpen, timeout: .milliseconds(200)) == nil)
        }
    }

    // MARK: - Presence

    @Test func heartbeatsKeepHeldUsersOnline() async throws {
        try await EndpointHarness.with { harness in
            let (_, session) = try await harness.authenticated()
            let clock = harness.presenceClock
            // The center marks alice online with a short TTL; only heartbeats keep her there.
            let entry = PresenceEntry(user: "alice@alpha.example", endpoint: EndpointHarness.node, session: session, device: "d", since: clock.milliseconds)
            _ = try await harness.presence.setOnline(entry, ttlSeconds: 1)
            clock.advance(milliseconds: 500)
            try await Task.sleep(for: .milliseconds(200))  // several 50 ms heartbeats
            clock.advance(milliseconds: 5_000)
            #expect(await harness.presence.lookup(["alice@alpha.example"])["alice@alpha.example"]?.session == session)
            #expect(await harness.presence.liveEndpoints(domain: EndpointHarness.domain) == [EndpointHarness.node])
        }
    }

    /// With one user per heartbeat call, a round is spread over the interval, and every held
    /// user is still refreshed each round.
    @Test func heartbeatsInSlicesKeepEveryHeldUserOnline() async throws {
        try await EndpointHarness.with({ $0.heartbeatSlice = 1 }) { harness in
            let users = ["alice@alpha.example", "bob@alpha.example", "carol@alpha.example"]
            var sessions: [String: String] = [:]
            var clients: [EndpointTestClient] = []
            for user in users {
                let (client, session) = try await harness.authenticated(user)
                clients.append(client)
                sessions[user] = session
            }
            let clock = harness.presenceClock
            for user in users {
                let entry = PresenceEntry(user: user, endpoint: EndpointHarness.node, session: sessions[user]!, device: "d", since: clock.milliseconds)
                _ = try await harness.presence.setOnline(entry, ttlSeconds: 1)
            }
            clock.advance(milliseconds: 500)
            try await Task.sleep(for: .milliseconds(300))  // a few rounds of three 17 ms slices
            clock.advance(milliseconds: 5_000)
            let found = await harness.presence.lookup(users)
            for user in users { #expect(found[user]?.session == sessions[user], "\(user)") }
            for client in clients { await client.close() }
        }
    }

    @Test func usersNotHeldAreLeftToExpire() async throws {
        try await EndpointHarness.with { harness in
            let clock = harness.presenceClock
            let entry = PresenceEntry(user: "carol@alpha.example", endpoint: EndpointHarness.node, session: "ep1:77", device: "d", since: 0)
            _ = try await harness.presence.setOnline(entry, ttlSeconds: 1)
            try await Task.sleep(for: .milliseconds(200))
            clock.advance(milliseconds: 2_000)
            #expect(await harness.presence.lookup(["carol@alpha.example"]).isEmpty)
        }
    }
}
