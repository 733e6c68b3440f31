import Crypto
import MyIMSecureChannel
import MyIMWire
import NIOCore
import Testing

@Suite("Frame protection: padding buckets and the layer-1 frame")
struct FrameProtectionTests {
    private static let keys = TrafficKeys(key: SymmetricKey(size: .bits256), salt: [0xde, 0xad, 0xbe, 0xef])

    /// A packet of exactly `length` bytes (at least 15): a bytes value under a one-letter key.
    private static func packet(ofLength length: Int) -> Packet {
        precondition(length >= 15)
        return Packet(type: MessageType.fileChunk.rawValue, body: ["d": .bytes(Array(repeating: 0x42, count: length - 15))])
    }

    // MARK: Buckets

    static let buckets: [(length: Int, padded: Int)] = [
        (0, 32), (1, 32), (8, 32), (31, 32), (32, 32), (33, 64), (64, 64), (65, 128), (100, 128), (128, 128),
        (129, 256), (255, 256), (256, 256), (257, 512), (511, 512), (512, 512), (513, 768), (1000, 1024),
        (1024, 1024), (1025, 1280), (65_535, 65_536), (1_000_000, 1_000_192),
    ]

    @Test("paddedLength: 32, 64, 128, 256, then multiples of 256", arguments: buckets)
    func paddedLength(length: Int, padded: Int) {
        #expect(FrameProtection.paddedLength(for: length) == padded)
        #expect(FrameProtection.isPaddedLength(padded))
        #expect(padded - length <= 255)
    }

    @Test("isPaddedLength accepts exactly the buckets")
    func isPaddedLength() {
        let accepted = (0...2048).filter(FrameProtection.isPaddedLength)
        #expect(accepted == [32, 64, 128, 256, 512, 768, 1024, 1280, 1536, 1792, 2048])
        for length in 0...2048 {
            #expect(FrameProtection.isPaddedLength(FrameProtection.paddedLength(for: length)))
        }
    }

    // MARK: The sealed frame

    @Test("a sealed frame is 5 + 12 + 16 + the padded length, announces it, and says how much is padding",
          arguments: [15, 26, 32, 33, 100, 200, 256, 257, 1000, 5000])
    func sealedFrameLayout(length: Int) throws {
        let packet = Self.packet(ofLength: length)
        var sealer = FrameSealer(keys: Self.keys)
        var frame = ByteBuffer()
        try sealer.seal(packet, into: &frame)

        let padded = FrameProtection.paddedLength(for: length)
        #expect(frame.readableBytes == 5 + 12 + 16 + padded)
        #expect(frame.getInteger(at: 0, as: UInt32.self) == UInt32(padded))
        #expect(frame.getInteger(at: 4, as: UInt8.self) == UInt8(padded - length))

        // Opened by hand: IV = salt || counter, header as AAD, packet then zero bytes.
        let iv = frame.getBytes(at: 5, length: 12)!
        #expect(iv == [0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0, 0, 0])
        let box = try AES.GCM.SealedBox(
            nonce: AES.GCM.Nonce(data: iv), ciphertext: frame.getBytes(at: 33, length: padded)!, tag: frame.getBytes(at: 17, length: 16)!)
        let plaintext = Array(try AES.GCM.open(box, using: Self.keys.key, authenticating: frame.getBytes(at: 0, length: 5)!))
        #expect(plaintext == packet.encoded().bytes + Array(repeating: 0, count: padded - length))

        var opener = FrameOpener(keys: Self.keys)
        #expect(try opener.open(from: &frame) == packet)
        #expect(frame.readableBytes == 0)
    }

    @Test("counters start at 0, go up by one a frame, and are the IV's last 8 bytes, big-endian")
    func counters() throws {
        var sealer = FrameSealer(keys: Self.keys)
        var opener = FrameOpener(keys: Self.keys)
        #expect(sealer.counter == 0)
        var stream = ByteBuffer()
        for index in 0..<300 {
            var frame = ByteBuffer()
            try sealer.seal(Ping(time: Int64(index)).packet, into: &frame)
            #expect(frame.getInteger(at: 5 + 4, as: UInt64.self) == UInt64(index))
            stream.writeBuffer(&frame)
        }
        #expect(sealer.counter == 300)
        for index in 0..<300 {
            #expect(try opener.open(from: &stream) == Ping(time: Int64(index)).packet)
        }
        #expect(opener.counter == 300)
        #expect(try opener.open(from: &stream) == nil)
    }

