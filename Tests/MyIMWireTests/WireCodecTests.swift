import Foundation
import MyIMWire
import NIOCore
import Testing

// MARK: - Hand-made bytes (independent of the encoder)

/// Parses hex written by hand; whitespace and `|` separate fields and are ignored.
private func hex(_ text: String) -> [UInt8] {
    let digits = Array(text.unicodeScalars.filter { !CharacterSet.whitespacesAndNewlines.contains($0) && $0 != "|" })
    precondition(digits.count % 2 == 0, "odd number of hex digits")
    return stride(from: 0, to: digits.count, by: 2).map { index in
        guard let byte = UInt8(String(digits[index]) + String(digits[index + 1]), radix: 16) else {
            preconditionFailure("not hex: \(digits[index])\(digits[index + 1])")
        }
        return byte
    }
}

/// Value-type bytes as the format defines them, spelled out so the tests do not lean on `WireValue.Kind`.
private enum T {
    static let int: UInt8 = 1
    static let string: UInt8 = 2
    static let bool: UInt8 = 3
    static let list: UInt8 = 4
    static let dict: UInt8 = 5
    static let bytes: UInt8 = 6
}

private func be32(_ value: UInt32) -> [UInt8] {
    [UInt8(value >> 24), UInt8(truncatingIfNeeded: value >> 16), UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value)]
}

private func be64(_ value: Int64) -> [UInt8] {
    let bits = UInt64(bitPattern: value)
    return (0..<8).map { UInt8(truncatingIfNeeded: bits >> (56 - 8 * UInt64($0))) }
}

/// `value-type u8 | value-len u32 | value`; `claiming` overrides the length field.
private func rawValue(_ type: UInt8, _ payload: [UInt8], claiming length: UInt32? = nil) -> [UInt8] {
    [type] + be32(length ?? UInt32(payload.count)) + payload
}

/// `key-len u8 | key | value-type u8 | value-len u32 | value`.
private func rawEntry(_ key: String, _ type: UInt8, _ payload: [UInt8], claiming length: UInt32? = nil) -> [UInt8] {
    rawEntry(keyBytes: Array(key.utf8), type, payload, claiming: length)
}

private func rawEntry(keyBytes: [UInt8], _ type: UInt8, _ payload: [UInt8], claiming length: UInt32? = nil) -> [UInt8] {
    [UInt8(keyBytes.count)] + keyBytes + rawValue(type, payload, claiming: length)
}

/// `type u32 | body-len u32 | body`.
private func rawPacket(type: UInt32, body: [UInt8], claiming length: UInt32? = nil) -> [UInt8] {
    be32(type) + be32(length ?? UInt32(body.count)) + body
}

private func limits(_ configure: (inout WireLimits) -> Void) -> WireLimits {
    var limits = WireLimits()
    configure(&limits)
    return limits
}

private func parse(_ bytes: [UInt8], limits: WireLimits = .default) -> Result<WireDict, WireError> {
    do throws(WireError) {
        return .success(try WireParser.parseBody(ByteBuffer(bytes: bytes), limits: limits))
    } catch {
        return .failure(error)
    }
}

/// The error parsing `bytes` as a body gives, or nil if it parses.
private func bodyError(_ bytes: [UInt8], limits: WireLimits = .default) -> WireError? {
    if case .failure(let error) = parse(bytes, limits: limits) { return error }
    return nil
}

private func decodePacket(_ bytes: [UInt8], limits: WireLimits = .default) -> Result<Packet, WireError> {
    do throws(WireError) {
        return .success(try Packet(decoding: ByteBuffer(bytes: bytes), limits: limits))
    } catch {
        return .failure(error)
    }
}

private func packetError(_ bytes: [UInt8], limits: WireLimits = .default) -> WireError? {
    if case .failure(let error) = decodePacket(bytes, limits: limits) { return error }
    return nil
}

// MARK: - Vectors

