import Foundation
import MyIMCenter
import MyIMLink
import MyIMPresence
import MyIMTopology
import MyIMWire
import NIOCore
import NIOPosix
import NIOSSL
import Testing

/// The link's mutual TLS with certificates from `myim keys init`, over loopback sockets.
@Suite("Link TLS", .timeLimit(.minutes(1)))
struct LinkTLSTests {
    /// A two-endpoint topology whose keys live in a fresh temporary directory.
    private func withKeys(_ body: (ClusterKeys) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("myim-link-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let topology = Topology(
            cluster: "link-test", dataDirectory: directory.appendingPathComponent("data").path,
            keysDirectory: directory.appendingPathComponent("keys").path,
            loginCenter: LoginCenterNode(name: "login"),
            domains: [
                Domain(
                    name: "alpha.example", center: CenterNode(name: "alpha-center", listen: HostPort(host: "127.0.0.1", port: 7100)),
                    endpoints: [
                        EndpointNode(name: "alpha-ep1", listen: HostPort(host: "127.0.0.1", port: 7201)),
                        EndpointNode(name: "alpha-ep2", listen: HostPort(host: "127.0.0.1", port: 7202)),
                    ])
            ])
        _ = try ClusterKeys.initialize(for: topology)
        try await body(ClusterKeys(topology: topology))
    }

    @Test func packetsCrossAMutualTLSLink() async throws {
        try await withKeys { keys in
            let server = try LinkProtection.server(for: "alpha-center", keys: keys, links: .tls)
            let listener = try await LinkChannel.bind(host: "127.0.0.1", port: 0, protection: server)
            let port = try #require(listener.channel.localAddress?.port)
            let echo = Task {
                try await listener.executeThenClose { inbound in
                    for try await link in inbound {
                        try await link.executeThenClose { packets, outbound in
                            for try await packet in packets { try await outbound.write(packet) }
                        }
                        return
                    }
                }
            }
            let client = try LinkProtection.client(for: "alpha-ep1", keys: keys, links: .tls)
            let link = try await LinkChannel.connect(host: "127.0.0.1", port: port, serverName: "alpha-center", protection: client)
            let hello = LinkHello(node: "alpha-ep1", domain: "alpha.example")
            try await link.executeThenClose { inbound, outbound in
                try await outbound.write(hello.packet)
                var packets = inbound.makeAsyncIterator()
                let echoed = try #require(try await packets.next())
                #expect(try LinkHello(packet: echoed) == hello)
            }
            echo.cancel()
            try? await listener.channel.close()
        }
    }

    @Test func aClientWithoutACertificateIsRefused() async throws {
        try await withKeys { keys in
            let server = try LinkProtection.server(for: "alpha-center", keys: keys, links: .tls)
            let listener = try await LinkChannel.bind(host: "127.0.0.1", port: 0, protection: server)
            let port = try #require(listener.channel.localAddress?.port)
            let received = Task {
                try await listener.executeThenClose { inbound -> Packet? in
                    for try await link in inbound {
                        return try? await link.executeThenClose { packets, _ in
                            var iterator = packets.makeAsyncIterator()
                            return try await iterator.next()
                        }
                    }
                    return nil
                }
            }
            // Trusts the CA but presents no certificate of its own.
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(keys.caCertificatePath))
            let anonymous = LinkProtection.tls(try NIOSSLContext(configuration: configuration))
            let link = try? await LinkChannel.connect(host: "127.0.0.1", port: port, serverName: "alpha-center", protection: anonymous)
            if let link {
                try? await link.executeThenClose { inbound, outbound in
                    try await outbound.write(LinkHello(node: "alpha-ep1", domain: "alpha.example").packet)
                    var packets = inbound.makeAsyncIterator()
                    _ = try await packets.next()
                }
            }
            let packet = try await received.value
            #expect(packet == nil, "the center read a packet from a client without a certificate")
            try? await listener.channel.close()
        }
    }

    /// What a real center answers a `LinkHello` from `node`, on a TLS link made with
    /// `certificateOf`'s certificate.
    private func centerAnswer(hello node: String, certificateOf certificateNode: String, keys: ClusterKeys) async throws -> Packet? {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("myim-link-center-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let center = try Center(configuration: CenterConfiguration(
            node: "alpha-center", domain: "alpha.example", host: "127.0.0.1", port: 0,
            protection: try LinkProtection.server(for: "alpha-center", keys: keys, links: .tls),
            databasePath: directory.appendingPathComponent("center.sqlite").path, endpoints: ["alpha-ep1", "alpha-ep2"],
            presence: InMemoryPresenceStore(domain: "alpha.example"), directory: StaticDirectory([:])))
        let listener = try await center.bind()
        let port = try #require(listener.channel.localAddress?.port)
        let serving = Task { try await center.serve(listener) }
        defer { serving.cancel() }
        let link = try await LinkChannel.connect(
            host: "127.0.0.1", port: port, serverName: "alpha-center",
            protection: try LinkProtection.client(for: certificateNode, keys: keys, links: .tls))
        return try await link.executeThenClose { inbound, outbound in
            try await outbound.write(LinkHello(node: node, domain: "alpha.example").packet)
            var packets = inbound.makeAsyncIterator()
            return try await packets.next()
        }
    }

    @Test func anEndpointCannotLinkUnderAnotherEndpointsName() async throws {
        try await withKeys { keys in
            let honest = try #require(try await centerAnswer(hello: "alpha-ep1", certificateOf: "alpha-ep1", keys: keys))
            #expect(honest.type == LinkMessageType.welcome.rawValue)

            let impostor = try #require(try await centerAnswer(hello: "alpha-ep2", certificateOf: "alpha-ep1", keys: keys))
            let refused = try LinkRefused(packet: impostor)
            #expect(refused.message.contains("not for alpha-ep2"))
        }
    }
}