    @Test("frames sealed one after another into a buffer partly read already each open, the buffer's other bytes untouched")
    func sealingAppends() throws {
        var sealer = FrameSealer(keys: Self.keys)
        var opener = FrameOpener(keys: Self.keys)
        var output = ByteBuffer(bytes: [1, 2, 3, 4, 5])
        output.moveReaderIndex(forwardBy: 3)
        let packets = [Ping(time: 1).packet, Self.packet(ofLength: 300), Self.packet(ofLength: 40).encodingBody()]
        for packet in packets { try sealer.seal(packet, into: &output) }
        #expect(output.readBytes(length: 2) == [4, 5])
        for packet in packets {
            let opened = try #require(try opener.open(from: &output))
            #expect(opened.encoded() == packet.encoded())
        }
        #expect(output.readableBytes == 0)
    }

    @Test("a partial frame yields nil and consumes nothing, at every cut")
    func partialFrames() throws {
        var sealer = FrameSealer(keys: Self.keys)
        var frame = ByteBuffer()
        try sealer.seal(Self.packet(ofLength: 100), into: &frame)
        for cut in 0..<frame.readableBytes {
            var opener = FrameOpener(keys: Self.keys)
            var partial = frame.getSlice(at: 0, length: cut)!
            #expect(try opener.open(from: &partial) == nil)
            #expect(partial.readableBytes == cut)
            #expect(opener.counter == 0)
        }
    }

    @Test("a packet too big for the frame limit is refused when sealing: frameTooLarge (100)")
    func sealTooLarge() throws {
        var limits = WireLimits()
        limits.maxFrameSize = 1024
        var sealer = FrameSealer(keys: Self.keys, limits: limits)
        var out = ByteBuffer()
        try sealer.seal(Self.packet(ofLength: 1024), into: &out)
        out.clear()
        let error = #expect(throws: SecureChannelError.self) { try sealer.seal(Self.packet(ofLength: 1025), into: &out) }
        #expect(error?.code == .frameTooLarge)
        #expect(out.readableBytes == 0)
        #expect(sealer.counter == 1)
    }

    // MARK: Frames no honest sealer writes

    /// Seals `plaintext` as it is (no padding added) with the given header fields.
    private static func handmadeFrame(plaintext: [UInt8], padLength: UInt8, counter: UInt64 = 0, key: SymmetricKey = keys.key) throws -> ByteBuffer {
        var header = ByteBuffer()
        header.writeInteger(UInt32(plaintext.count))
        header.writeInteger(padLength)
        var iv = keys.salt
        withUnsafeBytes(of: counter.bigEndian) { iv.append(contentsOf: $0) }
        let sealed = try AES.GCM.seal(plaintext, using: key, nonce: AES.GCM.Nonce(data: iv), authenticating: header.bytes)
        var frame = header
        frame.writeBytes(iv)
        frame.writeBytes(sealed.tag)
        frame.writeBytes(sealed.ciphertext)
        return frame
    }

    @Test("a hand-made frame in the same layout opens: the layout is what the protocol says")
    func handmadeFrameOpens() throws {
        let packet = Ping(time: 5).packet.encoded().bytes
        var frame = try Self.handmadeFrame(plaintext: packet + Array(repeating: 0, count: 32 - packet.count), padLength: UInt8(32 - packet.count))
        var opener = FrameOpener(keys: Self.keys)
        #expect(try opener.open(from: &frame) == Ping(time: 5).packet)
    }

