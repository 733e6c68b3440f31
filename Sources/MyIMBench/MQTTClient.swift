import NIOCore
import NIOPosix
import Synchronization

/// A minimal MQTT 3.1.1 client for the bench: CONNECT/CONNACK, SUBSCRIBE/SUBACK at QoS 0,
/// PUBLISH at QoS 0 (one write and flush each), a PINGREQ every half keep-alive.
///
/// Built like the bench's MyIM client: a plain channel handler hands each PUBLISH to a callback
/// on the event loop, and a publish is a `writeAndFlush` from any thread, so that the generator
/// costs little next to the broker it measures.
public final class MQTTBenchClient: Sendable {
    public let clientID: String
    private let channel: any Channel
    private let inbox: MQTTInbox

    private init(clientID: String, channel: any Channel, inbox: MQTTInbox) {
        self.clientID = clientID
        self.channel = channel
        self.inbox = inbox
    }

    /// Connects to `host:port` and completes CONNECT/CONNACK (clean session) within `timeout`.
    public static func connect(
        host: String, port: Int, clientID: String, keepAlive: UInt16 = 30, timeout: Duration = .seconds(10),
        maxPacketSize: Int = 64 * 1024, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> MQTTBenchClient {
        let inbox = MQTTInbox()
        let channel = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(Int64(timeout.components.seconds)))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(MQTTDecoder(maxPacketSize: maxPacketSize)))
                    try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(MQTTEncoder()))
                    try channel.pipeline.syncOperations.addHandler(MQTTClientHandler(inbox: inbox))
                }
            }
            .connect(host: host, port: port).get()
        let client = MQTTBenchClient(clientID: clientID, channel: channel, inbox: inbox)
        do {
            client.send(.connect(clientID: clientID, keepAlive: keepAlive, cleanSession: true))
            let reply = try await inbox.next(timeout: timeout, who: clientID)
            guard case .connack(_, let code) = reply else { throw MQTTClientError("\(clientID): expected CONNACK, got \(reply)") }
            guard code == 0 else { throw MQTTClientError("\(clientID): the broker refused the connection (CONNACK return code \(code))") }
        } catch {
            client.close()
            throw error
        }
        if keepAlive > 0 {
            let interval = TimeAmount.milliseconds(Int64(keepAlive) * 500)
            let ping = channel.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
                channel.writeAndFlush(MQTTPacket.pingreq, promise: nil)
            }
            channel.closeFuture.whenComplete { _ in ping.cancel() }
        }
        return client
    }

    /// Subscribes to `topic` at QoS 0 and waits for the SUBACK granting it.
    public func subscribe(_ topic: String, packetID: UInt16 = 1, timeout: Duration = .seconds(10)) async throws {
        send(.subscribe(packetID: packetID, subscriptions: [MQTTSubscription(topic: topic, qos: 0)]))
        let reply = try await inbox.next(timeout: timeout, who: clientID)
        guard case .suback(let id, let codes) = reply, id == packetID else { throw MQTTClientError("\(clientID): expected SUBACK, got \(reply)") }
        guard codes == [0] else { throw MQTTClientError("\(clientID): the broker refused the subscription to \(topic): \(codes)") }
    }

    /// Publishes `payload` to `topic` at QoS 0: one write and flush, from any thread.
    public func publish(topic: String, payload: ByteBuffer) {
        send(.publish(MQTTPublish(topic: topic, payload: payload)))
    }

    /// What receives each PUBLISH from now on, on the channel's event loop (it must not block).
    public func setHandler(_ body: @escaping @Sendable (MQTTPublish) -> Void) {
        inbox.setHandler(body)
    }

    /// The event loop the connection lives on.
    public var eventLoop: any EventLoop { channel.eventLoop }

    /// PINGRESPs received so far.
    public var pingResponses: Int { inbox.pongs }

    /// Why the connection failed, if it did (a close by the broker, a decoding error).
    public var failure: String? { inbox.failure }

    /// Writes and flushes `packet`; a failure closes the channel and is kept in ``failure``.
    public func send(_ packet: MQTTPacket) {
        channel.writeAndFlush(packet, promise: nil)
    }

    /// Sends DISCONNECT and closes the connection (waiting at most a second).
    public func disconnect() async {
        inbox.closing()
        let promise = channel.eventLoop.makePromise(of: Void.self)
        channel.writeAndFlush(MQTTPacket.disconnect, promise: promise)
        try? await promise.futureResult.get()
        try? await channel.close()
    }

    /// Closes the connection at once.
    public func close() {
        inbox.closing()
        channel.close(promise: nil)
    }
}

/// A failure of the bench's MQTT client, in words.
public struct MQTTClientError: Error, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// What a client's channel received: PUBLISHes go to the handler, the rest waits for the setup steps.
final class MQTTInbox: Sendable {
    private struct State {
        var queue: [MQTTPacket] = []
        var closed = false
        var closing = false
        var failure: String?
        var pongs = 0
    }

    private let state = Mutex(State())
    /// Boxed: a closure read out of a `Mutex` as `inout` is re-abstracted and written back
    /// wrapped in two more thunks on every access, so a bare closure here costs more each call.
    private let handler = Mutex<CallbackBox<MQTTPublish>?>(nil)

    func setHandler(_ body: @escaping @Sendable (MQTTPublish) -> Void) { handler.withLock { $0 = CallbackBox(body) } }

    var pongs: Int { state.withLock { $0.pongs } }
    var failure: String? { state.withLock { $0.failure } }

    func received(_ packet: MQTTPacket) {
        switch packet {
        case .publish(let publish):
            if let handler = handler.withLock({ $0 }) {
                handler.body(publish)
            } else {
                state.withLock { $0.queue.append(packet) }
            }
        case .pingresp:
            state.withLock { $0.pongs += 1 }
        default:
            state.withLock { $0.queue.append(packet) }
        }
    }

    func closing() { state.withLock { $0.closing = true } }

    func closed(error: (any Error)?) {
        state.withLock { state in
            if !state.closed, !state.closing, state.failure == nil {
                state.failure = error.map { "\($0)" } ?? "the broker closed the connection"
            }
            state.closed = true
        }
    }

    /// The next non-PUBLISH packet, waiting at most `timeout` (setup only: it polls).
    func next(timeout: Duration, who: String) async throws -> MQTTPacket {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let (packet, closed, failure) = state.withLock { state in
                (state.queue.isEmpty ? nil : state.queue.removeFirst(), state.closed, state.failure)
            }
            if let packet { return packet }
            if closed { throw MQTTClientError("\(who): the connection closed\(failure.map { " (\($0))" } ?? "")") }
            try await Task.sleep(for: .milliseconds(1))
        }
        throw MQTTClientError("\(who): nothing came within \(timeout)")
    }
}

/// The last handler of a client's pipeline: packets to the inbox, errors close the channel.
final class MQTTClientHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = MQTTPacket

    private let inbox: MQTTInbox

    init(inbox: MQTTInbox) {
        self.inbox = inbox
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        inbox.received(unwrapInboundIn(data))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        inbox.closed(error: error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        inbox.closed(error: nil)
        context.fireChannelInactive()
    }
}

/// A callback behind a class reference, so that reading it from a lock does not re-wrap it.
public final class CallbackBox<Argument>: Sendable {
    public let body: @Sendable (Argument) -> Void

    public init(_ body: @escaping @Sendable (Argument) -> Void) {
        self.body = body
    }
}
