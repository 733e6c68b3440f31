import Foundation
@testable import MyIMEndpoint
import MyIMLink
import MyIMPresence
import MyIMTopology
import MyIMWire
import Testing

extension EndpointTests {
    /// The link's keepalive and timeouts, and an endpoint built from a topology linking over mutual TLS.
    @Suite struct Link {
        @Test func theLinkIsKeptAliveWithPings() async throws {
            try await EndpointHarness.with({ $0.linkPingInterval = .milliseconds(200) }) { harness in
                #expect(await harness.center.take(.ping) != nil)
                #expect(await harness.center.take(.ping) != nil)
                #expect(await harness.endpoint.isLinkUp)
                #expect(await harness.center.linkCount == 1)
            }
        }

        @Test func aSilentCenterIsDroppedAndTheLinkReconnects() async throws {
            try await EndpointHarness.with({ $0.linkPingInterval = .milliseconds(100); $0.linkWelcomeTimeout = .milliseconds(200) }) { harness in
                #expect(await endpointEventually { await harness.endpoint.isLinkUp })
                await harness.center.setMode(.silent)
                // Three silent ping intervals drop the link; an unwelcomed link is dropped after the
                // welcome timeout; each time the endpoint tries again.
                #expect(await endpointEventually { await !harness.endpoint.isLinkUp })
                #expect(await endpointEventually { await harness.center.linkCount >= 3 })
                await harness.center.setMode(.normal)
                #expect(await endpointEventually { await harness.endpoint.isLinkUp })
            }
        }

        @Test func chatsTheCenterNeverAnsweredFailWith330WhenTheLinkDrops() async throws {
            try await EndpointHarness.with({ $0.linkPingInterval = .milliseconds(100) }) { harness in
                let (client, _) = try await harness.authenticated()
                await harness.center.setMode(.silent)
                try await client.send(Chat(target: .user("bob@alpha.example"), content: .text("lost?"), clientMessageID: "c1"))
                try await client.send(Chat(target: .user("bob@alpha.example"), content: .text("best effort"), clientMessageID: "c2", qos: .bestEffort))
                #expect(await harness.center.take(.fromClient) != nil)
                // Three silent ping intervals drop the link: the QoS 1 chat gets its answer now,
                // a 330 to send it again, not a reply timeout; the QoS 0 one is owed nothing.
                let answer = try #require(await client.next(timeout: .seconds(5)), "no answer after the link dropped")
                let error = try ErrorMessage(packet: answer)
                #expect(error.code == .centerUnavailable)
                #expect(error.clientMessageID == "c1", "the 330 names the chat to send again")
                #expect(await client.next(timeout: .milliseconds(500)) == nil, "one 330 for one unanswered QoS 1 chat")
                await client.close()
            }
        }

        @Test func aRefusedBestEffortChatDoesNotTakeTheAnswerOwedToAQoS1One() async throws {
            try await EndpointHarness.with({ $0.linkPingInterval = .milliseconds(300) }) { harness in
                let (client, session) = try await harness.authenticated()
                await harness.center.setMode(.silent)
                try await client.send(Chat(target: .user("nobody@alpha.example"), content: .text("?"), clientMessageID: "q1", qos: .bestEffort))
                try await client.send(Chat(target: .user("bob@alpha.example"), content: .text("owed"), clientMessageID: "c1"))
                #expect(await harness.center.take(.fromClient) != nil)
                #expect(await harness.center.take(.fromClient) != nil)
                // The center refuses the QoS 0 chat, naming it, and then goes silent.
                try await harness.center.send(ToClient(
                    sessions: [session], payload: ErrorMessage(code: .unknownRecipient, data: "no such user", clientMessageID: "q1").packet))
                let refusal = try ErrorMessage(packet: try #require(await client.next(timeout: .seconds(5))))
                #expect(refusal.clientMessageID == "q1")
                // When the link drops, the QoS 1 chat still gets its 330.
                let owed = try ErrorMessage(packet: try #require(await client.next(timeout: .seconds(5)), "no 330 for the QoS 1 chat"))
                #expect(owed.code == .centerUnavailable && owed.clientMessageID == "c1")
                await client.close()
            }
        }

        @Test func anEndpointFromTheTopologyLinksOverMutualTLS() async throws {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("myim-endpoint-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let topology = Topology(
                cluster: "endpoint-test", links: .tls, dataDirectory: directory + "/data", keysDirectory: directory + "/keys",
                loginCenter: LoginCenterNode(name: "login", identity: .ed25519),
                domains: [Domain(
                    name: EndpointHarness.domain,
                    center: CenterNode(name: "alpha-center", listen: HostPort(host: "0.0.0.0", port: 7100), identity: .ed25519),
                    endpoints: [EndpointNode(name: "alpha-ep1", listen: HostPort(host: "127.0.0.1", port: 7201))])])
            _ = try ClusterKeys.initialize(for: topology)
            let keys = ClusterKeys(topology: topology)
            let presence = InMemoryPresenceStore(domain: EndpointHarness.domain)

            var configuration = try EndpointConfiguration(topology: topology, node: "alpha-ep1", keys: keys, presence: presence)
            #expect(configuration.domain == EndpointHarness.domain)
            #expect(configuration.issuer == "myim:endpoint-test")
            #expect(configuration.centerName == "alpha-center")
            #expect(configuration.centerHost == "127.0.0.1")
            #expect(configuration.centerPort == 7100)
            #expect(configuration.port == 7201)
            #expect(configuration.identity.publicKey == (try keys.identityPublicKey(for: "alpha-ep1")))
            guard case .tls = configuration.linkProtection else {
                Issue.record("links: tls must give a TLS link")
                return
            }
            #expect(throws: TopologyError.self) {
                _ = try EndpointConfiguration(topology: topology, node: "alpha-ep9", keys: keys, presence: presence)
            }

            let center = try await EndpointFakeCenter.start(
                protection: LinkProtection.server(for: "alpha-center", keys: keys, links: .tls))
            configuration.port = 0
            configuration.centerPort = center.port
            let harness = try await EndpointHarness.start({ _ in }, center: center, base: configuration, presence: presence)
            let hello = await harness.center.take(.hello)
            #expect(try LinkHello(packet: try #require(hello)).node == "alpha-ep1")
            #expect(await endpointEventually { await harness.endpoint.isLinkUp })
            await harness.stop()
        }
    }
}