/// One entry of every type, written out from the format rules.
private let vectorBodyHex = """
    01 69 | 01 | 00 00 00 08 | 00 00 00 00 00 00 01 02
    01 73 | 02 | 00 00 00 06 | 68 c3 a9 6c 6c 6f
    01 74 | 03 | 00 00 00 01 | 01
    01 66 | 03 | 00 00 00 01 | 00
    01 6c | 04 | 00 00 00 24 | 01 00 00 00 08 00 00 00 00 00 00 00 07
                               02 00 00 00 02 61 62
                               03 00 00 00 01 01
                               06 00 00 00 00
                               04 00 00 00 00
    01 64 | 05 | 00 00 00 0f | 01 6b 02 00 00 00 01 76
                               01 6e 05 00 00 00 00
    01 62 | 06 | 00 00 00 05 | de ad be ef 00
    03 6e 65 67 | 01 | 00 00 00 08 | ff ff ff ff ff ff ff fe
    03 6d 69 6e | 01 | 00 00 00 08 | 80 00 00 00 00 00 00 00
    03 6d 61 78 | 01 | 00 00 00 08 | 7f ff ff ff ff ff ff ff
    """

/// The same body inside a packet of type 20 (0x14); 172 (0xac) body bytes.
private let vectorPacketHex = "00 00 00 14 | 00 00 00 ac |" + vectorBodyHex

private let vectorBody: WireDict = [
    "i": .int(258),
    "s": .string("h\u{E9}llo"),
    "t": .bool(true),
    "f": .bool(false),
    "l": .list([.int(7), .string("ab"), .bool(true), .bytes([]), .list([])]),
    "d": .dict(["k": .string("v"), "n": .dict([:])]),
    "b": .bytes([0xDE, 0xAD, 0xBE, 0xEF, 0x00]),
    "neg": .int(-2),
    "min": .int(.min),
    "max": .int(.max),
]

@Suite("Wire codec")
struct WireCodecTests {
    // MARK: Test vectors

    @Test func vectorBodyEncodesToHex() {
        var buffer = ByteBuffer()
        let written = buffer.writeWireDict(vectorBody)
        #expect(Array(buffer.readableBytesView) == hex(vectorBodyHex))
        #expect(written == 172)
    }

    @Test func vectorBodyParsesFromHex() throws {
        let parsed = try parse(hex(vectorBodyHex)).get()
        #expect(parsed == vectorBody)
        // Order is kept, not only membership.
        #expect(parsed.entries.map(\.key) == ["i", "s", "t", "f", "l", "d", "b", "neg", "min", "max"])
        #expect(parsed.entries.map(\.value) == vectorBody.entries.map(\.value))
    }

    @Test func vectorPacketBothWays() throws {
        let packet = Packet(type: 20, body: vectorBody)
        #expect(Array(packet.encoded().readableBytesView) == hex(vectorPacketHex))
        let decoded = try decodePacket(hex(vectorPacketHex)).get()
        #expect(decoded == packet)
    }

    @Test func emptyPacketBothWays() throws {
        let bytes = hex("ff ff ff ff | 00 00 00 00")
        #expect(Array(Packet(type: .max).encoded().readableBytesView) == bytes)
        #expect(try decodePacket(bytes).get() == Packet(type: .max))
    }

    @Test(arguments: [
        (Int64(0), "00 00 00 00 00 00 00 00"),
        (Int64(1), "00 00 00 00 00 00 00 01"),
        (Int64(-1), "ff ff ff ff ff ff ff ff"),
        (Int64(-2), "ff ff ff ff ff ff ff fe"),
        (Int64(-256), "ff ff ff ff ff ff ff 00"),
        (Int64(0x0102_0304_0506_0708), "01 02 03 04 05 06 07 08"),
        (Int64.max, "7f ff ff ff ff ff ff ff"),
        (Int64.min, "80 00 00 00 00 00 00 00"),
        (Int64.min + 1, "80 00 00 00 00 00 00 01"),
    ])
    func intVectors(value: Int64, bigEndian: String) throws {
        let bytes = hex("01 78 | 01 | 00 00 00 08 |" + bigEndian)
        var buffer = ByteBuffer()
        buffer.writeWireDict(["x": .int(value)])
        #expect(Array(buffer.readableBytesView) == bytes)
        #expect(try parse(bytes).get() == ["x": .int(value)])
    }

