import MyIMWire
import NIOCore

/// Reads layer-2 packets from a byte stream: the packet header carries its own length, so a
/// link needs no other framing. A header announcing more than the limit fails at once.
public struct PacketFrameDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = Packet
    public let limits: WireLimits

    public init(limits: WireLimits = .default) {
        self.limits = limits
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> Packet? {
        try Packet.read(from: &buffer, maxSize: limits.maxFrameSize, limits: limits)?.packet
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
