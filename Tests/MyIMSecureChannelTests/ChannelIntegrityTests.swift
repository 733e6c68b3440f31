import MyIMSecureChannel
import MyIMWire
import NIOCore
import Testing

/// Replayed, reordered and tampered frames on an established channel. Each closes the
/// connection with its own code, with no HelloError (that is for the handshake only), and
/// the machine ignores everything after.
@Suite("Established channel: replay, reordering and tampering")
struct ChannelIntegrityTests {
    /// An established pair (Ed25519; frame protection does not depend on the identity).
    private static func established() throws -> Handshake {
        try Handshake(identity: TestKeys.ed25519)
    }

    /// A Ping with a time is a 26-byte packet: a 32-byte bucket with 6 bytes of padding.
    private static let ping = Ping(time: 1_700_000_000_000).packet

    /// Delivers `tampered` to the server and checks it closes with `code` and then stays closed.
    private static func expectServerCloses(_ run: inout Handshake, on tampered: ByteBuffer, with code: ErrorCode, sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(run.server.feed(tampered).kinds == [.close(code)], sourceLocation: sourceLocation)
        #expect(!run.server.isEstablished, sourceLocation: sourceLocation)
        // Even a perfectly good next frame is ignored now.
        var next = ByteBuffer()
        try run.client.seal(Ping(time: 2).packet, into: &next)
        #expect(run.server.feed(next).isEmpty, sourceLocation: sourceLocation)
        var out = ByteBuffer()
        let error = #expect(throws: SecureChannelError.self, sourceLocation: sourceLocation) {
            try run.server.seal(Ping().packet, into: &out)
        }
        #expect(error?.code == .notEstablished, sourceLocation: sourceLocation)
    }

    private static func sealedPing(_ run: inout Handshake) throws -> ByteBuffer {
        var frame = ByteBuffer()
        try run.client.seal(ping, into: &frame)
        try #require(frame.readableBytes == FrameProtection.overhead + 32)
        try #require(frame.getInteger(at: 4, as: UInt8.self) == 6)
        return frame
    }

    // MARK: Sequence

    @Test("a replayed frame: unexpectedSequence (207)")
    func replayedFrame() throws {
        var run = try Self.established()
        let frame = try Self.sealedPing(&run)
        #expect(run.server.feed(frame).delivered == [Self.ping])
        try Self.expectServerCloses(&run, on: frame, with: .unexpectedSequence)
    }

    @Test("a frame replayed within the same read: delivered once, then unexpectedSequence (207)")
    func replayedInSameRead() throws {
        var run = try Self.established()
        var twice = try Self.sealedPing(&run)
        var copy = twice
        twice.writeBuffer(&copy)
        #expect(run.server.feed(twice).kinds == [.deliver, .close(.unexpectedSequence)])
    }

    @Test("a replayed frame at the client: unexpectedSequence (207)")
    func replayedFrameAtClient() throws {
        var run = try Self.established()
        var frame = ByteBuffer()
        try run.server.seal(Self.ping, into: &frame)
        #expect(run.client.feed(frame).kinds == [.deliver])
        #expect(run.client.feed(frame).kinds == [.close(.unexpectedSequence)])
        #expect(run.client.feed(frame).isEmpty)
    }

    @Test("the HelloDone frame replayed after the handshake: unexpectedSequence (207)")
    func replayedHelloDone() throws {
        var run = try Self.established()
        #expect(run.client.feed(run.helloDone).kinds == [.close(.unexpectedSequence)])
    }

    @Test("reordered frames: unexpectedSequence (207)")
    func reorderedFrames() throws {
        var run = try Self.established()
        var first = ByteBuffer()
        var second = ByteBuffer()
        try run.client.seal(Ping(time: 1).packet, into: &first)
        try run.client.seal(Ping(time: 2).packet, into: &second)
        try Self.expectServerCloses(&run, on: second, with: .unexpectedSequence)
        #expect(run.server.feed(first).isEmpty)
    }

    @Test("a dropped frame: the one after it fails with unexpectedSequence (207)")
    func droppedFrame() throws {
        var run = try Self.established()
        var frames: [ByteBuffer] = []
        for time in 1...3 {
            var frame = ByteBuffer()
            try run.client.seal(Ping(time: Int64(time)).packet, into: &frame)
            frames.append(frame)
        }
        #expect(run.server.feed(frames[0]).kinds == [.deliver])
        #expect(run.server.feed(frames[2]).kinds == [.close(.unexpectedSequence)])
    }

    @Test("a frame reflected back to its sender: unexpectedSequence (207), the salts differ by direction")
    func reflectedFrame() throws {
        var run = try Self.established()
        let frame = try Self.sealedPing(&run)
        let actions = run.client.feed(frame)
        #expect(actions.kinds == [.close(.unexpectedSequence)])
        #expect(actions.closeError?.message.contains("salt") == true)
    }

    // MARK: Bit flips

    @Test("a flipped ciphertext bit: decryptionFailed (206)", arguments: [0, 13, 31])
    func flippedCiphertextBit(byte: Int) throws {
        var run = try Self.established()
        let frame = try Self.sealedPing(&run)
        let offset = FrameProtection.headerSize + FrameProtection.ivSize + FrameProtection.tagSize + byte
        try Self.expectServerCloses(&run, on: frame.flippingBit(byte % 8, atOffset: offset), with: .decryptionFailed)
    }

    @Test("a flipped tag bit: decryptionFailed (206)", arguments: [0, 15])
    func flippedTagBit(byte: Int) throws {
        var run = try Self.established()
        let frame = try Self.sealedPing(&run)
        let offset = FrameProtection.headerSize + FrameProtection.ivSize + byte
        try Self.expectServerCloses(&run, on: frame.flippingBit(4, atOffset: offset), with: .decryptionFailed)
    }

    @Test("a flipped IV bit, in the counter or the salt: unexpectedSequence (207)", arguments: [0, 3, 4, 11])
    func flippedIVBit(byte: Int) throws {
        var run = try Self.established()
        let frame = try Self.sealedPing(&run)
        try Self.expectServerCloses(&run, on: frame.flippingBit(0, atOffset: FrameProtection.headerSize + byte), with: .unexpectedSequence)
    }

    /// The Ping frame's pad-len byte is 6 and the packet needs 8 of the 32 bytes, so a
    /// pad-len of up to 24 is plausible: flipping bits 0–4 keeps it plausible and only the
    /// AEAD (the header is its additional data) can tell; bits 5–7 make it exceed the room
    /// and the 5-byte header is refused before any decryption.
    static let padLengthFlips: [(bit: Int, code: ErrorCode)] = [
        (0, .decryptionFailed), (1, .decryptionFailed), (2, .decryptionFailed), (3, .decryptionFailed), (4, .decryptionFailed),
        (5, .badPadding), (6, .badPadding), (7, .badPadding),
    ]

    @Test("a flipped pad-len bit: decryptionFailed (206) if plausible, else badPadding (208)", arguments: padLengthFlips)
    func flippedPadLengthBit(bit: Int, code: ErrorCode) throws {
        var run = try Self.established()
        let frame = try Self.sealedPing(&run)
        try Self.expectServerCloses(&run, on: frame.flippingBit(bit, atOffset: 4), with: code)
    }

    /// The Ping frame's length field is 32 (0x00000020). A flipped bit either leaves a size
    /// that is not a padding bucket (208) or one above the 16 MiB frame limit (100); both
    /// are refused from the header alone.
    struct LengthFlip: Sendable, CustomTestStringConvertible {
        var byte: Int
        var bit: Int
        var code: ErrorCode
        var testDescription: String { "length byte \(byte) bit \(bit) -> \(code)" }
    }

    static let lengthFlips: [LengthFlip] = [
        LengthFlip(byte: 3, bit: 0, code: .badPadding),    // 33
        LengthFlip(byte: 3, bit: 5, code: .badPadding),    // 0
        LengthFlip(byte: 3, bit: 6, code: .badPadding),    // 96
        LengthFlip(byte: 2, bit: 0, code: .badPadding),    // 288
        LengthFlip(byte: 1, bit: 0, code: .badPadding),    // 65,568
        LengthFlip(byte: 0, bit: 0, code: .frameTooLarge), // 16 MiB + 32
        LengthFlip(byte: 0, bit: 7, code: .frameTooLarge), // 2 GiB + 32
    ]

    @Test("a flipped length bit: badPadding (208) or frameTooLarge (100), from the header alone", arguments: lengthFlips)
    func flippedLengthBit(flip: LengthFlip) throws {
        var run = try Self.established()
        let frame = try Self.sealedPing(&run)
        let tampered = frame.flippingBit(flip.bit, atOffset: flip.byte)
        let headerOnly = tampered.getSlice(at: tampered.readerIndex, length: FrameProtection.headerSize)!
        try Self.expectServerCloses(&run, on: headerOnly, with: flip.code)
    }

    @Test("a flipped length bit in a whole frame closes the same way", arguments: lengthFlips)
    func flippedLengthBitWholeFrame(flip: LengthFlip) throws {
        var run = try Self.established()
        let frame = try Self.sealedPing(&run)
        try Self.expectServerCloses(&run, on: frame.flippingBit(flip.bit, atOffset: flip.byte), with: flip.code)
    }

    // MARK: Headers on their own

    struct BadHeader: Sendable, CustomTestStringConvertible {
        var name: String
        var header: [UInt8]
        var code: ErrorCode
        var testDescription: String { "\(name) -> \(code)" }
    }

    static let badHeaders: [BadHeader] = [
        BadHeader(name: "16 MiB + 256, over the frame limit", header: [0x01, 0x00, 0x01, 0x00, 0], code: .frameTooLarge),
        BadHeader(name: "4 GiB - 1", header: [0xff, 0xff, 0xff, 0xff, 0], code: .frameTooLarge),
        BadHeader(name: "33, not a bucket", header: [0, 0, 0, 33, 0], code: .badPadding),
        BadHeader(name: "300, not a bucket", header: [0, 0, 0x01, 0x2c, 0], code: .badPadding),
        BadHeader(name: "0", header: [0, 0, 0, 0, 0], code: .badPadding),
        BadHeader(name: "16, below the smallest bucket", header: [0, 0, 0, 16, 0], code: .badPadding),
        BadHeader(name: "32 with 25 bytes of padding, no room for a packet header", header: [0, 0, 0, 32, 25], code: .badPadding),
        BadHeader(name: "256 with 255 bytes of padding", header: [0, 0, 0x01, 0x00, 255], code: .badPadding),
    ]

    @Test("an impossible frame header is refused from its 5 bytes alone", arguments: badHeaders)
    func impossibleHeader(bad: BadHeader) throws {
        var run = try Self.established()
        try Self.expectServerCloses(&run, on: ByteBuffer(bytes: bad.header), with: bad.code)
    }

    static let plausibleHeaders: [[UInt8]] = [
        [0x01, 0x00, 0x00, 0x00, 0],  // exactly 16 MiB: allowed, so the machine waits for it
        [0, 0, 0, 32, 24],            // an empty-bodied packet and 24 bytes of padding
        [0, 0, 0x02, 0x00, 255],      // 512, the most padding there can be
    ]

    @Test("a plausible header alone produces no action and waits for the rest", arguments: plausibleHeaders)
    func plausibleHeaderWaits(header: [UInt8]) throws {
        var run = try Self.established()
        var buffer = ByteBuffer(bytes: header)
        #expect(run.server.receive(&buffer).isEmpty)
        #expect(buffer.readableBytes == header.count)
        #expect(run.server.isEstablished)
    }

    @Test("a frame too large for a smaller configured limit is refused from its header")
    func configuredFrameLimit() throws {
        var limits = WireLimits()
        limits.maxFrameSize = 4096
        var client = ClientChannelStateMachine(policy: .pinned(TestKeys.ed25519.publicKey.fingerprint), limits: limits)
        var server = ServerChannelStateMachine(identity: TestKeys.ed25519, limits: limits)
        let finished = client.feed(server.feed(client.start().written).written).written
        #expect(client.feed(server.feed(finished).written).kinds == [.established])

        #expect(server.feed(ByteBuffer(bytes: [0, 0, 0x20, 0x00, 0])).kinds == [.close(.frameTooLarge)])
        var out = ByteBuffer()
        let error = #expect(throws: SecureChannelError.self) {
            try client.seal(Packet(type: MessageType.fileChunk.rawValue, body: ["data": .bytes(Array(repeating: 1, count: 5000))]), into: &out)
        }
        #expect(error?.code == .frameTooLarge)
        #expect(out.readableBytes == 0)
    }

    // MARK: Content

    @Test("a handshake message inside the established channel: unexpectedMessage (201)")
    func handshakeMessageAfterHandshake() throws {
        var run = try Self.established()
        var frame = ByteBuffer()
        try run.client.seal(ClientFinished(verify: Array(repeating: 0, count: 32)).packet, into: &frame)
        try Self.expectServerCloses(&run, on: frame, with: .unexpectedMessage)

        var other = try Self.established()
        frame.clear()
        try other.server.seal(HelloError(code: .badSignature, message: "no").packet, into: &frame)
        #expect(other.client.feed(frame).kinds == [.close(.unexpectedMessage)])
    }
}
