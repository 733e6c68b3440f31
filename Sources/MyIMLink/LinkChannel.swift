import MyIMWire
import NIOCore
import NIOPosix
import NIOSSL

/// Opens and accepts links: TLS (or not), then packets both ways as an async channel.
public enum LinkChannel {
    /// Listens for links on `host:port` (port 0 picks a free one).
    public static func bind(
        host: String, port: Int, protection: LinkProtection, limits: WireLimits = .default,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> NIOAsyncChannel<NIOAsyncChannel<Packet, Packet>, Never> {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    if case .tls(let context) = protection {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                    }
                    return try configure(channel, limits: limits)
                }
            }
    }

    /// Connects a link to `host:port`; `serverName` is the peer's node name, which its
    /// certificate must carry.
    public static func connect(
        host: String, port: Int, serverName: String, protection: LinkProtection, limits: WireLimits = .default,
        timeout: TimeAmount = .seconds(5), group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> NIOAsyncChannel<Packet, Packet> {
        try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(timeout)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    if case .tls(let context) = protection {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: serverName))
                    }
                    return try configure(channel, limits: limits)
                }
            }
    }

    private static func configure(_ channel: any Channel, limits: WireLimits) throws -> NIOAsyncChannel<Packet, Packet> {
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(PacketFrameDecoder(limits: limits)))
        try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(PacketFrameEncoder()))
        return try NIOAsyncChannel<Packet, Packet>(wrappingChannelSynchronously: channel)
    }
}
