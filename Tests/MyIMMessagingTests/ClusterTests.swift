import Crypto
import Foundation
import Logging
import MyIMAuth
import MyIMCenter
import MyIMEndpoint
import MyIMLink
import MyIMPresence
import MyIMRedis
import MyIMSecureChannel
import MyIMTestSupport
import MyIMWire
import Testing

/// A domain as it runs for real, in one process: a center with its SQLite file, two
/// endpoints, a real redis-server for presence, and clients on real sockets.
struct TestCluster {
    static let tokenKey = Curve25519.Signing.PrivateKey()
    static let issuer = "myim:cluster-test"
    static let domain = "alpha.example"

    let redis: RedisTestServer
    let redisConnection: RedisConnection
    let center: Center
    let endpoints: [(endpoint: Endpoint, port: Int, identity: ServerIdentityKey, task: Task<Void, any Error>)]
    let centerTask: Task<Void, any Error>
    let directory: URL

    static func start() async throws -> TestCluster {
        let redis = try await RedisTestServer.start()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("myim-cluster-\(UUID().uuidString)")
        var logger = Logger(label: "myim.cluster.test")
        logger.logLevel = .warning
        let centerRedis = try await redis.connect()
        let centerConfiguration = CenterConfiguration(
            node: "alpha-center", domain: domain, host: "127.0.0.1", port: 0, protection: .plain,
            databasePath: directory.appendingPathComponent("center.sqlite").path, endpoints: ["alpha-ep1", "alpha-ep2"],
            presence: RedisPresenceStore(connection: centerRedis, domain: domain), directory: StaticDirectory.testUsers)
        let center = try Center(configuration: centerConfiguration, logger: logger)
        let centerListener = try await center.bind()
        let centerPort = centerListener.channel.localAddress!.port!
        let centerTask = Task { try await center.serve(centerListener) }

        var endpoints: [(Endpoint, Int, ServerIdentityKey, Task<Void, any Error>)] = []
        for node in ["alpha-ep1", "alpha-ep2"] {
            let identity = ServerIdentityKey.generateEd25519()
            var configuration = EndpointConfiguration(
                node: node, domain: domain, host: "127.0.0.1", port: 0, identity: identity, tokenPublicKey: tokenKey.publicKey,
                issuer: issuer, centerHost: "127.0.0.1", centerPort: centerPort, centerName: "alpha-center", linkProtection: .plain,
                presence: RedisPresenceStore(connection: try await redis.connect(), domain: domain))
            configuration.heartbeatInterval = .milliseconds(200)
            let endpoint = await Endpoint(configuration: configuration, logger: logger)
            let listener = try await endpoint.bind()
            let port = listener.channel.localAddress!.port!
            endpoints.append((endpoint, port, identity, Task { try await endpoint.serve(listener) }))
        }
        return TestCluster(
            redis: redis, redisConnection: try await redis.connect(), center: center, endpoints: endpoints, centerTask: centerTask,
            directory: directory)
    }

    func stop() async {
        for endpoint in endpoints {
            try? await endpoint.endpoint.shutdown()
            endpoint.task.cancel()
            _ = await endpoint.task.result
        }
        centerTask.cancel()
        _ = await centerTask.result
        redis.kill()
        try? FileManager.default.removeItem(at: directory)
    }

