import Crypto
import MyIMSecureChannel
import MyIMTransport
import MyIMWire
import NIOCore
import NIOEmbedded
import Testing

/// Captures what reaches the end of a pipeline: user events and errors.
private final class EventRecorder: ChannelInboundHandler {
    typealias InboundIn = Packet
    var events: [SecureChannelEvent] = []
    var errors: [any Error] = []
    var packets: [Packet] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        packets.append(unwrapInboundIn(data))
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? SecureChannelEvent { events.append(event) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        errors.append(error)
    }
}

/// A client and a server embedded channel whose outbound bytes are carried across by `pump`.
private struct EmbeddedPair {
    let client: EmbeddedChannel
    let server: EmbeddedChannel
    let clientRecorder = EventRecorder()
    let serverRecorder = EventRecorder()

    init(policy: ServerKeyPolicy, identity: ServerIdentityKey, loop: EmbeddedEventLoop = EmbeddedEventLoop()) throws {
        client = EmbeddedChannel(loop: loop)
        server = EmbeddedChannel(loop: loop)
        try client.pipeline.syncOperations.addHandlers(
            SecureChannelHandler(client: ClientChannelStateMachine(policy: policy)), clientRecorder)
        try server.pipeline.syncOperations.addHandlers(
            SecureChannelHandler(server: ServerChannelStateMachine(identity: identity)), serverRecorder)
    }

    /// Moves bytes both ways until neither side has anything to send. Returns the number of
    /// buffers carried.
    @discardableResult
    func pump() throws -> Int {
        var moved = 0
        var progress = true
        while progress {
            progress = false
            while let bytes = try client.readOutbound(as: ByteBuffer.self) {
                if server.isActive { try server.writeInbound(bytes) }
                moved += 1
                progress = true
            }
            while let bytes = try server.readOutbound(as: ByteBuffer.self) {
                if client.isActive { try client.writeInbound(bytes) }
                moved += 1
                progress = true
            }
        }
        return moved
    }

    func connect() throws {
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: 7000)
        try server.connect(to: address).wait()
        try client.connect(to: address).wait()
    }
}

@Suite("Secure channel handler (embedded channels)")
struct SecureChannelHandlerTests {
    static let identity = ServerIdentityKey.generateEd25519()

    @Test func handshakeThenPacketsBothWays() throws {
        let pair = try EmbeddedPair(policy: .pinned(Self.identity.publicKey.fingerprint), identity: Self.identity)
        try pair.connect()
        try pair.pump()

        guard case .established(let clientSession)? = pair.clientRecorder.events.first,
              case .established(let serverSession)? = pair.serverRecorder.events.first
        else {
            Issue.record("both sides should report the channel established")
            return
        }
        #expect(clientSession.transcriptHash == serverSession.transcriptHash)
        #expect(clientSession.serverKey.fingerprint == Self.identity.publicKey.fingerprint)

        let ping = Ping(time: 7).packet
        try pair.client.writeOutbound(ping)
        try pair.pump()
        #expect(pair.serverRecorder.packets == [ping])

        let pongs = (0..<3).map { Pong(time: Int64($0)).packet }
        for pong in pongs { try pair.server.writeOutbound(pong) }
        try pair.pump()
        #expect(pair.clientRecorder.packets == pongs)
        #expect(pair.clientRecorder.errors.isEmpty && pair.serverRecorder.errors.isEmpty)
    }

    @Test func writesBeforeTheHandshakeWaitAndKeepTheirOrder() throws {
        let pair = try EmbeddedPair(policy: .pinned(Self.identity.publicKey.fingerprint), identity: Self.identity)
        let early = (0..<4).map { Ping(time: Int64($0)).packet }
        for packet in early { pair.client.write(packet, promise: nil) }
        pair.client.flush()
        try pair.connect()
        try pair.pump()
        #expect(pair.serverRecorder.packets == early)
    }

    @Test func wrongPinClosesTheClientAndTellsTheServer() throws {
        let other = ServerIdentityKey.generateEd25519()
        let pair = try EmbeddedPair(policy: .pinned(other.publicKey.fingerprint), identity: Self.identity)
        try pair.connect()
        try pair.pump()
        #expect(!pair.client.isActive)
        let error = pair.clientRecorder.errors.first as? SecureChannelError
        #expect(error?.code == .serverKeyMismatch)
        #expect(pair.clientRecorder.events.isEmpty)
    }

    @Test func writesAfterAFailureFailTheirPromise() throws {
        let other = ServerIdentityKey.generateEd25519()
        let pair = try EmbeddedPair(policy: .pinned(other.publicKey.fingerprint), identity: Self.identity)
        let promise = pair.client.eventLoop.makePromise(of: Void.self)
        pair.client.writeAndFlush(Ping(time: 1).packet, promise: promise)
        try pair.connect()
        try pair.pump()
        #expect(throws: SecureChannelError.self) { try promise.futureResult.wait() }
    }

    @Test func handshakeTimesOut() throws {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        let recorder = EventRecorder()
        let handler = SecureChannelHandler(server: ServerChannelStateMachine(identity: Self.identity), handshakeTimeout: .seconds(5))
        try channel.pipeline.syncOperations.addHandlers(handler, recorder)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 7000)).wait()

        loop.advanceTime(by: .seconds(4))
        #expect(channel.isActive)
        loop.advanceTime(by: .seconds(2))
        #expect(!channel.isActive)
        #expect((recorder.errors.first as? SecureChannelError)?.code == .handshakeTimeout)
        #expect(throws: SecureChannelError.self) { try handler.established.wait() }
        let reply = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(try HelloError(packet: Packet(decoding: reply)).code == Int64(ErrorCode.handshakeTimeout.rawValue))
    }

    @Test func garbageFromTheClientGetsAHelloErrorInClear() throws {
        let channel = EmbeddedChannel()
        let recorder = EventRecorder()
        try channel.pipeline.syncOperations.addHandlers(
            SecureChannelHandler(server: ServerChannelStateMachine(identity: Self.identity)), recorder)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 7000)).wait()

        // A packet header announcing a 1 MiB handshake message.
        var garbage = ByteBuffer()
        garbage.writeInteger(UInt32(1001))
        garbage.writeInteger(UInt32(1 << 20))
        try channel.writeInbound(garbage)
        #expect((recorder.errors.first as? SecureChannelError)?.code == .frameTooLarge)
        let reply = try #require(try channel.readOutbound(as: ByteBuffer.self))
        let helloError = try HelloError(packet: Packet(decoding: reply))
        #expect(ErrorCode(Int(helloError.code)) == .frameTooLarge)
        #expect(!channel.isActive)
    }
}
