import MyIMWire
import NIOCore
import Testing

/// Packets passed on with the body they came in: the bytes written are the bytes of the
/// parsed packet, a body can be parsed with one dict left encoded, and one int read without
/// parsing.
@Suite struct EncodedBodyTests {
    /// Every sample message, written from its encoded body, is byte for byte what writing it
    /// from its parsed body gives, and parses back to the same packet.
    @Test(arguments: MessageType.allCases)
    func anEncodedBodyIsWrittenAsTheParsedOneWouldBe(type: MessageType) throws {
        let packet = sample(type).packet
        let encoded = packet.encoded()
        let body = encoded.getSlice(at: Packet.headerSize, length: encoded.readableBytes - Packet.headerSize)!
        let forwarded = Packet(type: packet.type, encodedBody: body)
        #expect(forwarded.encoded() == encoded)
        #expect(try Packet(decoding: forwarded.encoded()) == packet)
    }

    /// The encoder stores through one pointer into memory sized beforehand: its bytes are
    /// those of the format written field by field, and its computed size is what it writes.
    @Test func theEncoderWritesTheFormatFieldByField() throws {
        let values: [WireDict] = [
            [:],
            ["i": .int(-1), "max": .int(.max), "min": .int(.min), "t": .bool(true), "f": .bool(false)],
            ["empty": .string(""), "ascii": .string("hello"), "消息": .string("你好, 🌍"), "b": .bytes([]), "b2": .bytes([0, 255, 7])],
            ["list": .list([]), "mixed": .list([.int(1), .string("x"), .list([.dict([:]), .dict(["k": .bytes([1])])])])],
            ["deep": .dict(["a": .dict(["b": .dict(["c": .list([.bool(false)])])])]), String(repeating: "k", count: 64): .int(0)],
        ]
        for dict in values {
            var encoded = ByteBuffer()
            let written = encoded.writeWireDict(dict)
            #expect(written == encoded.readableBytes)
            #expect(dict.encodedSize == written)
            #expect(encoded == Self.fieldByField(dict))
            #expect(try WireParser.parseBody(encoded) == dict)

            var value = ByteBuffer(bytes: [9, 9])
            value.moveReaderIndex(forwardBy: 2)
            #expect(value.writeWireValue(.dict(dict)) == WireValue.dict(dict).encodedSize)
            var expected = ByteBuffer()
            Self.fieldByField(.dict(dict), into: &expected)
            #expect(value == expected)
        }
    }

    /// A packet's body encoded once for several destinations is written as the parsed one.
    @Test(arguments: MessageType.allCases)
    func aBodyEncodedOnceIsWrittenAsTheParsedOne(type: MessageType) throws {
        let packet = sample(type).packet
        let shared = packet.encodingBody()
        #expect(shared.encodedBody != nil)
        #expect(shared.encoded() == packet.encoded())
        #expect(try shared.parsedBody() == packet.body)
        #expect(shared.encodingBody() == shared)
    }

    /// The format of section 3, one field at a time (the reference the encoder is held to).
    private static func fieldByField(_ dict: WireDict) -> ByteBuffer {
        var buffer = ByteBuffer()
        for entry in dict.entries {
            buffer.writeInteger(UInt8(entry.key.utf8.count))
            buffer.writeString(entry.key)
            fieldByField(entry.value, into: &buffer)
        }
        return buffer
    }

    private static func fieldByField(_ value: WireValue, into buffer: inout ByteBuffer) {
        var content = ByteBuffer()
        switch value {
        case .int(let int): content.writeInteger(int, endianness: .big)
        case .string(let string): content.writeString(string)
        case .bool(let bool): content.writeInteger(UInt8(bool ? 1 : 0))
        case .bytes(let bytes): content.writeBytes(bytes)
        case .dict(let dict): content = fieldByField(dict)
        case .list(let elements): for element in elements { fieldByField(element, into: &content) }
        }
        buffer.writeInteger(value.kind.rawValue)
        buffer.writeInteger(UInt32(content.readableBytes))
        buffer.writeBuffer(&content)
    }

    @Test func aBodyParsesWithOneDictLeftEncoded() throws {
        let inner: WireDict = ["text": .string("消息 and ASCII"), "n": .int(7), "nested": .dict(["a": .list([.int(1)])])]
        let outer: WireDict = ["sessions": .list([.string("ep1:1")]), "type": .int(18), "body": .dict(inner)]
        var buffer = ByteBuffer()
        buffer.writeWireDict(outer)
        let (parsed, kept) = try WireParser.parseBody(buffer, keepingEncoded: "body")
        #expect(parsed == ["sessions": .list([.string("ep1:1")]), "type": .int(18)])
        #expect(try WireParser.parseBody(try #require(kept)) == inner)

        // Not a dict: parsed (and checked) like any value; absent: nothing kept.
        var notDict = ByteBuffer()
        notDict.writeWireDict(["body": .string("x")])
        #expect(try WireParser.parseBody(notDict, keepingEncoded: "body") == (["body": .string("x")], nil))
        #expect(try WireParser.parseBody(ByteBuffer(), keepingEncoded: "body").kept == nil)
    }

    @Test func theKeptValueCountsAgainstTheBodysValueLimit() throws {
        var limits = WireLimits()
        limits.maxValueCount = 2
        var buffer = ByteBuffer()
        buffer.writeWireDict(["type": .int(18), "n": .int(1), "body": .dict(["k": .int(1)])])
        #expect(throws: WireError.self) { try WireParser.parseBody(buffer, keepingEncoded: "body", limits: limits) }
        do {
            _ = try WireParser.parseBody(buffer, keepingEncoded: "body", limits: limits)
        } catch {
            #expect(error.code == .tooManyValues)
        }
        limits.maxValueCount = 3
        #expect(try WireParser.parseBody(buffer, keepingEncoded: "body", limits: limits).kept != nil)
    }

    @Test func theRestOfABodyIsCheckedAsUsualAndTheKeptValueForItsLength() {
        var duplicate = ByteBuffer()
        duplicate.writeWireDict(["body": .dict([:])])
        duplicate.writeWireDict(["body": .dict([:])])
        #expect(throws: WireError.self) { try WireParser.parseBody(duplicate, keepingEncoded: "body") }

        var truncated = ByteBuffer()
        truncated.writeWireDict(["body": .dict(["k": .int(1)])])
        let cut = truncated.getSlice(at: 0, length: truncated.readableBytes - 3)!
        #expect(throws: WireError.self) { try WireParser.parseBody(cut, keepingEncoded: "body") }
    }

    @Test func oneIntIsReadFromAnEncodedBodyWithoutParsingIt() throws {
        var buffer = ByteBuffer()
        buffer.writeWireDict(["text": .string("hi"), "list": .list([.int(3)]), "time": .int(1_800_000_000_123), "s": .string("t")])
        let packet = Packet(type: 18, encodedBody: buffer)
        #expect(packet.int("time") == 1_800_000_000_123)
        #expect(packet.int("text") == nil)
        #expect(packet.int("absent") == nil)
        #expect(Packet(type: 18, encodedBody: buffer.getSlice(at: 0, length: 9)!).int("time") == nil)
        #expect(Packet(type: 18, body: ["time": .int(5)]).int("time") == 5)
    }
}
