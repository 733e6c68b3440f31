import MyIMWire
import NIOCore
import Testing

/// The chat reader the endpoint and the center use for chats of the usual shape
/// (`Chat(canonical:)`): what it reads is what the general parser reads, and anything it does
/// not take is left to that parser, which reads it or refuses it with its own error.
@Suite struct CanonicalChatTests {
    /// Random chats of the usual shape, keys in any order, `qos` present or not: each is read
    /// by the canonical reader, as the parser reads it, and an endpoint keeps it encoded.
    @Test func aChatOfTheUsualShapeIsReadAsTheParserReadsIt() throws {
        var rng = SplitMix64(seed: 6)
        for _ in 0..<500 {
            let body = Self.shuffled(Self.randomChatBody(&rng), &rng)
            var encoded = ByteBuffer()
            encoded.writeWireDict(body)
            let parsed = try Chat(body: WireParser.parseBody(encoded))
            #expect(Chat(canonical: encoded) == parsed)
            #expect(Chat.isCanonical(encoded))

            let packet = Packet(type: MessageType.chat.rawValue, body: body)
            let kept = try Packet(decoding: packet.encoded(), leavingChatsEncoded: true)
            #expect(kept.encodedBody == encoded, "a chat of the usual shape is kept as its bytes")
            #expect(kept == packet)
            #expect(try Packet(decoding: packet.encoded()).encodedBody == nil, "parsed unless asked")
        }
    }

    /// Bytes of chats mutated at random: whatever the reader takes, the parser takes and reads
    /// the same way (the reader never accepts what the parser refuses, nor reads it otherwise).
    @Test func whatTheReaderTakesFromMutatedBytesTheParserReadsTheSame() {
        var rng = SplitMix64(seed: 18)
        var taken = 0, left = 0, disagreements: [String] = []
        for _ in 0..<20_000 {
            var bytes = ByteBuffer()
            bytes.writeWireDict(Self.shuffled(Self.randomChatBody(&rng), &rng))
            var mutated = Array(bytes.readableBytesView)
            for _ in 0...rng.below(3) {
                switch rng.below(4) {
                case 0: mutated[rng.below(mutated.count)] = UInt8(rng.below(256))
                case 1: mutated[rng.below(mutated.count)] ^= 1 << UInt8(rng.below(8))
                case 2: mutated.removeLast(rng.below(min(8, mutated.count)))
                default: mutated.insert(UInt8(rng.below(256)), at: rng.below(mutated.count + 1))
                }
                if mutated.isEmpty { mutated = [0] }
            }
            let input = ByteBuffer(bytes: mutated)
            guard let chat = Chat(canonical: input) else {
                left += 1
                continue
            }
            taken += 1
            do {
                let parsed = try Chat(body: WireParser.parseBody(input))
                if parsed != chat { disagreements.append("read \(chat), parser \(parsed)") }
            } catch {
                disagreements.append("taken but the parser refuses it: \(error)")
            }
        }
        print("CanonicalChatTests: 20000 mutated chats, \(taken) taken by the reader, \(left) left to the parser")
        #expect(disagreements.isEmpty, "\(disagreements.prefix(3))")
        #expect(taken > 1000 && left > 1000, "the mutations should both keep and break the shape")
    }

    /// Bodies that are not of the usual shape: the reader leaves each to the parser, which
    /// accepts some (an unknown key is ignored) and refuses others with the error it names.
    @Test(arguments: [
        ("an unknown key", Self.body(adding: ("extra", .string("x"))), nil as ErrorCode?),
        ("a text with a mime", Self.body(message: ["type": .int(0), "data": .string("hi"), "mime": .string("text/plain")]), nil),
        ("an unknown key in the message", Self.body(message: ["type": .int(0), "data": .string("hi"), "x": .int(1)]), nil),
        ("a target of the wrong type", Self.body(replacing: "target_id", with: .int(5)), .wrongValueType),
        ("a chat type out of range", Self.body(replacing: "type", with: .int(2)), .invalidField),
        ("a qos out of range", Self.body(replacing: "qos", with: .int(2)), .invalidField),
        ("an empty client_msg_id", Self.body(replacing: "client_msg_id", with: .string("")), .invalidField),
        ("a client_msg_id of 65 bytes", Self.body(replacing: "client_msg_id", with: .string(String(repeating: "a", count: 65))), .invalidField),
        ("no client_msg_id", Self.body(replacing: "client_msg_id", with: nil), .missingKey),
        ("an image whose data is text", Self.body(message: ["type": .int(1), "data": .string("not bytes")]), .wrongValueType),
        ("a content type out of range", Self.body(message: ["type": .int(7), "data": .string("?")]), .invalidField),
    ] as [(String, WireDict, ErrorCode?)])
    func otherShapesAreLeftToTheParser(_ name: String, body: WireDict, refusal: ErrorCode?) throws {
        var encoded = ByteBuffer()
        encoded.writeWireDict(body)
        #expect(Chat(canonical: encoded) == nil, "\(name)")
        #expect(!Chat.isCanonical(encoded))
        #expect(try Packet(decoding: Packet(type: 6, body: body).encoded(), leavingChatsEncoded: true).encodedBody == nil)
        do {
            _ = try Chat(body: WireParser.parseBody(encoded))
            #expect(refusal == nil, "\(name): the parser accepted it")
        } catch {
            #expect(error.code == refusal, "\(name): \(error)")
        }
    }