    @Test func stringAndBytesVectors() throws {
        // A 4-byte UTF-8 scalar, an empty string, an empty bytes value.
        let bytes = hex("""
            01 65 | 02 | 00 00 00 04 | f0 9f 98 80
            01 7a | 02 | 00 00 00 00
            01 62 | 06 | 00 00 00 00
            """)
        let body: WireDict = ["e": .string("\u{1F600}"), "z": .string(""), "b": .bytes([])]
        var buffer = ByteBuffer()
        buffer.writeWireDict(body)
        #expect(Array(buffer.readableBytesView) == bytes)
        #expect(try parse(bytes).get() == body)
    }

    // MARK: Drip feeding

    private static let streamPackets: [Packet] = [
        Packet(type: 1),
        Packet(type: 20, body: ["a": .int(1)]),
        Packet(type: 0xFFFF_FFFF, body: vectorBody),
        Packet(type: 1006, body: [
            "list": .list((0..<40).map { .int(Int64($0) - 20) }),
            "blob": .bytes((0..<300).map { UInt8(truncatingIfNeeded: $0) }),
            "nested": .dict(["x": .dict(["y": .list([.string("deep"), .bool(false)])])]),
        ]),
        Packet(type: 7),
    ]

    @Test func dripFeedingYieldsTheSamePackets() throws {
        var all = ByteBuffer()
        var individual: [[UInt8]] = []
        for packet in Self.streamPackets {
            let start = all.writerIndex
            all.writePacket(packet)
            individual.append(Array(all.getBytes(at: start, length: all.writerIndex - start)!))
        }
        let maxSize = WireLimits.default.maxFrameSize

        // All at once.
        var whole = all
        var atOnce: [(packet: Packet, raw: ByteBuffer)] = []
        while let next = try Packet.read(from: &whole, maxSize: maxSize) { atOnce.append(next) }
        #expect(whole.readableBytes == 0)
        #expect(atOnce.map(\.packet) == Self.streamPackets)
        #expect(atOnce.map { Array($0.raw.readableBytesView) } == individual)

        // One byte at a time.
        var stream = ByteBuffer()
        var dripped: [(packet: Packet, raw: ByteBuffer)] = []
        var nilCount = 0
        for byte in all.readableBytesView {
            stream.writeInteger(byte)
            while true {
                let readerIndex = stream.readerIndex
                let readable = stream.readableBytes
                guard let next = try Packet.read(from: &stream, maxSize: maxSize) else {
                    nilCount += 1
                    // Incomplete: nothing consumed.
                    #expect(stream.readerIndex == readerIndex)
                    #expect(stream.readableBytes == readable)
                    break
                }
                dripped.append(next)
            }
        }
        #expect(stream.readableBytes == 0)
        #expect(dripped.map(\.packet) == atOnce.map(\.packet))
        #expect(dripped.map { Array($0.raw.readableBytesView) } == individual)
        #expect(nilCount == all.readableBytes)
    }

    @Test func everyStrictPrefixIsIncomplete() throws {
        let bytes = Array(Packet(type: 3, body: vectorBody).encoded().readableBytesView)
        for length in 0..<bytes.count {
            var buffer = ByteBuffer(bytes: bytes[..<length])
            let result = try Packet.read(from: &buffer, maxSize: 1024)
            #expect(result == nil)
            #expect(buffer.readerIndex == 0 && buffer.readableBytes == length)
        }
    }

