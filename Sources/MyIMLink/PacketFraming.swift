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

/// Writes layer-2 packets, all those written between two flushes into one buffer: over TLS
/// that is one `SSL_write` and one record for a batch (NIOSSL seals each buffer it is given as
/// records of its own), not one per packet, and one allocation.
///
/// A batch that reaches ``batchLimit`` is passed on without waiting for the flush. A close
/// passes on what is held first, so that it fails or leaves as any unflushed write does.
public final class PacketBatchEncoder: ChannelOutboundHandler, RemovableChannelHandler {
    public typealias OutboundIn = Packet
    public typealias OutboundOut = ByteBuffer

    /// A TLS record's most plaintext.
    public static let batchLimit = 16 * 1024

    private var batch: ByteBuffer?
    private var promises: [EventLoopPromise<Void>] = []

    public init() {}

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let packet = unwrapOutboundIn(data)
        if batch == nil { batch = context.channel.allocator.buffer(capacity: max(packet.encodedSize, 1024)) }
        batch!.writePacket(packet)
        if let promise { promises.append(promise) }
        if batch!.readableBytes >= Self.batchLimit { passOn(context: context) }
    }

    public func flush(context: ChannelHandlerContext) {
        passOn(context: context)
        context.flush()
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        passOn(context: context)
        context.close(mode: mode, promise: promise)
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        passOn(context: context)
    }

    /// Writes the batch held, if any, with one promise that completes each of its packets'.
    private func passOn(context: ChannelHandlerContext) {
        guard let batch else { return }
        self.batch = nil
        let promise: EventLoopPromise<Void>?
        switch promises.count {
        case 0:
            promise = nil
        case 1:
            promise = promises[0]
        default:
            let each = promises
            promise = context.eventLoop.makePromise()
            promise!.futureResult.whenComplete { result in
                for promise in each { promise.completeWith(result) }
            }
        }
        promises.removeAll(keepingCapacity: true)
        context.write(wrapOutboundOut(batch), promise: promise)
    }
}

@available(*, unavailable)
extension PacketBatchEncoder: Sendable {}
