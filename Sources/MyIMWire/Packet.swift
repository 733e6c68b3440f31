import NIOCore

/// Layer 2: `msg-type u32 | body-len u32 | body`, the body a layer-3 dict.
///
/// A packet passed on unchanged (an endpoint forwarding what the center encoded for a client)
/// can carry its body as the bytes it came in, ``encodedBody``, and is then written as those
/// bytes without being parsed and encoded again; its ``body`` is empty. Equality and hashing
/// are by content, whichever way the body is held.
public struct Packet: Hashable, Sendable {
    public var type: UInt32
    public var body: WireDict
    /// The body's wire encoding, for a packet made with ``init(type:encodedBody:)``.
    public private(set) var encodedBody: ByteBuffer?

    public init(type: UInt32, body: WireDict = WireDict()) {
        self.type = type
        self.body = body
    }

    /// A packet whose body is already encoded (a dict body's bytes, not parsed here): the
    /// sender vouches for them, the receiver parses them as any body.
    public init(type: UInt32, encodedBody: ByteBuffer) {
        self.type = type
        self.body = WireDict()
        self.encodedBody = encodedBody
    }

    /// The top-level int under `key`, from ``body`` or, for an encoded body, read from its bytes
    /// without parsing the rest; nil when absent, not an int, or the bytes are malformed.
    public func int(_ key: String) -> Int64? {
        guard let encodedBody else {
            if case .int(let value)? = body[key] { return value }
            return nil
        }
        return WireParser.topLevelInt(key, in: encodedBody)
    }

    /// The same packet with its body encoded now: a packet going to several destinations is
    /// encoded once, and each write copies its bytes.
    public func encodingBody() -> Packet {
        guard encodedBody == nil else { return self }
        var encoded = ByteBufferAllocator().buffer(capacity: body.encodedSize)
        encoded.writeWireDict(body)
        return Packet(type: type, encodedBody: encoded)
    }

    /// The body as a dict: ``body``, or for an encoded body, its bytes parsed.
    public func parsedBody(limits: WireLimits = .default) throws(WireError) -> WireDict {
        guard let encodedBody else { return body }
        return try WireParser.parseBody(encodedBody, limits: limits)
    }

    /// The number of bytes ``NIOCore/ByteBuffer/writePacket(_:)`` writes for this packet.
    public var encodedSize: Int { Self.headerSize + (encodedBody?.readableBytes ?? body.encodedSize) }

    /// Size of the packet header.
    public static let headerSize = 8
}

extension Packet {
    /// Packets are equal when their types and bodies are, whether a body is held as a dict or
    /// as its encoding: a chat the endpoint passes on encoded equals the same chat parsed.
    public static func == (lhs: Packet, rhs: Packet) -> Bool {
        guard lhs.type == rhs.type else { return false }
        if let left = lhs.encodedBody, let right = rhs.encodedBody, left == right { return true }
        return lhs.content == rhs.content
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(type)
        hasher.combine(content)
    }

    /// The body as a dict, or for an encoding that does not parse, its bytes.
    private var content: Content {
        guard let encodedBody else { return .dict(body) }
        return (try? WireParser.parseBody(encodedBody)).map(Content.dict) ?? .unparsed(encodedBody)
    }

    private enum Content: Hashable {
        case dict(WireDict)
        case unparsed(ByteBuffer)
    }
}

extension ByteBuffer {
    /// Writes a packet and returns the number of bytes written.
    @discardableResult
    public mutating func writePacket(_ packet: Packet) -> Int {
        if let encoded = packet.encodedBody {
            let size = Packet.headerSize + encoded.readableBytes
            return writeWithUnsafeMutableBytes(minimumWritableBytes: size) { bytes in
                var writer = RawWireWriter(bytes.baseAddress!)
                writer.uint32(packet.type)
                writer.uint32(UInt32(encoded.readableBytes))
                encoded.withUnsafeReadableBytes { writer.bytes($0) }
                return size
            }
        }
        let bodySize = packet.body.encodedSize
        let size = Packet.headerSize + bodySize
        return writeWithUnsafeMutableBytes(minimumWritableBytes: size) { bytes in
            var writer = RawWireWriter(bytes.baseAddress!)
            writer.uint32(packet.type)
            writer.uint32(UInt32(bodySize))
            writer.write(packet.body)
            assert(writer.offset == size, "a packet wrote \(writer.offset) bytes where \(size) were computed")
            return size
        }
    }
}

extension Packet {
    /// The packet's encoding.
    public func encoded(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 64)
        buffer.writePacket(self)
        return buffer
    }

    /// Reads one packet from a stream if it is complete; returns nil, consuming nothing, if not.
    ///
    /// A header that announces more than `maxSize` bytes in all is rejected at once, before
    /// the rest arrives. On success `raw`, if given, receives the packet's exact bytes.
    ///
    /// With `leavingChatsEncoded`, a chat (6) of the usual shape (``Chat/isCanonical(_:limits:)``)
    /// keeps its body encoded (``encodedBody``): checked as the parser would check it, but not
    /// made into a dict, for a reader that passes it on. Any other body is parsed.
    public static func read(
        from buffer: inout ByteBuffer,
        maxSize: Int,
        limits: WireLimits = .default,
        leavingChatsEncoded: Bool = false
    ) throws(WireError) -> (packet: Packet, raw: ByteBuffer)? {
        guard let (type, bodyLength) = buffer.getMultipleIntegers(at: buffer.readerIndex, as: (UInt32, UInt32).self) else {
            return nil
        }
        guard let bodyLength = Int(exactly: bodyLength), bodyLength <= maxSize - headerSize else {
            throw WireError(.frameTooLarge, "a packet announces \(bodyLength) body bytes; at most \(maxSize - headerSize) are allowed")
        }
        guard buffer.readableBytes >= headerSize + bodyLength else { return nil }
        let raw = buffer.readSlice(length: headerSize + bodyLength)!
        let bodyBytes = raw.getSlice(at: raw.readerIndex + headerSize, length: bodyLength)!
        if leavingChatsEncoded, type == MessageType.chat.rawValue, Chat.isCanonical(bodyBytes, limits: limits) {
            return (Packet(type: type, encodedBody: bodyBytes), raw)
        }
        return (Packet(type: type, body: try WireParser.parseBody(bodyBytes, limits: limits)), raw)
    }

    /// Decodes a buffer that must hold exactly one packet and nothing else.
    /// With `leavingChatsEncoded`, a chat of the usual shape keeps its body encoded
    /// (``read(from:maxSize:limits:leavingChatsEncoded:)``).
    public init(decoding buffer: ByteBuffer, limits: WireLimits = .default, leavingChatsEncoded: Bool = false) throws(WireError) {
        var buffer = buffer
        let available = buffer.readableBytes
        guard available >= Self.headerSize else {
            throw WireError(.truncated, "a packet is at least 8 bytes, found \(available)")
        }
        guard let decoded = try Packet.read(from: &buffer, maxSize: limits.maxFrameSize, limits: limits, leavingChatsEncoded: leavingChatsEncoded) else {
            throw WireError(.lengthMismatch, "the packet's body length exceeds the \(available) bytes present")
        }
        guard buffer.readableBytes == 0 else {
            throw WireError(.lengthMismatch, "\(buffer.readableBytes) bytes follow the packet")
        }
        self = decoded.packet
    }
}
