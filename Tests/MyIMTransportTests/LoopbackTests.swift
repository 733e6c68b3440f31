import Foundation
import MyIMSecureChannel
import MyIMTransport
import MyIMWire
import NIOCore
import NIOPosix
import Testing

/// The secure channel over real sockets on 127.0.0.1: an echo server and its clients.
@Suite("Secure channel over loopback sockets")
struct LoopbackTests {
    static let identity = ServerIdentityKey.generateEd25519()

    /// Runs an echo server on a free port for the duration of `body`.
    private func withEchoServer(_ body: (Int) async throws -> Void) async throws {
        let listener = try await SecureListener.bind(host: "127.0.0.1", port: 0, identity: Self.identity)
        let port = try #require(listener.channel.localAddress?.port)
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                try await listener.executeThenClose { inbound in
                    try await withThrowingDiscardingTaskGroup { connections in
                        for try await connection in inbound {
                            connections.addTask {
                                try? await connection.channel.executeThenClose { packets, outbound in
                                    for try await packet in packets { try await outbound.write(packet) }
                                }
                            }
                        }
                    }
                }
            }
            try await body(port)
            listener.channel.close(promise: nil)
        }
    }

    @Test func manyPacketsEchoInOrder() async throws {
        try await withEchoServer { port in
            let (connection, session) = try await SecureClient.connect(
                host: "127.0.0.1", port: port, policy: .pinned(Self.identity.publicKey.fingerprint))
            #expect(session.serverKey == Self.identity.publicKey)
            let sent = (0..<200).map { index in
                Packet(type: MessageType.chat.rawValue, body: ["n": .int(Int64(index)), "pad": .bytes(Array(repeating: 7, count: index * 13))])
            }
            try await connection.channel.executeThenClose { inbound, outbound in
                for packet in sent { try await outbound.write(packet) }
                var received: [Packet] = []
                for try await packet in inbound {
                    received.append(packet)
                    if received.count == sent.count { break }
                }
                #expect(received == sent)
            }
        }
    }

    @Test func aChangedKeyIsRefusedWithAClearMessage() async throws {
        try await withEchoServer { port in
            let recorded = ServerIdentityKey.generateEd25519().publicKey.fingerprint
            await #expect {
                _ = try await SecureClient.connect(host: "127.0.0.1", port: port, policy: .trustOnFirstUse(recorded: recorded))
            } throws: { error in
                guard let error = error as? SecureChannelError else { return false }
                return error.code == .serverKeyChanged && error.message.contains(recorded.description)
            }
        }
    }

    @Test func knownServersRecordsOnFirstUseThenPins() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("myim-known-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("known_servers").path
        try await withEchoServer { port in
            let server = "127.0.0.1:\(port)"
            var known = try KnownServers(path: path)
            let (first, session) = try await SecureClient.connect(host: "127.0.0.1", port: port, policy: known.policy(for: server))
            #expect(session.serverKeyFirstSeen)
            try known.record(session.serverKey.fingerprint, for: server)
            try await first.channel.channel.close()

            let reloaded = try KnownServers(path: path)
            #expect(reloaded.entries[server] == Self.identity.publicKey.fingerprint)
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
            let (second, again) = try await SecureClient.connect(host: "127.0.0.1", port: port, policy: reloaded.policy(for: server))
            #expect(!again.serverKeyFirstSeen)
            try await second.channel.channel.close()
        }
    }

    @Test func aMalformedKnownServersLineIsNamed() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("myim-known-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try "# comment\n127.0.0.1:7000 sha256:abc\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect {
            _ = try KnownServers(path: path)
        } throws: { error in
            (error as? KnownServersError)?.message.contains(":2:") == true
        }
    }
}
