import MyIMLink
import MyIMWire
import NIOCore
import Testing

/// The link's frame decoder with types left encoded, and `ToClient` read for forwarding.
@Suite struct LinkFramingTests {
    private let delivery = ChatDelivery(
        kind: .user, time: 1_800_000_000_000, senderID: 2, senderName: "bob@alpha.example", targetID: 7,
        targetName: "alice@alpha.example", content: .text("消息 hi"), serverMessageID: 9, clientMessageID: "c1", qos: .atLeastOnce)

    @Test func aToClientLeftEncodedForwardsItsPayloadAsTheCenterEncodedIt() throws {
        let message = ToClient(sessions: ["ep1:1", "ep1:2"], payload: delivery.packet)
        var stream = message.packet.encoded()
        var ping = LinkPing(time: 5).packet.encoded()
        stream.writeBuffer(&ping)
        var decoder = PacketFrameDecoder(leftEncoded: [LinkMessageType.toClient.rawValue])

        let first = try #require(try decoder.decode(buffer: &stream))
        #expect(first.encodedBody != nil)
        let forwarded = try ToClient(forwarding: first)
        #expect(forwarded.sessions == ["ep1:1", "ep1:2"])
        #expect(forwarded.payload.encodedBody != nil)
        // What the client receives parses to the packet the center sent.
        #expect(try Packet(decoding: forwarded.payload.encoded()) == delivery.packet)
        #expect(forwarded.payload.int("time") == 1_800_000_000_000)

        // Other types are parsed as before; a partial frame waits.
        #expect(try decoder.decode(buffer: &stream) == LinkPing(time: 5).packet)
        var partial = message.packet.encoded()
        partial.moveWriterIndex(to: partial.writerIndex - 1)
        #expect(try decoder.decode(buffer: &partial) == nil)
    }

    @Test func aParsedToClientForwardsToo() throws {
        let message = ToClient(sessions: ["ep1:1"], payload: delivery.packet)
        #expect(try ToClient(forwarding: message.packet) == message)
    }

    /// The center encodes a delivery going to several endpoints once: a `ToClient` around the
    /// encoded body is byte for byte the one around the parsed body, and reads back as it.
    @Test func aToClientAroundAnEncodedBodyIsTheSameLinkPacket() throws {
        let parsed = ToClient(sessions: ["ep1:1", "ep2:9"], payload: delivery.packet)
        let shared = ToClient(sessions: ["ep1:1", "ep2:9"], payload: delivery.packet.encodingBody())
        #expect(shared.payload.encodedBody != nil)
        #expect(shared.packet.encodedBody != nil)
        #expect(shared.packet.encoded() == parsed.packet.encoded())
        #expect(try ToClient(packet: shared.packet) == parsed)
        #expect(shared.body == parsed.body)
    }

    @Test func anEncodedFrameOverTheLimitIsRefusedFromItsHeader() {
        var limits = WireLimits()
        limits.maxFrameSize = 1024
        var decoder = PacketFrameDecoder(limits: limits, leftEncoded: [LinkMessageType.toClient.rawValue])
        var header = ByteBuffer()
        header.writeInteger(LinkMessageType.toClient.rawValue)
        header.writeInteger(UInt32(4096))
        #expect(throws: WireError.self) { try decoder.decode(buffer: &header) }
    }

    @Test func aToClientWithoutADictBodyIsRefused() throws {
        var body = ByteBuffer()
        body.writeWireDict(["sessions": .list([.string("ep1:1")]), "type": .int(18), "body": .string("x")])
        let error = #expect(throws: WireError.self) {
            try ToClient(forwarding: Packet(type: LinkMessageType.toClient.rawValue, encodedBody: body))
        }
        #expect(error?.code == .wrongValueType)
    }
}
