import MyIMSecureChannel
import MyIMWire
import NIOCore
import NIOPosix

/// One secure-channel connection as async streams of packets.
///
/// Inbound packets start flowing once the handshake completes; `session` tells when that
/// is and what was agreed, or why it failed.
public struct SecureConnection: Sendable {
    public let channel: NIOAsyncChannel<Packet, Packet>
    public let session: EventLoopFuture<SecureChannelSession>

    public init(channel: NIOAsyncChannel<Packet, Packet>, session: EventLoopFuture<SecureChannelSession>) {
        self.channel = channel
        self.session = session
    }
}

/// Opens client connections over the secure channel.
public enum SecureClient {
    /// Connects to `host:port`, runs the handshake under `policy`, and returns once it is
    /// established. Throws ``SecureChannelError`` if the server is refused or refuses us.
    ///
    /// `earlyPackets` go out with ClientFinished, before HelloDone (a token: its session opens
    /// a round trip sooner); see ``ClientChannelStateMachine/init(policy:limits:earlyPackets:ephemeralKey:random:)``.
    public static func connect(
        host: String,
        port: Int,
        policy: ServerKeyPolicy,
        limits: WireLimits = .default,
        earlyPackets: [Packet] = [],
        handshakeTimeout: TimeAmount = .seconds(10),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> (SecureConnection, SecureChannelSession) {
        let connection = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(handshakeTimeout)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = SecureChannelHandler(
                        client: ClientChannelStateMachine(policy: policy, limits: limits, earlyPackets: earlyPackets),
                        handshakeTimeout: handshakeTimeout)
                    try channel.pipeline.syncOperations.addHandler(handler)
                    let async = try NIOAsyncChannel<Packet, Packet>(wrappingChannelSynchronously: channel)
                    return SecureConnection(channel: async, session: handler.established)
                }
            }
        do {
            return (connection, try await connection.session.get())
        } catch {
            try? await connection.channel.channel.close()
            throw error
        }
    }
}

/// Accepts connections over the secure channel.
public enum SecureListener {
    /// Binds `host:port` (port 0 picks a free one); each accepted connection carries its own
    /// server state machine with `identity`.
    public static func bind(
        host: String,
        port: Int,
        identity: ServerIdentityKey,
        limits: WireLimits = .default,
        handshakeTimeout: TimeAmount = .seconds(10),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> NIOAsyncChannel<SecureConnection, Never> {
        try FrameProtection.prepare()
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 1024)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = SecureChannelHandler(
                        server: ServerChannelStateMachine(identity: identity, limits: limits), handshakeTimeout: handshakeTimeout)
                    try channel.pipeline.syncOperations.addHandler(handler)
                    let async = try NIOAsyncChannel<Packet, Packet>(wrappingChannelSynchronously: channel)
                    return SecureConnection(channel: async, session: handler.established)
                }
            }
    }
}
