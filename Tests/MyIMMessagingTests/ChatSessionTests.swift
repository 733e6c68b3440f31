import Foundation
import MyIMClient
import MyIMWire
import Synchronization
import Testing

/// What a chat session printed, line by line, readable while it runs.
final class ChatTranscript: Sendable {
    private let lines = Mutex<[String]>([])

    func append(_ line: String) { lines.withLock { $0.append(line) } }
    var all: [String] { lines.withLock { $0 } }

    /// Waits up to 10 s for a line containing `text`.
    func waitFor(_ text: String) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while !all.contains(where: { $0.contains(text) }) {
            try #require(ContinuousClock.now < deadline, "no line with \"\(text)\" in:\n\(all.joined(separator: "\n"))")
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}

@Suite("Chat session", .timeLimit(.minutes(1)))
struct ChatSessionTests {
    @Test(arguments: [
        ("hello there", ChatCommand.say("hello there")),
        ("  ", .none),
        ("/to bob", .to("bob")),
        ("/TO  bob@alpha.example ", .to("bob@alpha.example")),
        ("/to", .invalid("/to takes one address, e.g. /to bob")),
        ("/to bob carol", .invalid("/to takes one address, e.g. /to bob")),
        ("/friends", .friends),
        ("/group climbers", .group("climbers")),
        ("/GROUP  12 ", .group("12")),
        ("/group rope team", .group("rope team")),
        ("/group", .invalid("/group takes a group's id or name, e.g. /group climbers")),
        ("/groups", .groups),
        ("/quit", .quit),
        ("/exit", .quit),
        ("//slash at the start", .say("/slash at the start")),
        ("/dance", .invalid("unknown command /dance; /help lists them")),
    ])
    func linesAreCommands(line: String, expected: ChatCommand) {
        #expect(ChatCommand(line: line) == expected)
    }

    @Test func typedLinesAreSentAndArrivingMessagesShownAndAcknowledged() async throws {
        try await ClientMessagingCluster.with(homes: 2) { cluster, homes in
            let aliceHome = homes[0]
            let bobHome = homes[1]
            let aliceSession = try await cluster.session("alice@alpha.example", userID: 1, priorities: (1, 2))
            let bobSession = try await cluster.session("bob@alpha.example", userID: 2, priorities: (2, 1))
            let bob = try await MessagingConnection.open(session: bobSession, home: bobHome.home)
            // Waiting before alice's chat starts: shown first.
            try await bob.send(text: "are you there?", to: "alice")
            _ = try await bob.addFriend("alice")

            let alice = try await MessagingConnection.open(session: aliceSession, home: aliceHome.home)
            let transcript = ChatTranscript()
            let chat = ChatSession(connection: alice, peer: "bob") { transcript.append($0) }
            let (lines, typing) = AsyncStream<String>.makeStream()
            let running = Task { await chat.run(lines: lines) }

            try await transcript.waitFor("bob: are you there?")
            typing.yield("yes, here")
            // Bob's connection also has his own message (made from its 8): skip to alice's.
            let reply = try #require(await clientMessagingDeliveries(2, on: bob).first { $0.senderName != "bob@alpha.example" })
            #expect(reply.senderName == "alice@alpha.example")
            #expect(reply.content == .text("yes, here"))
            try await transcript.waitFor("you → bob: yes, here")

            try await bob.send(text: "great", to: "alice")
            try await transcript.waitFor("bob: great")

            typing.yield("/friends")
            try await transcript.waitFor("* bob: online")
            typing.yield("/to nobody")
            typing.yield("anyone?")
            try await transcript.waitFor("! not sent: error 332")
            typing.yield("/quit")
            #expect(await running.value == nil)

            // Everything alice saw was acknowledged: a new session of hers finds nothing waiting.
            let again = try await MessagingConnection.open(session: aliceSession, home: aliceHome.home)
            #expect(again.initialState.messages.isEmpty)
            try await again.quit()
            try await bob.quit()
        }
    }

    @Test func anEndpointThatDrainsMovesTheChatToTheNextEndpoint() async throws {
        try await ClientMessagingCluster.with(homes: 2) { cluster, homes in
            let aliceHome = homes[0]
            let bobHome = homes[1]
            // alice prefers ep1, bob ep2.
            let alice = try await MessagingConnection.open(
                session: try await cluster.session("alice@alpha.example", userID: 1, priorities: (1, 2)), home: aliceHome.home)
            let bob = try await MessagingConnection.open(
                session: try await cluster.session("bob@alpha.example", userID: 2, priorities: (2, 1)), home: bobHome.home)
            let transcript = ChatTranscript()
            let chat = ChatSession(connection: alice, peer: "bob") { transcript.append($0) }
            let (lines, typing) = AsyncStream<String>.makeStream()
            let running = Task { await chat.run(lines: lines) }
            try await transcript.waitFor("* connected to ep1")

            await cluster.endpoints[0].endpoint.drain()
            try await transcript.waitFor("ep1 is shutting down; reconnecting")
            try await transcript.waitFor("* connected to ep2")
            typing.yield("still here")
            let received = try #require(await clientMessagingDeliveries(1, on: bob).first)
            #expect(received.content == .text("still here") && received.senderName == "alice@alpha.example")
            typing.yield("/quit")
            #expect(await running.value == nil)
            try await bob.quit()
        }
    }

    @Test func aConnectionToADrainingEndpointMovesOnToTheNext() async throws {
        try await ClientMessagingCluster.with(homes: 1) { cluster, homes in
            await cluster.endpoints[0].endpoint.drain()
            // ep1 is the preferred endpoint, but it answers the token with 48 now.
            let session = try await cluster.session("dave@alpha.example", userID: 4, priorities: (1, 2))
            let connection = try await MessagingConnection.open(session: session, home: homes[0].home)
            #expect(connection.endpoint.name == "ep2")
            #expect(connection.skipped.map(\.endpoint.name) == ["ep1"])
            #expect(connection.skipped.first?.error.code == .centerUnavailable)
            try await connection.quit()
        }
    }

    @Test func aNewerLoginEndsTheChatWithItsReason() async throws {
        try await ClientMessagingCluster.with(homes: 1) { cluster, homes in
            let home = homes[0]
            let session = try await cluster.session("carol@alpha.example", userID: 3, priorities: (1, 2))
            let first = try await MessagingConnection.open(session: session, home: home.home)
            let transcript = ChatTranscript()
            let chat = ChatSession(connection: first, peer: nil) { transcript.append($0) }
            let (lines, typing) = AsyncStream<String>.makeStream()
            let running = Task { await chat.run(lines: lines) }
            typing.yield("hello?")
            try await transcript.waitFor("! nobody to talk to yet")

            let second = try await MessagingConnection.open(session: session, home: home.home)
            let ended = await running.value
            #expect(ended?.code == .notLoggedIn)
            #expect(transcript.all.contains { $0.contains("a newer login of carol@alpha.example took over") })
            typing.finish()
            try await second.quit()
        }
    }
}