    /// Bytes the parser refuses as bytes (a key twice, invalid UTF-8, a text over the limit)
    /// are never taken: the endpoint then refuses them with the parser's error, as before.
    @Test func bytesThatDoNotParseAreNeverTaken() throws {
        var twice = ByteBuffer()
        twice.writeWireDict(Self.body(replacing: "qos", with: nil))
        twice.writeWireDict(["qos": .int(0)])
        twice.writeWireDict(["qos": .int(0)])
        var invalid = ByteBuffer()
        invalid.writeWireDict(Self.body(message: ["type": .int(0), "data": .string("ok")]))
        let at = invalid.readableBytesView.firstRange(of: Array("ok".utf8))!.lowerBound
        invalid.setInteger(UInt8(0xC3), at: at)
        var limits = WireLimits()
        limits.maxStringLength = 8
        var long = ByteBuffer()
        long.writeWireDict(Self.body(message: ["type": .int(0), "data": .string("nine byte")]))

        for (bytes, code, limits) in [(twice, ErrorCode.duplicateKey, WireLimits()), (invalid, .invalidUTF8, .init()), (long, .stringTooLong, limits)] {
            #expect(Chat(canonical: bytes, limits: limits) == nil)
            #expect(throws: WireError.self) { try WireParser.parseBody(bytes, limits: limits) }
            do { _ = try WireParser.parseBody(bytes, limits: limits) } catch { #expect(error.code == code) }
        }
        #expect(Chat(canonical: long) != nil, "within the default limits")
    }

    /// A delivery written from its fields is byte for byte the encoding of its dict.
    @Test func aDeliveryEncodedFromItsFieldsIsTheBytesOfItsDict() throws {
        var rng = SplitMix64(seed: 8)
        for index in 0..<200 {
            let chat = try Chat(body: Self.randomChatBody(&rng))
            let delivery = ChatDelivery(
                kind: chat.target.kind, time: Int64(rng.next() >> 1), senderID: Int64(index), senderName: Self.address(&rng),
                targetID: -Int64(index), targetName: Self.address(&rng), content: chat.content, serverMessageID: Int64(rng.next() >> 2),
                clientMessageID: chat.clientMessageID, qos: chat.qos,
                seq: rng.chance(50) ? Int64(index) : nil, serverID: rng.chance(50) ? "center-\(index)" : nil)
            var expected = ByteBuffer()
            expected.writeWireDict(delivery.body)
            let packet = delivery.encodedPacket
            #expect(packet.encodedBody == expected)
            #expect(packet.type == MessageType.chatDelivery.rawValue)
            #expect(try ChatDelivery(packet: packet) == delivery)
        }
    }

    /// The entry writers give the bytes of the same entries in a dict.
    @Test func entriesWrittenOneByOneAreTheBytesOfTheirDict() {
        var written = ByteBuffer()
        written.writeWireEntry("sessions", strings: ["ep1:1", "端点:2", ""])
        written.writeWireEntry("type", int: -18)
        written.writeWireEntry("session", string: "ep1:7")
        var expected = ByteBuffer()
        expected.writeWireDict([
            "sessions": .list([.string("ep1:1"), .string("端点:2"), .string("")]), "type": .int(-18), "session": .string("ep1:7"),
        ])
        #expect(written == expected)
    }

    // MARK: - Samples

    private static func body(adding entry: (String, WireValue)? = nil, message: WireDict? = nil, replacing key: String? = nil, with value: WireValue? = nil) -> WireDict {
        var body = Chat(target: .user("bob@example.org"), content: .text("hi"), clientMessageID: "c-1", qos: .bestEffort).body
        if let entry { body[entry.0] = entry.1 }
        if let message { body["message"] = .dict(message) }
        if let key { body[key] = value }
        return body
    }

    private static func address(_ rng: inout SplitMix64) -> String {
        String(rng.pick(["bob", "Ālice", "张伟", "x"])) + "\(rng.below(1000))@" + rng.pick(["example.org", "例子.中国"])
    }

    private static func text(_ rng: inout SplitMix64, maxLength: Int) -> String {
        let pieces = ["a", "Z", "0", " ", "é", "消息", "🌍", "\u{0}", "ß"]
        return (0..<rng.below(maxLength + 1)).map { _ in rng.pick(pieces) }.joined()
    }

    static func randomChatBody(_ rng: inout SplitMix64) -> WireDict {
        let target: ChatTarget = rng.chance(70) ? .user(address(&rng)) : .group(Int64(bitPattern: rng.next()))
        let content: ChatContent = rng.chance(70)
            ? .text(text(&rng, maxLength: 40))
            : .image(bytes: (0..<rng.below(64)).map { _ in UInt8(rng.below(256)) }, mime: rng.chance(50) ? "image/png" : nil)
        var id = text(&rng, maxLength: 16)
        if id.isEmpty || id.utf8.count > 64 { id = "id-\(rng.below(100))" }
        var body = Chat(target: target, content: content, clientMessageID: id, qos: rng.chance(50) ? .bestEffort : .atLeastOnce).body
        if rng.chance(30) { body["qos"] = nil }
        return body
    }

    /// The same entries in a random order, the message's too.
    static func shuffled(_ body: WireDict, _ rng: inout SplitMix64) -> WireDict {
        var entries = body.entries
        for index in entries.indices.reversed() { entries.swapAt(index, rng.below(index + 1)) }
        var shuffled = WireDict()
        for entry in entries {
            if case .dict(let message) = entry.value {
                shuffled[entry.key] = .dict(Self.shuffled(message, &rng))
            } else {
                shuffled[entry.key] = entry.value
            }
        }
        return shuffled
    }
}