    @Test func readStopsAtMaxSizeExactly() throws {
        let bytes = Array(Packet(type: 3, body: vectorBody).encoded().readableBytesView)
        var exact = ByteBuffer(bytes: bytes)
        let read = try Packet.read(from: &exact, maxSize: bytes.count)
        #expect(read?.packet == Packet(type: 3, body: vectorBody))
        var tooSmall = ByteBuffer(bytes: bytes)
        #expect(throws: WireError.self) { try Packet.read(from: &tooSmall, maxSize: bytes.count - 1) }
    }

    // MARK: Limit violations and malformed input

    @Test func frameTooLargeFromTheHeaderAlone() throws {
        // Only the 8 header bytes are present; the rejection must not wait for the body.
        var header = ByteBuffer(bytes: hex("00 00 00 01 | 00 00 03 f9"))  // 1017 body bytes > 1024 - 8
        var thrown: WireError?
        do throws(WireError) { _ = try Packet.read(from: &header, maxSize: 1024) } catch { thrown = error }
        #expect(thrown?.code == .frameTooLarge)

        var atLimit = ByteBuffer(bytes: hex("00 00 00 01 | 00 00 03 f8"))  // 1016: allowed, just incomplete
        let incomplete = try Packet.read(from: &atLimit, maxSize: 1024)
        #expect(incomplete == nil)

        var huge = ByteBuffer(bytes: hex("00 00 00 01 | ff ff ff ff"))
        thrown = nil
        do throws(WireError) { _ = try Packet.read(from: &huge, maxSize: WireLimits.default.maxFrameSize) } catch { thrown = error }
        #expect(thrown?.code == .frameTooLarge)

        let small = limits { $0.maxFrameSize = 64 }
        #expect(packetError(rawPacket(type: 1, body: [UInt8](repeating: 0, count: 57)), limits: small)?.code == .frameTooLarge)
        #expect(packetError(hex("00 00 00 01 | 00 00 00 39"), limits: small)?.code == .frameTooLarge)
    }

    @Test func nestingTooDeepInDicts() {
        let depth3 = limits { $0.maxDepth = 3 }
        // body (1) > a (2) > b (3): allowed.
        let ok = rawEntry("a", T.dict, rawEntry("b", T.dict, rawEntry("c", T.int, be64(1))))
        #expect(bodyError(ok, limits: depth3) == nil)
        // body (1) > a (2) > b (3) > c (4): too deep, even when c is empty.
        let deep = rawEntry("a", T.dict, rawEntry("b", T.dict, rawEntry("c", T.dict, [])))
        let error = bodyError(deep, limits: depth3)
        #expect(error?.code == .nestingTooDeep)
        #expect(error?.message.contains("(at a.b.c)") == true)
    }

    @Test func nestingTooDeepInLists() {
        let depth3 = limits { $0.maxDepth = 3 }
        let ok = rawEntry("l", T.list, rawValue(T.list, rawValue(T.bool, [1])))
        #expect(bodyError(ok, limits: depth3) == nil)
        let deep = rawEntry("l", T.list, rawValue(T.list, rawValue(T.list, [])))
        let error = bodyError(deep, limits: depth3)
        #expect(error?.code == .nestingTooDeep)
        #expect(error?.message.contains("(at l.[0].[0])") == true)
        // Mixed: a dict in a list in a dict.
        let mixed = rawEntry("l", T.list, rawValue(T.dict, rawEntry("d", T.dict, [])))
        #expect(bodyError(mixed, limits: depth3)?.code == .nestingTooDeep)
    }

    @Test func nestingTooDeepWithDefaultLimits() {
        // 17 nested dicts below the body: depth 18 > 16.
        var inner: [UInt8] = []
        for _ in 0..<17 { inner = rawEntry("x", T.dict, inner) }
        #expect(bodyError(inner)?.code == .nestingTooDeep)
        var allowed: [UInt8] = []
        for _ in 0..<15 { allowed = rawEntry("x", T.dict, allowed) }
        #expect(bodyError(allowed) == nil)
    }

