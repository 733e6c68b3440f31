import MyIMLink
import MyIMWire
import NIOCore
import NIOEmbedded
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

    /// Link bodies around a client packet, valid and mutated at random: what `FromClient` and
    /// `ToClient` read for forwarding is what reading the parsed dict gives, and they refuse
    /// what it refuses.
    @Test func envelopesReadInOnePassAsTheParserReadsThem() {
        var seed: UInt64 = 7
        func next() -> Int {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(truncatingIfNeeded: seed >> 33)
        }
        var agreed = 0, refused = 0
        for round in 0..<6000 {
            let sessions = (0..<(next() % 4)).map { "ep\($0):\(round)" }
            let link = round % 2 == 0
                ? FromClient(session: sessions.first ?? "ep1:1", payload: Chat(target: .user("b@x"), content: .text("hi"), clientMessageID: "c").packet).packet
                : ToClient(sessions: sessions, payload: delivery.packet).packet
            var bytes = Array(link.encoded().readableBytesView.dropFirst(Packet.headerSize))
            if round % 3 != 0 {
                for _ in 0...(next() % 2) {
                    switch next() % 3 {
                    case 0: bytes[next() % bytes.count] = UInt8(truncatingIfNeeded: next())
                    case 1: bytes.removeLast(next() % min(4, bytes.count))
                    default: bytes.insert(UInt8(truncatingIfNeeded: next()), at: next() % (bytes.count + 1))
                    }
                    if bytes.isEmpty { bytes = [0] }
                }
            }
            let encoded = Packet(type: link.type, encodedBody: ByteBuffer(bytes: bytes))
            let general: (dict: WireDict, kept: ByteBuffer)? = {
                guard let (dict, kept) = try? WireParser.parseBody(ByteBuffer(bytes: bytes), keepingEncoded: "body"), let kept else { return nil }
                return (dict, kept)
            }()
            if round % 2 == 0 {
                let expected = general.flatMap { general -> FromClient? in
                    guard let session = try? general.dict.string("session"), let type = try? general.dict.int("type") else { return nil }
                    return FromClient(session: session, payload: Packet(type: UInt32(truncatingIfNeeded: type), encodedBody: general.kept))
                }
                #expect((try? FromClient(forwarding: encoded)) == expected, "\(bytes)")
                if expected == nil { refused += 1 } else { agreed += 1 }
            } else {
                let expected = general.flatMap { general -> ToClient? in
                    guard let sessions = try? general.dict.stringList("sessions"), let type = try? general.dict.int("type") else { return nil }
                    return ToClient(sessions: sessions, payload: Packet(type: UInt32(truncatingIfNeeded: type), encodedBody: general.kept))
                }
                #expect((try? ToClient(forwarding: encoded)) == expected, "\(bytes)")
                if expected == nil { refused += 1 } else { agreed += 1 }
            }
        }
        #expect(agreed > 2000 && refused > 1000)
    }

    /// Packets written between two flushes leave as one buffer, in order (over TLS one record
    /// and one `SSL_write` for all), and each write's promise completes with it.
    @Test func packetsWrittenBetweenFlushesLeaveAsOneBuffer() throws {
        let channel = EmbeddedChannel(handler: PacketBatchEncoder())
        let packets = (0..<5).map { index in ToClient(sessions: ["ep1:\(index)"], payload: delivery.packet).packet }
        let written = packets.map { packet in
            let promise = channel.eventLoop.makePromise(of: Void.self)
            channel.write(packet, promise: promise)
            return promise.futureResult
        }
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil, "held until the flush")
        channel.flush()
        var batch = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil, "one buffer for the five")
        var decoder = PacketFrameDecoder()
        for packet in packets { #expect(try decoder.decode(buffer: &batch) == packet) }
        #expect(batch.readableBytes == 0)
        for future in written { try future.wait() }
        #expect(try channel.finish().isClean)
    }

    /// A batch that reaches a TLS record's size is passed on without waiting for the flush.
    @Test func aBatchOfARecordsSizeIsPassedOnBeforeTheFlush() throws {
        let channel = EmbeddedChannel(handler: PacketBatchEncoder())
        let big = ChatDelivery(
            kind: .user, time: 1, senderID: 2, senderName: "b", targetID: 3, targetName: "a",
            content: .text(String(repeating: "x", count: 6000)), serverMessageID: 4, clientMessageID: "c", qos: .bestEffort).packet
        for _ in 0..<4 { channel.write(big, promise: nil) }
        channel.flush()
        let first = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(first.readableBytes >= PacketBatchEncoder.batchLimit && first.readableBytes < PacketBatchEncoder.batchLimit + 6100, "three packets of 6 kB pass 16 KiB")
        let second = try #require(try channel.readOutbound(as: ByteBuffer.self), "the fourth in a batch of its own")
        var all = first
        all.writeImmutableBuffer(second)
        var decoder = PacketFrameDecoder()
        for _ in 0..<4 { #expect(try decoder.decode(buffer: &all) == big) }
        #expect(all.readableBytes == 0)
    }

    /// What was written and not flushed is passed on before a close goes through, so that the
    /// channel fails it (or sends it) as any unflushed write, and no promise is left waiting.
    @Test func aCloseFirstPassesOnWhatIsHeld() throws {
        let recorder = WriteRecorder()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([recorder, PacketBatchEncoder()])
        channel.write(LinkPing(time: 1).packet, promise: nil)
        #expect(recorder.events.isEmpty)
        channel.close(promise: nil)
        #expect(recorder.events == ["write \(LinkPing(time: 1).packet.encodedSize) bytes", "close"])
    }
}

/// Records the writes and closes that reach it from the handlers after it.
private final class WriteRecorder: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    var events: [String] = []

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        events.append("write \(unwrapOutboundIn(data).readableBytes) bytes")
        context.write(data, promise: promise)
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        events.append("close")
        context.close(mode: mode, promise: promise)
    }
}
