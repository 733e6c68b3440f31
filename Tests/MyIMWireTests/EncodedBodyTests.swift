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