    @Test func containerTooLong() {
        let four = limits { $0.maxContainerCount = 4 }
        let fourEntries = (0..<4).flatMap { rawEntry("k\($0)", T.bool, [0]) }
        #expect(bodyError(fourEntries, limits: four) == nil)
        let fiveEntries = (0..<5).flatMap { rawEntry("k\($0)", T.bool, [0]) }
        #expect(bodyError(fiveEntries, limits: four)?.code == .containerTooLong)
        let nestedDict = rawEntry("d", T.dict, fiveEntries)
        let nestedError = bodyError(nestedDict, limits: four)
        #expect(nestedError?.code == .containerTooLong)
        #expect(nestedError?.message.contains("(at d)") == true)

        let fourElements = rawEntry("l", T.list, (0..<4).flatMap { _ in rawValue(T.bool, [1]) })
        #expect(bodyError(fourElements, limits: four) == nil)
        let fiveElements = rawEntry("l", T.list, (0..<5).flatMap { _ in rawValue(T.bool, [1]) })
        let listError = bodyError(fiveElements, limits: four)
        #expect(listError?.code == .containerTooLong)
        #expect(listError?.message.contains("(at l)") == true)
    }

    @Test func tooManyValues() {
        let five = limits { $0.maxValueCount = 5 }
        // The list itself counts: l + 4 elements = 5 values.
        let fiveValues = rawEntry("l", T.list, (0..<4).flatMap { _ in rawValue(T.int, be64(0)) })
        #expect(bodyError(fiveValues, limits: five) == nil)
        let sixValues = fiveValues + rawEntry("x", T.bool, [0])
        #expect(bodyError(sixValues, limits: five)?.code == .tooManyValues)
        // Counted across depths, not per container.
        let spread = rawEntry("a", T.dict, rawEntry("b", T.int, be64(1)) + rawEntry("c", T.int, be64(2)))
            + rawEntry("d", T.list, rawValue(T.bool, [0]) + rawValue(T.bool, [1]) + rawValue(T.bool, [0]))
        #expect(bodyError(spread, limits: five)?.code == .tooManyValues)
    }

    @Test func stringTooLong() {
        let four = limits { $0.maxStringLength = 4 }
        #expect(bodyError(rawEntry("s", T.string, Array("abcd".utf8)), limits: four) == nil)
        #expect(bodyError(rawEntry("s", T.string, Array("abcde".utf8)), limits: four)?.code == .stringTooLong)
        // The limit is in bytes, not characters: two 2-byte scalars are 4 bytes, three are 6.
        #expect(bodyError(rawEntry("s", T.string, Array("\u{E9}\u{E9}".utf8)), limits: four) == nil)
        #expect(bodyError(rawEntry("s", T.string, Array("\u{E9}\u{E9}\u{E9}".utf8)), limits: four)?.code == .stringTooLong)
        // Also for list elements.
        #expect(bodyError(rawEntry("l", T.list, rawValue(T.string, Array("abcde".utf8))), limits: four)?.code == .stringTooLong)
    }

    @Test func bytesTooLong() {
        let four = limits { $0.maxBytesLength = 4 }
        #expect(bodyError(rawEntry("b", T.bytes, [1, 2, 3, 4]), limits: four) == nil)
        #expect(bodyError(rawEntry("b", T.bytes, [1, 2, 3, 4, 5]), limits: four)?.code == .bytesTooLong)
    }

