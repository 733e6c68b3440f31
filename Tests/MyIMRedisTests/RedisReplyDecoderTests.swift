import MyIMTestSupport
import MyIMRedis
import NIOCore
import NIOPosix
import Testing

/// A fake server that answers the first bytes it receives with canned bytes: the first `drip`
/// bytes one per flushed write, the rest in one write.
private final class DripServerHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let reply: [UInt8]
    let drip: Int
    init(reply: [UInt8], drip: Int) {
        self.reply = reply
        self.drip = drip
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        for byte in self.reply.prefix(self.drip) {
            context.writeAndFlush(Self.wrapOutboundOut(ByteBuffer(bytes: [byte])), promise: nil)
        }
        if self.reply.count > self.drip {
            context.writeAndFlush(Self.wrapOutboundOut(ByteBuffer(bytes: self.reply.dropFirst(self.drip))), promise: nil)
        }
    }
}

/// The decoder inside a real connection, fed by a server that drips its replies byte by byte.
@Suite("RESP decoder on a connection, dripped replies")
struct RedisReplyDecoderTests {
    private func withDripServer(_ reply: [UInt8], drip: Int = .max, _ body: (RedisURL) async throws -> Void) async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(DripServerHandler(reply: reply, drip: drip))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        do {
            try await body(RedisURL(host: "127.0.0.1", port: try #require(server.localAddress?.port)))
        } catch {
            try? await server.close()
            throw error
        }
        try await server.close()
    }

    @Test(.timeLimit(.minutes(1)))
    func drippedRepliesDecodeLikeWholeOnes() async throws {
        try await self.withDripServer(RESPCodecTests.wire) { url in
            let redis = try await RedisConnection.connect(to: url)
            let replies = try await redis.pipeline(Array(repeating: ["PING"], count: RESPCodecTests.expected.count))
            #expect(replies == RESPCodecTests.expected)
            try await redis.close()
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func anUnaskedReplyFailsTheConnection() async throws {
        try await self.withDripServer(Array("+OK\r\n+SURPRISE\r\n".utf8)) { url in
            let redis = try await RedisConnection.connect(to: url)
            #expect(try await redis.send(["PING"]) == .simple("OK"))
            try await Task.sleep(for: .milliseconds(200))
            // Later commands say the connection is gone, and why.
            await #expect { try await redis.send(["PING"]) } throws: { error in
                guard let error = error as? RedisError else { return false }
                return error.kind == .connectionLost && error.message.contains("protocolViolation")
            }
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aProtocolErrorFailsThePendingCommand() async throws {
        try await self.withDripServer(Array("!nonsense\r\n".utf8)) { url in
            let redis = try await RedisConnection.connect(to: url)
            await #expect { try await redis.send(["PING"]) } throws: { ($0 as? RedisError)?.kind == .protocolViolation }
            #expect(!redis.isActive)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func anOversizedReplyFailsTheConnection() async throws {
        let huge = Array("$100000\r\n".utf8) + [UInt8](repeating: 120, count: 100_000) + Array("\r\n".utf8)
        try await self.withDripServer(huge, drip: 64) { url in
            let limits = RESPReader.Limits(maximumReplyBytes: 10_000)
            let redis = try await RedisConnection.connect(to: url, configuration: .init(limits: limits))
            await #expect { try await redis.send(["GET", "big"]) } throws: { ($0 as? RedisError)?.kind == .replyTooLarge }
        }
    }
}
