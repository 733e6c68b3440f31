import MyIMWire
import NIOCore

/// Reads layer-2 packets from a byte stream: the packet header carries its own length, so a
/// link needs no other framing. A header announcing more than the limit fails at once.
///
/// Packets of the types in `leftEncoded` come out with their body unparsed
/// (``Packet/encodedBody``): their reader parses what it needs of them.
public struct PacketFrameDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = Packet
    public let limits: WireLimits
    public let leftEncoded: Set<UInt32>

    public init(limits: WireLimits = .default, leftEncoded: Set<UInt32> = []) {
        self.limits = limits
        self.leftEncoded = leftEncoded
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> Packet? {
        if !leftEncoded.isEmpty, let (type, bodyLength) = buffer.getMultipleIntegers(at: buffer.readerIndex, as: (UInt32, UInt32).self),
           leftEncoded.contains(type) {
            guard let length = Int(exactly: bodyLength), length <= limits.maxFrameSize - Packet.headerSize else {
                throw WireError(.frameTooLarge, "a packet announces \(bodyLength) body bytes; at most \(limits.maxFrameSize - Packet.headerSize) are allowed")
            }
            guard buffer.readableBytes >= Packet.headerSize + length else { return nil }
            buffer.moveReaderIndex(forwardBy: Packet.headerSize)
            return Packet(type: type, encodedBody: buffer.readSlice(length: length)!)
        }
        return try Packet.read(from: &buffer, maxSize: limits.maxFrameSize, limits: limits)?.packet
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> Packet? {
        try decode(buffer: &buffer)
    }
}

/// Writes layer-2 packets.
public struct PacketFrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = Packet

    public init() {}

    public func encode(data: Packet, out: inout ByteBuffer) throws {
        out.writePacket(data)
    }
}