    /// Frames are sealed and opened through libcrypto on Linux: each direction must agree with
    /// swift-crypto's AES-GCM, byte for byte, whatever the size.
    @Test("frames agree with swift-crypto's AES-GCM both ways, at every padding size", arguments: [15, 27, 200, 1_000, 70_000, 600_000])
    func framesAgreeWithSwiftCrypto(length: Int) throws {
        let packet = Self.packet(ofLength: length)
        let plaintext = packet.encoded().bytes
        let padded = FrameProtection.paddedLength(for: plaintext.count)
        // Sealed here, opened by swift-crypto.
        var sealer = FrameSealer(keys: Self.keys)
        var frame = ByteBuffer()
        try sealer.seal(packet, into: &frame)
        let bytes = frame.bytes
        let box = try AES.GCM.SealedBox(nonce: AES.GCM.Nonce(data: bytes[5..<17]), ciphertext: bytes[33...], tag: bytes[17..<33])
        let opened = try AES.GCM.open(box, using: Self.keys.key, authenticating: bytes[..<5])
        #expect(Array(opened) == plaintext + Array(repeating: 0, count: padded - plaintext.count))
        // Sealed by swift-crypto, opened here.
        var handmade = try Self.handmadeFrame(
            plaintext: plaintext + Array(repeating: 0, count: padded - plaintext.count), padLength: UInt8(padded - plaintext.count))
        #expect(handmade.bytes == bytes, "the same key, IV and plaintext make the same frame")
        var opener = FrameOpener(keys: Self.keys)
        #expect(try opener.open(from: &handmade) == packet)
    }

    @Test("on Linux frames go through libcrypto; a failed open does not spoil the next, and keys alternate on one thread")
    func theThreadsCipherContextRecoversAndRekeys() throws {
        #if os(Linux)
        #expect(FrameProtection.backend == "libcrypto")
        #endif
        try FrameProtection.prepare()
        let other = TrafficKeys(key: SymmetricKey(size: .bits256), salt: [1, 2, 3, 4])
        var sealers = [FrameSealer(keys: Self.keys), FrameSealer(keys: other)]
        var openers = [FrameOpener(keys: Self.keys), FrameOpener(keys: other)]
        for round in 0..<4 {
            for index in [round % 2, 1 - round % 2] {
                var frame = ByteBuffer()
                try sealers[index].seal(Ping(time: Int64(round * 2 + index)).packet, into: &frame)
                if round == 1 {
                    // A tampered copy fails; the genuine frame then opens with the same opener.
                    var tampered = frame
                    tampered.setInteger(tampered.getInteger(at: tampered.writerIndex - 1, as: UInt8.self)! ^ 1, at: tampered.writerIndex - 1)
                    var spoiled = openers[index]
                    #expect(throws: SecureChannelError.self) { try spoiled.open(from: &tampered) }
                }
                #expect(try openers[index].open(from: &frame) == Ping(time: Int64(round * 2 + index)).packet)
            }
        }
    }

    @Test("non-zero padding bytes: badPadding (208)")
    func nonZeroPadding() throws {
        let packet = Ping(time: 5).packet.encoded().bytes
        var padding = Array(repeating: UInt8(0), count: 32 - packet.count)
        padding[padding.count - 1] = 1
        var frame = try Self.handmadeFrame(plaintext: packet + padding, padLength: UInt8(padding.count))
        var opener = FrameOpener(keys: Self.keys)
        let error = #expect(throws: SecureChannelError.self) { try opener.open(from: &frame) }
        #expect(error?.code == .badPadding)
    }

    @Test("a frame sealed under another key: decryptionFailed (206)")
    func wrongKey() throws {
        var sealer = FrameSealer(keys: TrafficKeys(key: SymmetricKey(size: .bits256), salt: Self.keys.salt))
        var frame = ByteBuffer()
        try sealer.seal(Ping().packet, into: &frame)
        var opener = FrameOpener(keys: Self.keys)
        let error = #expect(throws: SecureChannelError.self) { try opener.open(from: &frame) }
        #expect(error?.code == .decryptionFailed)
        #expect(opener.counter == 0)
    }

    @Test("a well-authenticated frame holding a malformed packet fails with the wire error")
    func malformedPacketInside() throws {
        // A packet header announcing a 100-byte body, then zeros: 32 bytes, no padding.
        var plaintext = ByteBuffer()
        plaintext.writeInteger(UInt32(MessageType.ping.rawValue))
        plaintext.writeInteger(UInt32(100))
        plaintext.writeRepeatingByte(0, count: 24)
        var frame = try Self.handmadeFrame(plaintext: plaintext.bytes, padLength: 0)
        var opener = FrameOpener(keys: Self.keys)
        let error = #expect(throws: SecureChannelError.self) { try opener.open(from: &frame) }
        #expect(error?.code == .lengthMismatch)
    }
}