    @Test func keyTooLong() {
        #expect(bodyError(rawEntry(String(repeating: "k", count: 64), T.bool, [1])) == nil)
        #expect(bodyError(rawEntry(String(repeating: "k", count: 65), T.bool, [1]))?.code == .keyTooLong)
        #expect(bodyError(rawEntry(String(repeating: "k", count: 255), T.bool, [1]))?.code == .keyTooLong)
        let four = limits { $0.maxKeyLength = 4 }
        #expect(bodyError(rawEntry("abcd", T.bool, [1]), limits: four) == nil)
        #expect(bodyError(rawEntry("abcde", T.bool, [1]), limits: four)?.code == .keyTooLong)
        // Checked from the length byte, before the key bytes arrive.
        #expect(bodyError([5, 0x61], limits: four)?.code == .keyTooLong)
    }

    @Test func emptyKey() {
        #expect(bodyError(rawEntry(keyBytes: [], T.bool, [1]))?.code == .emptyKey)
        #expect(bodyError([0])?.code == .emptyKey)
        let nested = rawEntry("d", T.dict, rawEntry(keyBytes: [], T.bool, [1]))
        let error = bodyError(nested)
        #expect(error?.code == .emptyKey)
        #expect(error?.message.contains("(at d)") == true)
    }

    /// Keys and strings beyond ASCII (two-, three- and four-byte scalars) decode as written;
    /// ASCII ones take a shorter path through the parser, these the full check.
    @Test(arguments: ["é", "消息", "中文 and ASCII", "🙂", "a\u{7F}"])
    func validUTF8BeyondASCII(text: String) throws {
        let body = rawEntry(text, T.string, Array(text.utf8))
        #expect(try parse(body).get() == [text: .string(text)])
    }

    @Test(arguments: [
        [0xFF] as [UInt8],
        [0x80],  // lone continuation byte
        [0xC3, 0x28],  // bad continuation
        [0xC0, 0x80],  // overlong NUL
        [0xED, 0xA0, 0x80],  // UTF-16 surrogate
        [0xF4, 0x90, 0x80, 0x80],  // beyond U+10FFFF
        [0x61, 0xE2, 0x82],  // cut scalar
    ])
    func invalidUTF8(bytes: [UInt8]) {
        #expect(bodyError(rawEntry(keyBytes: bytes, T.bool, [1]))?.code == .invalidUTF8)
        #expect(bodyError(rawEntry("s", T.string, bytes))?.code == .invalidUTF8)
        let inList = rawEntry("l", T.list, rawValue(T.string, Array("ok".utf8)) + rawValue(T.string, bytes))
        let error = bodyError(inList)
        #expect(error?.code == .invalidUTF8)
        #expect(error?.message.contains("(at l.[1])") == true)
        // Bytes values are not UTF-8 checked.
        #expect(bodyError(rawEntry("b", T.bytes, bytes)) == nil)
    }

    @Test(arguments: [0, 7, 8, 0x7F, 0x80, 0xFF] as [UInt8])
    func unknownValueType(type: UInt8) {
        #expect(bodyError(rawEntry("x", type, [1]))?.code == .unknownValueType)
        #expect(bodyError(rawEntry("l", T.list, rawValue(type, [])))?.code == .unknownValueType)
    }

    @Test func badScalarLength() {
        for length in [0, 1, 7, 9, 16] {
            let bytes = [UInt8](repeating: 0, count: length)
            #expect(bodyError(rawEntry("i", T.int, bytes))?.code == .badScalarLength, "int of \(length) bytes")
        }
        for length in [0, 2, 8] {
            let bytes = [UInt8](repeating: 0, count: length)
            #expect(bodyError(rawEntry("b", T.bool, bytes))?.code == .badScalarLength, "bool of \(length) bytes")
        }
        let nested = rawEntry("d", T.dict, rawEntry("i", T.int, [0, 0, 0, 0]))
        #expect(bodyError(nested)?.message.contains("(at d.i)") == true)
    }

    @Test(arguments: [2, 3, 0x7F, 0x80, 0xFF] as [UInt8])
    func badBoolValue(byte: UInt8) {
        #expect(bodyError(rawEntry("b", T.bool, [byte]))?.code == .badBoolValue)
        #expect(bodyError(rawEntry("l", T.list, rawValue(T.bool, [byte])))?.code == .badBoolValue)
    }

