import ArgumentParser
import Foundation
import Crypto
import MyIMLink
import MyIMSecureChannel
import MyIMWire
import NIOCore

/// `myim bench core`: the secure channel's cost on one core, with no sockets.
///
/// Handshakes run client and server state machines back to back in one thread; the server's
/// share is timed apart, since that is what bounds how fast a server absorbs a reconnect
/// storm. Frames are sealed and opened with the real ``FrameSealer`` / ``FrameOpener``. The
/// wire codec's rows time the generic codec on a 64-byte chat: the endpoint's decode of the
/// client's packet, the center's decode of the link packet carrying it (before the chat's
/// fields are read into a ``Chat``), and the center's encode of the delivery for one recipient
/// (a `ToClient` with a parsed body; one for two links is encoded once, then copied).
struct BenchCore: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "core",
        abstract: "Handshakes/s, AES-GCM frame throughput and the wire codec's cost per chat on one core (build with -c release)."
    )

    @Option(help: "Seconds to spend on each measurement.")
    var seconds: Double = 2

    func run() throws {
        guard seconds > 0, seconds <= 60 else { throw ValidationError("--seconds must be in (0, 60]") }
        let budget = Duration.milliseconds(Int64(seconds * 1000))
        #if DEBUG
        print("note: this is a debug build; run `swift run -c release myim bench core` for real figures\n")
        #endif
        print("MyIM secure channel, one core, \(seconds) s per row")
        print(pad("measurement", 44) + pad("ops/s", 12, right: true) + pad("µs/op", 10, right: true) + pad("MB/s", 10, right: true))
        let rsa = try ServerIdentityKey.generateRSA()
        for (name, identity) in [("RSA-2048 PSS", rsa), ("Ed25519", ServerIdentityKey.generateEd25519())] {
            let result = try measureHandshakes(identity: identity, budget: budget)
            report("handshake, both sides (\(name))", ops: result.count, elapsed: result.total)
            report("handshake, server side only (\(name))", ops: result.count, elapsed: result.server)
        }
        for size in [64, 1024] {
            let result = try measureFrames(payloadSize: size, budget: budget)
            report("seal \(size) B message (\(result.frameSize) B frame)", ops: result.count, elapsed: result.seal, bytes: size)
            report("open \(size) B message (\(result.frameSize) B frame)", ops: result.count, elapsed: result.open, bytes: size)
        }
        for (name, operation) in Self.wireOperations() {
            let (count, elapsed) = try Self.repeated(operation, budget: budget)
            report(name, ops: count, elapsed: elapsed)
        }
    }

    /// A 64-byte chat as it crosses the servers: decoded from the client, decoded from the
    /// endpoint's link, and its delivery encoded for the recipient's link.
    private static func wireOperations() -> [(String, () throws -> Void)] {
        let text = String(repeating: "x", count: 64)
        let chat = Chat(target: .user("bob@alpha.example"), content: .text(text), clientMessageID: UUID().uuidString, qos: .bestEffort).packet
        let chatBytes = chat.encoded()
        let linkBytes = FromClient(session: "ep1:12345", payload: chat).packet.encoded()
        let delivery = ChatDelivery(
            kind: .user, time: 1_800_000_000_000, senderID: 1, senderName: "alice@alpha.example", targetID: 2,
            targetName: "bob@alpha.example", content: .text(text), serverMessageID: 123_456, clientMessageID: UUID().uuidString,
            qos: .bestEffort, serverID: "alpha-center")
        var out = ByteBuffer()
        out.reserveCapacity(1024)
        return [
            ("decode a 64 B chat (6) packet", { _ = try Packet(decoding: chatBytes) }),
            ("decode the link packet carrying it", { _ = try FromClient(packet: try Packet(decoding: linkBytes)) }),
            ("encode its delivery (18) in a link packet", {
                out.clear()
                out.writePacket(ToClient(sessions: ["ep2:12345"], payload: delivery.packet).packet)
            }),
        ]
    }

    /// Runs `operation` in batches of 1,000 until `budget` is spent: how many runs, in how long.
    private static func repeated(_ operation: () throws -> Void, budget: Duration) throws -> (count: Int, elapsed: Duration) {
        let clock = ContinuousClock()
        let start = clock.now
        var count = 0
        while clock.now - start < budget {
            for _ in 0..<1000 { try operation() }
            count += 1000
        }
        return (count, clock.now - start)
    }

    private func measureHandshakes(identity: ServerIdentityKey, budget: Duration) throws -> (count: Int, total: Duration, server: Duration) {
        let clock = ContinuousClock()
        let start = clock.now
        var server = Duration.zero
        var count = 0
        let policy = ServerKeyPolicy.pinned(identity.publicKey.fingerprint)
        while clock.now - start < budget {
            var client = ClientChannelStateMachine(policy: policy)
            var serverMachine = ServerChannelStateMachine(identity: identity)
            var toServer = try Self.written(client.start())
            var serverStart = clock.now
            var toClient = try Self.written(serverMachine.receive(&toServer))
            server += clock.now - serverStart
            toServer = try Self.written(client.receive(&toClient))
            serverStart = clock.now
            toClient = try Self.written(serverMachine.receive(&toServer))
            server += clock.now - serverStart
            _ = try Self.written(client.receive(&toClient))
            guard client.isEstablished, serverMachine.isEstablished else {
                throw ValidationError("a benchmark handshake did not complete")
            }
            count += 1
        }
        return (count, clock.now - start, server)
    }

    private func measureFrames(payloadSize: Int, budget: Duration) throws -> (count: Int, frameSize: Int, seal: Duration, open: Duration) {
        let keys = TrafficKeys(key: SymmetricKey(size: .bits256), salt: [1, 2, 3, 4])
        // A chat-shaped packet whose encoding is `payloadSize` bytes in all.
        let overhead = Packet(type: MessageType.chat.rawValue, body: ["data": .bytes([])]).encoded().readableBytes
        let packet = Packet(type: MessageType.chat.rawValue, body: ["data": .bytes(Array(repeating: 0x61, count: payloadSize - overhead))])
        var sealer = FrameSealer(keys: keys)
        var opener = FrameOpener(keys: keys)
        let clock = ContinuousClock()
        let batch = 1000
        var frames = ByteBuffer()
        frames.reserveCapacity(batch * (FrameProtection.overhead + FrameProtection.paddedLength(for: payloadSize)))
        var seal = Duration.zero, open = Duration.zero, count = 0
        while seal + open < budget {
            frames.clear()
            let sealStart = clock.now
            for _ in 0..<batch { try sealer.seal(packet, into: &frames) }
            seal += clock.now - sealStart
            let openStart = clock.now
            for _ in 0..<batch {
                guard try opener.open(from: &frames) != nil else { throw ValidationError("a benchmark frame did not open") }
            }
            open += clock.now - openStart
            count += batch
        }
        return (count, FrameProtection.overhead + FrameProtection.paddedLength(for: payloadSize), seal, open)
    }

    /// The bytes of every write action; a close action is a failed benchmark.
    private static func written(_ actions: [SecureChannelAction]) throws -> ByteBuffer {
        var out = ByteBuffer()
        for action in actions {
            switch action {
            case .write(var bytes): out.writeBuffer(&bytes)
            case .close(let error): throw error
            case .established, .deliver: break
            }
        }
        return out
    }

    private func report(_ name: String, ops: Int, elapsed: Duration, bytes: Int? = nil) {
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let perSecond = Double(ops) / seconds
        let megabytes = bytes.map { String(format: "%.1f", perSecond * Double($0) / 1e6) } ?? "-"
        print(pad(name, 44) + pad(String(format: "%.0f", perSecond), 12, right: true)
              + pad(String(format: "%.2f", 1e6 / perSecond), 10, right: true) + pad(megabytes, 10, right: true))
    }

    private func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
        let fill = String(repeating: " ", count: max(0, width - text.count))
        return right ? fill + text : text + fill
    }
}
