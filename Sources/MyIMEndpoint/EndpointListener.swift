import MyIMSecureChannel
import MyIMTransport
import MyIMWire
import NIOCore
import NIOPosix

/// The endpoint's client listener: `SecureListener`'s pipeline with an idle timeout in front.
///
/// Pipeline per connection, socket side first: `IdleStateHandler` (read timeout) →
/// ``IdleCloseHandler`` → `SecureChannelHandler` → the `NIOAsyncChannel`. The idle handler sits
/// before the secure channel so that it sees raw bytes: any byte from the client, a partial
/// frame included, keeps the connection alive, and a half-open socket that never sends again
/// is closed after `idleTimeout`.
enum EndpointListener {
    static func bind(
        host: String, port: Int, identity: ServerIdentityKey, limits: WireLimits, handshakeTimeout: TimeAmount,
        idleTimeout: TimeAmount, maxUnreadBytes: Int, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> NIOAsyncChannel<SecureConnection, Never> {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 1024)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            // Past the high mark the channel is not writable and the session table closes the
            // client as too slow (``ClientOutbox``).
            .childChannelOption(.writeBufferWaterMark, value: .init(low: maxUnreadBytes / 2, high: maxUnreadBytes))
            // Client packets are small: an idle connection keeps a small receive buffer (it
            // grows with what arrives).
            .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 65536))
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let operations = channel.pipeline.syncOperations
                    try operations.addHandler(IdleStateHandler(readTimeout: idleTimeout))
                    try operations.addHandler(IdleCloseHandler(timeout: idleTimeout))
                    let handler = SecureChannelHandler(
                        server: ServerChannelStateMachine(identity: identity, limits: limits), handshakeTimeout: handshakeTimeout)
                    try operations.addHandler(handler)
                    let async = try NIOAsyncChannel<Packet, Packet>(wrappingChannelSynchronously: channel)
                    return SecureConnection(channel: async, session: handler.established)
                }
            }
    }
}

/// The error a connection's inbound stream ends with when the idle timeout closed it.
struct IdleTimeout: Error, CustomStringConvertible {
    var milliseconds: Int64
    var description: String { "idle timeout: nothing received for \(milliseconds) ms" }
}

/// Closes the connection when `IdleStateHandler` reports a read timeout, after firing
/// ``IdleTimeout`` so that the owner of the channel learns why it ended.
final class IdleCloseHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    private let timeout: TimeAmount

    init(timeout: TimeAmount) { self.timeout = timeout }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case IdleStateHandler.IdleStateEvent.read = event else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        context.fireErrorCaught(IdleTimeout(milliseconds: timeout.nanoseconds / 1_000_000))
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension IdleCloseHandler: Sendable {}
