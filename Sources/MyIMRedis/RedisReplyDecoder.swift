import NIOCore

/// The NIO shell around ``RESPReader``: hands every received byte to hiredis and fires one
/// ``RedisValue`` per complete reply. All buffering (and its limits) lives in the reader, so
/// NIO's own cumulation buffer is emptied on every call.
public struct RedisReplyDecoder: ByteToMessageDecoder {
    public typealias InboundOut = RedisValue

    private let reader: RESPReader

    public init(limits: RESPReader.Limits = RESPReader.Limits()) {
        self.reader = RESPReader(limits: limits)
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if buffer.readableBytes > 0 {
            let reader = self.reader
            let fed = buffer.withUnsafeReadableBytes { bytes in
                Result { () throws(RedisError) in try reader.feed(bytes) }
            }
            buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
            try fed.get()
        }
        while let value = try self.reader.next() {
            context.fireChannelRead(Self.wrapInboundOut(value))
        }
        return .needMoreData
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // A reply cut off by EOF is dropped: its command fails with "connection lost" when the channel goes inactive.
        try self.decode(context: context, buffer: &buffer)
    }

    public mutating func decoderRemoved(context: ChannelHandlerContext) {
        self.reader.close()
    }
}