    /// Connects `user` to endpoint `index` with a fresh token; returns the client and message 10.
    func login(_ user: String, endpoint index: Int, userID: Int64) async throws -> (EndpointTestClient, InitialState) {
        let endpoint = endpoints[index]
        let client = try await EndpointTestClient.connect(port: endpoint.port, fingerprint: endpoint.identity.publicKey.fingerprint)
        let issuer = await TokenIssuer(signingKey: Self.tokenKey, issuer: Self.issuer)
        let token = try await issuer.issue(address: user, userID: userID, sessionID: UUID().uuidString, device: "sha256:d", now: Date()).token
        try await client.send(TokenAuth(token: token))
        let authOK = try AuthOK(packet: try #require(await client.next()))
        #expect(authOK.username == user)
        let initial = try InitialState(packet: try #require(await client.next()))
        return (client, initial)
    }

    /// The next packet of `type` the client receives, skipping others.
    func next(_ type: MessageType, on client: EndpointTestClient) async throws -> Packet {
        for _ in 0..<20 {
            let packet = try #require(await client.next(), "no message \(type.rawValue) arrived")
            if packet.type == type.rawValue { return packet }
        }
        throw CenterTestFailure("message \(type.rawValue) did not come")
    }
}

@Suite("A domain: center, two endpoints, real Redis, real sockets", .timeLimit(.minutes(1)))
struct ClusterTests {
    private func withCluster(_ body: (TestCluster) async throws -> Void) async throws {
        let cluster = try await TestCluster.start()
        do { try await body(cluster) } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    @Test func aliceOnOneEndpointAndBobOnTheOtherExchangeTextAndAnImage() async throws {
        try await withCluster { cluster in
            let (alice, _) = try await cluster.login("alice@alpha.example", endpoint: 0, userID: 1)
            let (bob, _) = try await cluster.login("bob@alpha.example", endpoint: 1, userID: 2)

            // Presence, as an operator reads it with redis-cli.
            let entry = try await cluster.redisConnection.send(["HGETALL", "myim:alpha.example:presence:bob"])
            let fields = entry.array?.compactMap(\.string) ?? []
            #expect(fields.contains("alpha-ep2"), "HGETALL shows bob on alpha-ep2: \(fields)")

            try await alice.send(Chat(target: .user("bob@alpha.example"), content: .text("hi bob"), clientMessageID: "a1"))
            let image: [UInt8] = Array(repeating: 0x89, count: 3000) + [0x50, 0x4E, 0x47]
            try await alice.send(Chat(target: .user("bob@alpha.example"), content: .image(bytes: image, mime: "image/png"), clientMessageID: "a2"))
            let first = try ChatAccepted(packet: try await cluster.next(.chatAccepted, on: alice))
            let second = try ChatAccepted(packet: try await cluster.next(.chatAccepted, on: alice))
            #expect([first.clientMessageID, second.clientMessageID] == ["a1", "a2"])

            let text = try ChatDelivery(packet: try await cluster.next(.chatDelivery, on: bob))
            let picture = try ChatDelivery(packet: try await cluster.next(.chatDelivery, on: bob))
            #expect(text.content == .text("hi bob") && text.senderName == "alice@alpha.example" && text.senderID == 1)
            #expect(picture.content == .image(bytes: image, mime: "image/png"))
            #expect(text.serverMessageID < picture.serverMessageID)

            try await bob.send(DeliveryAck(ids: [text.serverMessageID, picture.serverMessageID]))
            try await expectEventually { try await cluster.center.store.pendingCount() == 0 }
            await alice.close()
            await bob.close()
        }
    }

    @Test func aGroupAcrossBothEndpointsReachesEveryMemberWithOneSequence() async throws {
        try await withCluster { cluster in
            let (alice, _) = try await cluster.login("alice@alpha.example", endpoint: 0, userID: 1)
            let (bob, _) = try await cluster.login("bob@alpha.example", endpoint: 1, userID: 2)
            let (carol, _) = try await cluster.login("carol@alpha.example", endpoint: 1, userID: 3)

            try await alice.send(CreateGroup(name: "ropes", members: ["bob@alpha.example", "carol@alpha.example"]))
            let group = try GroupCreated(packet: try await cluster.next(.groupCreated, on: alice)).groupID
            for member in [bob, carol] {
                #expect(try AddedToGroup(packet: try await cluster.next(.addedToGroup, on: member)).groupID == group)
            }
            try await carol.send(GroupMembersQuery(groupID: group))
            let members = try GroupMembers(packet: try await cluster.next(.groupMembers, on: carol))
            #expect(members.members == ["alice@alpha.example", "bob@alpha.example", "carol@alpha.example"])

            for (index, text) in ["belay on", "climbing"].enumerated() {
                try await alice.send(Chat(target: .group(group), content: .text(text), clientMessageID: "g\(index)"))
            }
            var accepted: [ChatAccepted] = []
            var copies: [ChatDelivery] = []
            while accepted.count < 2 || copies.count < 2 {
                let packet = try #require(await alice.next(), "alice is missing an 8 or an 18")
                if packet.type == MessageType.chatAccepted.rawValue { accepted.append(try ChatAccepted(packet: packet)) }
                if packet.type == MessageType.chatDelivery.rawValue { copies.append(try ChatDelivery(packet: packet)) }
            }
            #expect(accepted.map(\.seq) == [1, 2])
            #expect(copies.map(\.seq) == [1, 2])
            for member in [bob, carol] {
                let first = try ChatDelivery(packet: try await cluster.next(.chatDelivery, on: member))
                let second = try ChatDelivery(packet: try await cluster.next(.chatDelivery, on: member))
                #expect([first.seq, second.seq] == [1, 2])
                #expect(first.kind == .group && first.targetName == "ropes" && first.senderName == "alice@alpha.example")
                #expect(first.content == .text("belay on") && second.content == .text("climbing"))
            }
            await alice.close()
            await bob.close()
            await carol.close()
        }
    }

    @Test func bobOfflineGetsEverythingInOrderAtLogin() async throws {
        try await withCluster { cluster in
            let (alice, _) = try await cluster.login("alice@alpha.example", endpoint: 0, userID: 1)
            for index in 0..<10 {
                try await alice.send(Chat(target: .user("bob@alpha.example"), content: .text("m\(index)"), clientMessageID: "o\(index)"))
                _ = try await cluster.next(.chatAccepted, on: alice)
            }
            let (bob, initial) = try await cluster.login("bob@alpha.example", endpoint: 1, userID: 2)
            #expect(initial.messages.map(\.content) == (0..<10).map { .text("m\($0)") })
            await alice.close()
            await bob.close()
        }
    }

    @Test func aSecondLoginKicksTheFirstAcrossEndpoints() async throws {
        try await withCluster { cluster in
            let (first, _) = try await cluster.login("carol@alpha.example", endpoint: 0, userID: 3)
            let (second, _) = try await cluster.login("carol@alpha.example", endpoint: 1, userID: 3)
            _ = try Kicked(packet: try await cluster.next(.kicked, on: first))
            #expect(await first.waitClosed())
            let entry = try await cluster.redisConnection.send(["HGET", "myim:alpha.example:presence:carol", "endpoint"])
            #expect(entry.string == "alpha-ep2")
            await second.close()
        }
    }

    @Test func aClosedClientGoesOfflineInRedis() async throws {
        try await withCluster { cluster in
            let (dave, _) = try await cluster.login("dave@alpha.example", endpoint: 0, userID: 4)
            #expect(try await cluster.redisConnection.send(["EXISTS", "myim:alpha.example:presence:dave"]).int == 1)
            await dave.close()
            try await expectEventually {
                try await cluster.redisConnection.send(["EXISTS", "myim:alpha.example:presence:dave"]).int == 0
            }
        }
    }

    @Test func anUnauthenticatedConnectionCanSendNothingButTokenAuth() async throws {
        try await withCluster { cluster in
            let endpoint = cluster.endpoints[0]
            let client = try await EndpointTestClient.connect(port: endpoint.port, fingerprint: endpoint.identity.publicKey.fingerprint)
            try await client.send(Chat(target: .user("bob@alpha.example"), content: .text("sneaky"), clientMessageID: "x"))
            let error = try ErrorMessage(packet: try #require(await client.next()))
            #expect(error.code == .notLoggedIn)
            #expect(await client.waitClosed())
            #expect(try await cluster.center.store.pendingCount() == 0)
        }
    }
}