    @Test func truncated() {
        // A value length beyond the end of the body.
        #expect(bodyError(rawEntry("s", T.string, Array("abc".utf8), claiming: 4))?.code == .truncated)
        // A value length beyond its container, though within the body.
        let inner = rawEntry("s", T.string, Array("abc".utf8), claiming: 9)
        let outer = rawEntry("d", T.dict, inner) + rawEntry("pad", T.bytes, [1, 2, 3, 4, 5, 6])
        let error = bodyError(outer)
        #expect(error?.code == .truncated)
        #expect(error?.message.contains("(at d.s)") == true)
        let listInner = rawValue(T.bytes, [1], claiming: 2)
        #expect(bodyError(rawEntry("l", T.list, listInner) + rawEntry("z", T.bool, [0]))?.code == .truncated)
        // A key beyond the end.
        #expect(bodyError([5, 0x61, 0x62])?.code == .truncated)
        #expect(bodyError(rawEntry("d", T.dict, [3, 0x61]) + rawEntry("z", T.bool, [0]))?.code == .truncated)
        // A value header cut short.
        #expect(bodyError([1, 0x61])?.code == .truncated)
        #expect(bodyError([1, 0x61, T.int, 0, 0, 0])?.code == .truncated)
        #expect(bodyError(rawEntry("l", T.list, [T.int, 0, 0]))?.code == .truncated)
        // A packet header cut short.
        for length in 0..<8 {
            #expect(packetError(Array(hex("00 00 00 01 00 00 00 00")[..<length]))?.code == .truncated)
        }
    }

    @Test func duplicateKeyInSmallDict() {
        let bytes = rawEntry("a", T.bool, [0]) + rawEntry("b", T.bool, [0]) + rawEntry("a", T.bool, [1])
        #expect(bodyError(bytes)?.code == .duplicateKey)
        let nested = rawEntry("d", T.dict, rawEntry("x", T.int, be64(1)) + rawEntry("x", T.int, be64(1)))
        let error = bodyError(nested)
        #expect(error?.code == .duplicateKey)
        #expect(error?.message.contains("(at d)") == true)
        // The same key in different dicts is fine.
        #expect(bodyError(rawEntry("d", T.dict, rawEntry("d", T.bool, [0]))) == nil)
    }

    @Test(arguments: [15, 16, 17, 18, 20, 40])
    func duplicateKeyInLargerDict(count: Int) {
        // Every key repeated at the end of a dict of `count` distinct keys, across the switch
        // from a linear scan to a set at 16 entries; and the first key repeated right after each position.
        let keys = (0..<count).map { "key\($0)" }
        let distinct = keys.flatMap { rawEntry($0, T.int, be64(0)) }
        #expect(bodyError(distinct) == nil)
        for duplicate in keys {
            let bytes = distinct + rawEntry(duplicate, T.bool, [1])
            #expect(bodyError(bytes)?.code == .duplicateKey, "\(duplicate) repeated after \(count) keys")
        }
        for position in 1...count {
            let prefix = keys[..<position].flatMap { rawEntry($0, T.int, be64(0)) }
            let repeated = keys[position - 1]
            #expect(bodyError(prefix + rawEntry(repeated, T.bool, [1]))?.code == .duplicateKey, "last of \(position) keys repeated")
        }
    }

    @Test func lengthMismatch() {
        // Trailing bytes after a complete packet.
        let valid = rawPacket(type: 1, body: rawEntry("i", T.bool, [1]))
        #expect((try? decodePacket(valid).get()) == Packet(type: 1, body: ["i": .bool(true)]))
        #expect(packetError(valid + [0])?.code == .lengthMismatch)
        #expect(packetError(valid + valid)?.code == .lengthMismatch)
        // A body shorter than announced.
        #expect(packetError(Array(valid.dropLast()))?.code == .lengthMismatch)
    }

