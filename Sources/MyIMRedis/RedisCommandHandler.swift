import NIOCore

/// One write of one or more encoded commands, and the promise for their replies in order.
struct RedisRequest: Sendable {
    /// The encoded commands (see ``RESPCommandEncoder``).
    var payload: ByteBuffer
    /// How many replies the payload asks for.
    var replyCount: Int
    /// Completed with exactly `replyCount` replies, or failed with a ``RedisError``.
    var promise: EventLoopPromise<[RedisValue]>

    init(payload: ByteBuffer, replyCount: Int, promise: EventLoopPromise<[RedisValue]>) {
        self.payload = payload
        self.replyCount = replyCount
        self.promise = promise
    }
}

/// Matches replies to requests: RESP2 answers strictly in order, so a FIFO of pending requests
/// is all the bookkeeping needed. A pipeline of N commands is one request waiting for N replies.
///
/// When the connection closes or errs, every pending request fails with the cause (see
/// ``RedisConnectionState``), and later requests fail at once.
final class RedisCommandHandler: ChannelDuplexHandler {
    typealias InboundIn = RedisValue
    typealias OutboundIn = RedisRequest
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        var remaining: Int
        var replies: [RedisValue]
        let promise: EventLoopPromise<[RedisValue]>
    }

    private var pending = CircularBuffer<Pending>(initialCapacity: 16)
    private var ended = false
    private let state: RedisConnectionState

    init(state: RedisConnectionState) {
        self.state = state
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = Self.unwrapOutboundIn(data)
        if self.ended {
            let error = self.state.errorForLaterCommand
            request.promise.fail(error)
            promise?.fail(error)
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

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
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

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        let redisError = (error as? RedisError) ?? RedisError(.connectionLost, "connection to Redis failed: \(error)")
        self.failAll(redisError)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.failAll(RedisError(.connectionLost, "the connection to Redis was closed"))
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.failAll(RedisError(.connectionLost, "the connection to Redis was closed"))
    }

    private func failAll(_ error: RedisError) {
        self.ended = true
        let cause = self.state.end(because: error)
        while let next = self.pending.popFirst() {
            next.promise.fail(cause)
        }
    }
}

@available(*, unavailable)
extension RedisCommandHandler: Sendable {}
