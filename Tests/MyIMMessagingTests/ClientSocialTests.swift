import MyIMClient
import MyIMWire
import Testing

/// Friends and profiles through a real center and two real endpoints.
@Suite("Client social", .timeLimit(.minutes(1)))
struct ClientSocialTests {
    @Test func addFriendListFriendsAndSignatureEndToEnd() async throws {
        try await ClientMessagingCluster.with(homes: 2) { cluster, homes in
            let aliceHome = homes[0]
            let bobHome = homes[1]
            let aliceSession = try await cluster.session("alice@alpha.example", userID: 11, priorities: (1, 2))
            let bobSession = try await cluster.session("bob@alpha.example", userID: 22, priorities: (2, 1))
            let bob = try await MessagingConnection.open(session: bobSession, home: bobHome.home)
            let alice = try await MessagingConnection.open(session: aliceSession, home: aliceHome.home)

            // A user who never signed in: 20 with 332.
            let refusal = await #expect(throws: ClientError.self) { try await alice.addFriend("nobody") }
            #expect(refusal?.code == .unknownRecipient)

            let added = try await alice.addFriend("bob")
            #expect(added == AddFriendResult(status: .added, username: "bob@alpha.example"))
            let again = try await alice.addFriend("bob@alpha.example")
            #expect(again == AddFriendResult(status: .alreadyFriends, username: "bob@alpha.example"))

            let friends = try await alice.friends()
            #expect(friends.map(\.username) == ["bob@alpha.example"])
            #expect(friends.first?.userID == 22)

            let own = try await bob.setSignature("out fishing")
            #expect(own.username == "bob@alpha.example")
            #expect(own.signature == "out fishing")
            let seen = try await alice.profile(of: "bob@alpha.example")
            #expect(seen.username == "bob@alpha.example")
            #expect(seen.userID == 22)
            #expect(seen.signature == "out fishing")
            #expect(try await alice.friends().first?.signature == "out fishing")

            try await alice.quit()
            try await bob.quit()
        }
    }
}