    @Test func errorPathNamesTheKeyPath() {
        let bad = rawEntry("outer", T.dict, rawEntry("inner", T.list, rawValue(T.bool, [0]) + rawValue(T.int, [1, 2, 3])))
        let error = bodyError(rawEntry("ok", T.bool, [1]) + bad)
        #expect(error?.code == .badScalarLength)
        #expect(error?.message.contains("(at outer.inner.[1])") == true)
        #expect(error?.description.contains("110") == true)
        // A top-level value is named by its key; an error in the body dict itself carries no path.
        #expect(bodyError(rawEntry("x", T.int, [1]))?.message.hasSuffix("(at x)") == true)
        #expect(bodyError([0])?.message.contains("(at") == false)
    }

    // MARK: Bounded cost

    @Test func twoHundredThousandTinyValues() throws {
        // 4 lists of 50,000 bools: 200,004 values, within every default limit.
        let element = rawValue(T.bool, [1])
        let list = [UInt8]((0..<50_000).map { _ in element }.joined())
        let body = (0..<4).flatMap { rawEntry("l\($0)", T.list, list) }
        let clock = ContinuousClock()
        var parsed: WireDict?
        let elapsed = try clock.measure { parsed = try parse(body).get() }
        #expect(parsed?.count == 4)
        if case .list(let elements) = parsed?["l3"] { #expect(elements.count == 50_000) } else { Issue.record("l3 is not a list") }
        #expect(elapsed < .seconds(10), "parsing 200,004 values took \(elapsed)")
    }

    @Test func tooManyTinyValuesFailFast() {
        // 6 lists of 50,000 ints: 300,006 values > 262,144.
        let element = rawValue(T.int, be64(1))
        let list = [UInt8]((0..<50_000).map { _ in element }.joined())
        let body = (0..<6).flatMap { rawEntry("l\($0)", T.list, list) }
        let clock = ContinuousClock()
        var error: WireError?
        let elapsed = clock.measure { error = bodyError(body) }
        #expect(error?.code == .tooManyValues)
        #expect(elapsed < .seconds(10), "rejecting 300,006 values took \(elapsed)")
    }

    @Test func twoHundredThousandKeysFailFast() {
        // One flat dict of 200,000 entries: rejected at the 65,537th.
        var body: [UInt8] = []
        body.reserveCapacity(200_000 * 14)
        for index in 0..<200_000 { body += rawEntry("k\(index)", T.bool, [0]) }
        let clock = ContinuousClock()
        var error: WireError?
        let elapsed = clock.measure { error = bodyError(body) }
        #expect(error?.code == .containerTooLong)
        #expect(elapsed < .seconds(10), "rejecting 200,000 keys took \(elapsed)")
    }

    @Test func hostileFourGiBLength() {
        // A value claiming 0xFFFFFFFF bytes, with 3 present: rejected by comparison, not allocation.
        let clock = ContinuousClock()
        var errors: [WireError?] = []
        let elapsed = clock.measure {
            errors.append(bodyError(hex("01 62 | 06 | ff ff ff ff | 01 02 03")))
            errors.append(bodyError(hex("01 73 | 02 | ff ff ff ff")))
            errors.append(bodyError(hex("01 6c | 04 | 00 00 00 05 | 05 ff ff ff fe")))
            errors.append(bodyError(hex("01 64 | 05 | 00 00 00 08 | 01 61 06 ff ff ff ff 00")))
        }
        #expect(errors.map { $0?.code } == [.truncated, .truncated, .truncated, .truncated])
        #expect(elapsed < .seconds(1))
        // The same claim in a packet header is refused before the body is awaited.
        #expect(packetError(hex("00 00 00 01 | ff ff ff ff"))?.code == .frameTooLarge)
    }
}
