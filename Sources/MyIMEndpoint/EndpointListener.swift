import MyIMSecureChannel
import MyIMTransport
import MyIMWire
import NIOCore
import NIOPosix

/// The endpoint's client listener, bound: its channel, and what closes every connection it
/// accepted.
public struct ClientListener: Sendable {
    public let channel: any Channel
    let connections: ClientConnections

    /// Closes the listener and every connection it accepted (``ClientSessionHandler``);
    /// returns once all of them have left their pipelines, or after 5 s.
    func closeAll() async {
        try? await channel.close()
        let deadline = ContinuousClock.now + .seconds(5)
        // Again while any is left: a connection accepted just before the listener closed can
        // join its pipeline after the first pass.
        repeat {
            await connections.shutDownAll()
            try? await Task.sleep(for: .milliseconds(10))
        } while await connections.count() > 0 && ContinuousClock.now < deadline
    }
}

/// Binds the endpoint's client listener.
///
/// Pipeline per connection, socket side first: `SecureChannelHandler` (with the read timeout) →
/// ``ClientSessionHandler``, which closes the connection on the secure channel's idle event. The
/// timeout watches raw bytes: any byte from the client, a partial frame included, keeps the
/// connection alive, and a half-open socket that never sends again is closed after `idleTimeout`.
enum EndpointListener {
    static func bind(
        _ endpoint: Endpoint, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> ClientListener {
        let configuration = endpoint.configuration
        let idleTimeout = configuration.idleTimeout
        let connections = ClientConnections(group: group)
        try FrameProtection.prepare()
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 1024)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            // Past the high mark the channel is not writable and the session table closes the
            // client as too slow (``ClientOutbox``).
            .childChannelOption(
                .writeBufferWaterMark, value: .init(low: configuration.maxUnreadBytes / 2, high: configuration.maxUnreadBytes))
            // Client packets are small: an idle connection keeps a 128-byte receive buffer, and
            // larger reads get buffers of their own.
            .childChannelOption(.recvAllocator, value: IdleFriendlyRecvAllocator())
            // One read per readable event: the channel then keeps one pooled receive buffer, not
            // up to four (and the array to hold them).
            .childChannelOption(.maxMessagesPerRead, value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let operations = channel.pipeline.syncOperations
                    let secure = SecureChannelHandler(
                        server: ServerChannelStateMachine(identity: configuration.identity, limits: configuration.limits),
                        handshakeTimeout: configuration.handshakeTimeout, idleTimeout: idleTimeout)
                    try operations.addHandler(secure)
                    try operations.addHandler(ClientSessionHandler(endpoint: endpoint, connections: connections))
                }
            }
            .bind(host: configuration.host, port: configuration.port).get()
        return ClientListener(channel: channel, connections: connections)
    }
}
