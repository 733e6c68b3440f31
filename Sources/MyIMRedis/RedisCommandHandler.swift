import NIOCore

/// One write of one or more encoded commands, and the promise for their replies in order.
public struct RedisRequest: Sendable {
    /// The encoded commands (see ``RESPCommandEncoder``).
    public var payload: ByteBuffer
    /// How many replies the payload asks for.
    public var replyCount: Int
    /// Completed with exactly `replyCount` replies, or failed with a ``RedisError``.
    public var promise: EventLoopPromise<[RedisValue]>

    public init(payload: ByteBuffer, replyCount: Int, promise: EventLoopPromise<[RedisValue]>) {
        self.payload = payload
        self.replyCount = replyCount
        self.promise = promise
    }
}

/// Matches replies to requests: RESP2 answers strictly in order, so a FIFO of pending requests
/// is all the bookkeeping needed. A pipeline of N commands is one request waiting for N replies.
///
/// When the connection closes or errs, every pending request fails with ``RedisError/Kind/connectionLost``
/// (or the decoder's error), and later requests fail at once.
public final class RedisCommandHandler: ChannelDuplexHandler {
    public typealias InboundIn = RedisValue
    public typealias OutboundIn = RedisRequest
    public typealias OutboundOut = ByteBuffer

    private struct Pending {
        var remaining: Int
        var replies: [RedisValue]
        let promise: EventLoopPromise<[RedisValue]>
    }

    private var pending = CircularBuffer<Pending>(initialCapacity: 16)
    private var failure: RedisError?

    public init() {}

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = Self.unwrapOutboundIn(data)
        if let failure = self.failure {
            request.promise.fail(failure)
            promise?.fail(failure)
            return
        }
        if request.replyCount <= 0 {
            request.promise.succeed([])
        } else {
            var replies: [RedisValue] = []
            replies.reserveCapacity(request.replyCount)
            self.pending.append(Pending(remaining: request.replyCount, replies: replies, promise: request.promise))
        }
        context.write(Self.wrapOutboundOut(request.payload), promise: promise)
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let value = Self.unwrapInboundIn(data)
        guard !self.pending.isEmpty else {
            self.failAll(RedisError(.protocolViolation, "the server sent a reply nobody asked for: \(value)"))
            context.close(promise: nil)
            return
        }
        let index = self.pending.startIndex
        self.pending[index].replies.append(value)
        self.pending[index].remaining -= 1
        if self.pending[index].remaining == 0 {
            let done = self.pending.removeFirst()
            done.promise.succeed(done.replies)
        }
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        let redisError = (error as? RedisError) ?? RedisError(.connectionLost, "connection to Redis failed: \(error)")
        self.failAll(redisError)
        context.close(promise: nil)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        self.failAll(RedisError(.connectionLost, "the connection to Redis was closed"))
        context.fireChannelInactive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.failAll(RedisError(.connectionLost, "the connection to Redis was closed"))
    }

    private func failAll(_ error: RedisError) {
        if self.failure == nil {
            self.failure = error
        }
        while let next = self.pending.popFirst() {
            next.promise.fail(error)
        }
    }
}

@available(*, unavailable)
extension RedisCommandHandler: Sendable {}
