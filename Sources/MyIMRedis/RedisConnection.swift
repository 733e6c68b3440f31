import NIOCore
import NIOPosix

/// One connection to a Redis server, its I/O on a NIO event loop, hiredis only as the RESP codec.
///
/// Commands may be sent concurrently from any task; they are written in call order and their
/// replies matched in order (RESP2 answers strictly in order). ``pipeline(_:)-([[String]])``
/// sends many commands in one write and one flush, so they cost one round trip.
///
/// The connection does not reconnect: when it is lost, every command in flight and every later one
/// fails with ``RedisError/Kind/connectionLost``; make a new connection.
public final class RedisConnection: Sendable {
    /// Timeouts and reply limits.
    public struct Configuration: Sendable, Hashable {
        /// How long to wait for the TCP connection.
        public var connectTimeout: TimeAmount
        /// How long to wait for the replies of one command or pipeline; on expiry the command fails with
        /// ``RedisError/Kind/timeout`` and the connection is closed (later replies could no longer be
        /// matched to their commands). `nil` waits for ever.
        public var commandTimeout: TimeAmount?
        /// Bounds on a single reply; see ``RESPReader``.
        public var limits: RESPReader.Limits

        public init(
            connectTimeout: TimeAmount = .seconds(5),
            commandTimeout: TimeAmount? = .seconds(30),
            limits: RESPReader.Limits = RESPReader.Limits()
        ) {
            self.connectTimeout = connectTimeout
            self.commandTimeout = commandTimeout
            self.limits = limits
        }
    }

    /// The server this connection talks to (its `description` hides the password).
    public let url: RedisURL
    public let configuration: Configuration
    private let channel: any Channel
    private let state: RedisConnectionState

    private init(url: RedisURL, configuration: Configuration, channel: any Channel, state: RedisConnectionState) {
        self.url = url
        self.configuration = configuration
        self.channel = channel
        self.state = state
    }

    /// Connects, then sends `AUTH` when the URL has a password and `SELECT` when its database is not 0.
    public static func connect(
        to url: RedisURL,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        configuration: Configuration = Configuration()
    ) async throws -> RedisConnection {
        let limits = configuration.limits
        let state = RedisConnectionState(description: url.description)
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(configuration.connectTimeout)
            .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .channelOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(RedisReplyDecoder(limits: limits)))
                    try channel.pipeline.syncOperations.addHandler(RedisCommandHandler(state: state))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: url.host, port: url.port).get()
        } catch {
            throw RedisError(.connectionFailed, "could not connect to \(url): \(error)")
        }
        let connection = RedisConnection(url: url, configuration: configuration, channel: channel, state: state)
        do {
            if let password = url.password {
                let auth = url.user.map { ["AUTH", $0, password] } ?? ["AUTH", password]
                _ = try await connection.send(auth)
            }
            if url.database != 0 {
                _ = try await connection.send(["SELECT", String(url.database)])
            }
        } catch {
            try? await connection.close()
            throw error
        }
        return connection
    }

    /// The event loop this connection's I/O runs on.
    public var eventLoop: any EventLoop { self.channel.eventLoop }

    /// `false` once the connection is closed, lost, or failed (its socket may take a moment longer to close).
    public var isActive: Bool { self.channel.isActive && self.state.endCause == nil }

    /// Sends one command. An error reply is thrown as ``RedisError`` of kind ``RedisError/Kind/server``.
    public func send(_ command: [String]) async throws -> RedisValue {
        var payload = self.channel.allocator.buffer(capacity: 64)
        try RESPCommandEncoder.encode(command, into: &payload)
        return try Self.throwingServerError(try await self.execute(payload, replyCount: 1)[0])
    }

    /// Sends one command with binary-safe arguments (zero bytes, `\r\n`, anything).
    public func send(_ command: [[UInt8]]) async throws -> RedisValue {
        var payload = self.channel.allocator.buffer(capacity: 64)
        try RESPCommandEncoder.encode(command, into: &payload)
        return try Self.throwingServerError(try await self.execute(payload, replyCount: 1)[0])
    }

    /// Sends one command whose arguments are the readable bytes of each buffer.
    public func send(_ command: [ByteBuffer]) async throws -> RedisValue {
        try await self.send(command.map { Array($0.readableBytesView) })
    }

    /// Sends all commands in one write and one flush; returns their replies in order.
    /// Error replies are returned as ``RedisValue/error(_:)``, not thrown, so that one failed
    /// command does not hide the others' results.
    public func pipeline(_ commands: [[String]]) async throws -> [RedisValue] {
        var payload = self.channel.allocator.buffer(capacity: 32 * commands.count)
        for command in commands {
            try RESPCommandEncoder.encode(command, into: &payload)
        }
        return try await self.execute(payload, replyCount: commands.count)
    }

    /// ``pipeline(_:)-([[String]])`` with binary-safe arguments.
    public func pipeline(_ commands: [[[UInt8]]]) async throws -> [RedisValue] {
        var payload = self.channel.allocator.buffer(capacity: 32 * commands.count)
        for command in commands {
            try RESPCommandEncoder.encode(command, into: &payload)
        }
        return try await self.execute(payload, replyCount: commands.count)
    }

    /// Closes the connection; commands still in flight fail with ``RedisError/Kind/connectionClosed``.
    /// Closing a connection that is already closed or lost does nothing.
    public func close() async throws {
        self.state.end(because: RedisError(.connectionClosed, "the connection to \(self.url) was closed by close()"))
        do {
            try await self.channel.close()
        } catch ChannelError.alreadyClosed {
            return
        }
    }

    private func execute(_ payload: ByteBuffer, replyCount: Int) async throws -> [RedisValue] {
        guard replyCount > 0 else { return [] }
        let channel = self.channel
        let promise = channel.eventLoop.makePromise(of: [RedisValue].self)
        let timeout = self.configuration.commandTimeout
        let state = self.state
        let url = self.url
        let request = RedisRequest(payload: payload, replyCount: replyCount, promise: promise)
        // One submission to the loop (one wake-up of its thread) for the timer and the write.
        channel.eventLoop.execute {
            if let timeout {
                let task = channel.eventLoop.scheduleTask(in: timeout) {
                    let error = RedisError(.timeout, "no reply from \(url) within \(timeout); the connection was closed")
                    promise.fail(state.end(because: error))
                    channel.close(promise: nil)
                }
                promise.futureResult.whenComplete { _ in task.cancel() }
            }
            channel.writeAndFlush(request).whenFailure { error in
                promise.fail(error)
            }
        }
        do {
            return try await promise.futureResult.get()
        } catch let error as RedisError {
            throw error
        } catch {
            // The write failed before reaching the handler: the channel is closed already.
            throw self.state.errorForLaterCommand
        }
    }

    private static func throwingServerError(_ value: RedisValue) throws(RedisError) -> RedisValue {
        if case .error(let message) = value {
            throw RedisError(.server, message)
        }
        return value
    }
}
