import NIOCore

/// Layer 2: `msg-type u32 | body-len u32 | body`, the body a layer-3 dict.
///
/// A packet passed on unchanged (an endpoint forwarding what the center encoded for a client)
/// can carry its body as the bytes it came in, ``encodedBody``, and is then written as those
/// bytes without being parsed and encoded again; its ``body`` is empty.
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

    /// Size of the packet header.
    public static let headerSize = 8
}

extension ByteBuffer {
    /// Writes a packet and returns the number of bytes written.
    @discardableResult
    public mutating func writePacket(_ packet: Packet) -> Int {
        let start = writerIndex
        writeInteger(packet.type)
        let lengthIndex = writerIndex
        writeInteger(UInt32(0))
        let bodyLength: Int
        if var encoded = packet.encodedBody {
            bodyLength = writeBuffer(&encoded)
        } else {
            bodyLength = writeWireDict(packet.body)
        }
        setInteger(UInt32(bodyLength), at: lengthIndex)
        return writerIndex - start
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
    public static func read(
        from buffer: inout ByteBuffer,
        maxSize: Int,
        limits: WireLimits = .default
    ) throws(WireError) -> (packet: Packet, raw: ByteBuffer)? {
        guard let (type, bodyLength) = buffer.getMultipleIntegers(at: buffer.readerIndex, as: (UInt32, UInt32).self) else {
            return nil
        }
        guard let bodyLength = Int(exactly: bodyLength), bodyLength <= maxSize - headerSize else {
            throw WireError(.frameTooLarge, "a packet announces \(bodyLength) body bytes; at most \(maxSize - headerSize) are allowed")
        }
        guard buffer.readableBytes >= headerSize + bodyLength else { return nil }
        let raw = buffer.readSlice(length: headerSize + bodyLength)!
        let body = try WireParser.parseBody(raw.getSlice(at: raw.readerIndex + headerSize, length: bodyLength)!, limits: limits)
        return (Packet(type: type, body: body), raw)
    }

    /// Decodes a buffer that must hold exactly one packet and nothing else.
    public init(decoding buffer: ByteBuffer, limits: WireLimits = .default) throws(WireError) {
        var buffer = buffer
        let available = buffer.readableBytes
        guard available >= Self.headerSize else {
            throw WireError(.truncated, "a packet is at least 8 bytes, found \(available)")
        }
        guard let decoded = try Packet.read(from: &buffer, maxSize: limits.maxFrameSize, limits: limits) else {
            throw WireError(.lengthMismatch, "the packet's body length exceeds the \(available) bytes present")
        }
        guard buffer.readableBytes == 0 else {
            throw WireError(.lengthMismatch, "\(buffer.readableBytes) bytes follow the packet")
        }
        self = decoded.packet
    }
}
