import MyIMSecureChannel
import MyIMWire
import NIOCore

/// The secure channel on a NIO pipeline: bytes below, ``Packet``s above.
///
/// A thin shell around ``ClientChannelStateMachine`` / ``ServerChannelStateMachine``: it
/// feeds them what the socket reads, writes what they ask, fires
/// ``SecureChannelEvent/established(_:)`` once the handshake is done and closes the channel
/// on the first error (which it also fires, so that the owner learns why). Packets written
/// before the handshake completes wait and are sealed in order once it does.
///
/// With an `idleTimeout` it also watches the raw bytes read, as an `IdleStateHandler` below it
/// would (one handler less per connection): when nothing at all, not even part of a frame, has
/// been read for that long, it fires `IdleStateHandler.IdleStateEvent.read` and again after
/// each further `idleTimeout`; the owner decides what to do (a server closes).
public final class SecureChannelHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = Packet
    public typealias OutboundIn = Packet
    public typealias OutboundOut = ByteBuffer

    private var machine: Machine
    private var cumulation: ByteBuffer?
    private var pendingWrites: [(Packet, EventLoopPromise<Void>?)] = []
    private let handshakeTimeout: TimeAmount?
    private var timeoutTask: Scheduled<Void>?
    private let idleTimeout: TimeAmount?
    /// The pending idle check: a scheduled callback, which costs an idle connection no promise
    /// and no closure (``IdleCheck``).
    private var idleCheck: NIOScheduledCallback?
    /// Set while the handler is on a pipeline.
    private var context: ChannelHandlerContext?
    /// The channel's event loop, once on a pipeline; kept after removal.
    private var eventLoop: (any EventLoop)?
    /// When the channel last asked for bytes (only kept with an `idleTimeout`): it asks again
    /// right after each read, part of a frame included, unless a handler above holds reads back.
    private var lastRead = NIODeadline.now()
    private var establishedPromise: EventLoopPromise<SecureChannelSession>?
    private var closing = false
    /// The channel went inactive or the handler left its pipeline.
    private var inactive = false

    /// The handshake completed.
    public private(set) var isEstablished = false

    /// Completes when the handshake does, fails with the error that closed the channel
    /// otherwise. Ask for it once the handler is on a pipeline and before the handshake
    /// completes (as ``SecureClient`` does, right after adding the handler).
    ///
    /// Made when first asked for, and the session is not kept otherwise: a connection whose
    /// owner learns of the handshake from ``SecureChannelEvent/established(_:)`` (an endpoint's)
    /// keeps neither a promise nor the session.
    public var established: EventLoopFuture<SecureChannelSession> {
        if let establishedPromise { return establishedPromise.futureResult }
        guard let eventLoop else { preconditionFailure("the handler is not on a pipeline yet") }
        precondition(!isEstablished, "ask for `established` before the handshake completes, or watch for SecureChannelEvent")
        let promise = eventLoop.makePromise(of: SecureChannelSession.self)
        establishedPromise = promise
        if closing || inactive {
            promise.fail(SecureChannelError(.notEstablished, "the secure channel closed before it was established"))
        }
        return promise.futureResult
    }

    /// A client-side handler: it opens the handshake as soon as the channel is active.
    public init(client: ClientChannelStateMachine, handshakeTimeout: TimeAmount? = .seconds(10)) {
        machine = .client(client)
        self.handshakeTimeout = handshakeTimeout
        idleTimeout = nil
    }

    /// A server-side handler: it waits for the client's hello.
    public init(server: ServerChannelStateMachine, handshakeTimeout: TimeAmount? = .seconds(10), idleTimeout: TimeAmount? = nil) {
        machine = .server(server)
        self.handshakeTimeout = handshakeTimeout
        self.idleTimeout = idleTimeout
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        eventLoop = context.eventLoop
        if let handshakeTimeout {
            let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
            let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
            timeoutTask = context.eventLoop.scheduleTask(in: handshakeTimeout) {
                guard !handler.value.isEstablished else { return }
                handler.value.timedOut(after: handshakeTimeout, context: loopBoundContext.value)
            }
        }
        if context.channel.isActive {
            startIfClient(context: context)
            startIdleTimer(context: context)
        }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        inactive = true
        timeoutTask?.cancel()
        stopIdleTimer()
        let error = SecureChannelError(.notEstablished, "the secure channel handler was removed")
        establishedPromise?.fail(error)
        failPendingWrites(error)
        self.context = nil  // It holds this handler.
    }

    public func channelActive(context: ChannelHandlerContext) {
        startIfClient(context: context)
        startIdleTimer(context: context)
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        inactive = true
        timeoutTask?.cancel()
        stopIdleTimer()
        let error = SecureChannelError(.notEstablished, "the connection closed before the secure channel was established")
        establishedPromise?.fail(error)
        failPendingWrites(error)
        context.fireChannelInactive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        var incoming = unwrapInboundIn(data)
        if cumulation == nil {
            cumulation = incoming
        } else {
            cumulation!.writeBuffer(&incoming)
        }
        let actions = machine.receive(&cumulation!)
        if cumulation!.readableBytes == 0 {
            cumulation = nil
        } else if cumulation!.readerIndex > 64 * 1024 {
            cumulation!.discardReadBytes()
        }
        perform(actions, context: context)
    }

    /// A read asked for starts the idle clock again: the channel asks after each read, so this
    /// counts every byte that arrives, and a handler above that held reads back (an endpoint's
    /// session handler while its link is congested) was not waiting for the peer meanwhile.
    public func read(context: ChannelHandlerContext) {
        if idleTimeout != nil { lastRead = .now() }
        context.read()
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let packet = unwrapOutboundIn(data)
        guard !closing else {
            promise?.fail(SecureChannelError(.notEstablished, "the secure channel is closed"))
            return
        }
        guard isEstablished else {
            pendingWrites.append((packet, promise))
            return
        }
        seal(packet, promise: promise, context: context)
    }

    // MARK: - Actions

    private func startIfClient(context: ChannelHandlerContext) {
        guard case .client(var client) = machine else { return }
        let actions = client.start()
        machine = .client(client)
        perform(actions, context: context)
    }

    private func perform(_ actions: [SecureChannelAction], context: ChannelHandlerContext) {
        var wrote = false
        for action in actions {
            switch action {
            case .write(let bytes):
                context.write(wrapOutboundOut(bytes), promise: nil)
                wrote = true
            case .established(let session):
                if wrote { context.flush(); wrote = false }
                isEstablished = true
                timeoutTask?.cancel()
                timeoutTask = nil
                establishedPromise?.succeed(session)
                context.fireUserInboundEventTriggered(SecureChannelEvent.established(session))
                flushPendingWrites(context: context)
            case .deliver(let packet):
                context.fireChannelRead(wrapInboundOut(packet))
            case .close(let error):
                if wrote { context.flush(); wrote = false }
                fail(error, context: context)
            }
        }
        if wrote { context.flush() }
    }

    private func seal(_ packet: Packet, promise: EventLoopPromise<Void>?, context: ChannelHandlerContext) {
        var out = context.channel.allocator.buffer(capacity: FrameProtection.overhead + FrameProtection.paddedLength(for: 64))
        do {
            try machine.seal(packet, into: &out)
        } catch {
            promise?.fail(error)
            return
        }
        context.write(wrapOutboundOut(out), promise: promise)
    }

    private func flushPendingWrites(context: ChannelHandlerContext) {
        guard !pendingWrites.isEmpty else { return }
        let writes = pendingWrites
        pendingWrites = []
        for (packet, promise) in writes { seal(packet, promise: promise, context: context) }
        context.flush()
    }

    private func failPendingWrites(_ error: Error) {
        let writes = pendingWrites
        pendingWrites = []
        for (_, promise) in writes { promise?.fail(error) }
    }

    // MARK: - Idle timeout

    private func startIdleTimer(context: ChannelHandlerContext) {
        guard let idleTimeout, idleCheck == nil, !closing else { return }
        lastRead = .now()
        scheduleIdleCheck(in: idleTimeout, context: context)
    }

    private func stopIdleTimer() {
        idleCheck?.cancel()
        idleCheck = nil
    }

    private func scheduleIdleCheck(in delay: TimeAmount, context: ChannelHandlerContext) {
        // Fails only on an event loop shutting down, whose channels close anyway.
        idleCheck = try? context.eventLoop.assumeIsolated().scheduleCallback(in: delay, handler: IdleCheck(handler: self))
    }

    /// Fires the idle event when nothing was read for `idleTimeout`; else checks again when
    /// that much time will have passed since the last read.
    fileprivate func checkIdle() {
        idleCheck = nil
        guard let idleTimeout, let context, !closing, context.channel.isActive else { return }
        let quiet = NIODeadline.now() - lastRead
        if quiet >= idleTimeout {
            scheduleIdleCheck(in: idleTimeout, context: context)
            context.fireUserInboundEventTriggered(IdleStateHandler.IdleStateEvent.read)
        } else {
            scheduleIdleCheck(in: idleTimeout - quiet, context: context)
        }
    }

    /// A server tells the slow client why in clear (the keys may not exist yet), as for any
    /// other handshake failure; then the channel closes.
    private func timedOut(after timeout: TimeAmount, context: ChannelHandlerContext) {
        let error = SecureChannelError(.handshakeTimeout, "the handshake did not complete within \(timeout.nanoseconds / 1_000_000) ms")
        if case .server = machine, !closing {
            context.writeAndFlush(wrapOutboundOut(HelloError(code: error.code, message: error.message).packet.encoded()), promise: nil)
        }
        fail(error, context: context)
    }

    /// Closes the channel for `error`, once: the error goes to the owner first.
    private func fail(_ error: SecureChannelError, context: ChannelHandlerContext) {
        guard !closing else { return }
        closing = true
        timeoutTask?.cancel()
        stopIdleTimer()
        cumulation = nil
        establishedPromise?.fail(error)
        failPendingWrites(error)
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }
}

/// Events ``SecureChannelHandler`` fires inbound.
public enum SecureChannelEvent: Sendable {
    /// The handshake completed; packets now flow.
    case established(SecureChannelSession)
}

@available(*, unavailable)
extension SecureChannelHandler: Sendable {}

extension SecureChannelHandler {
    /// Either side's state machine, so that one handler serves both.
    /// The client's machine is boxed: a server holds one handler per connection, and the
    /// enum would otherwise be as large as the larger client machine.
    private enum Machine {
        indirect case client(ClientChannelStateMachine)
        case server(ServerChannelStateMachine)

        mutating func receive(_ buffer: inout ByteBuffer) -> [SecureChannelAction] {
            switch self {
            case .client(var machine):
                let actions = machine.receive(&buffer)
                self = .client(machine)
                return actions
            case .server(var machine):
                let actions = machine.receive(&buffer)
                self = .server(machine)
                return actions
            }
        }

        mutating func seal(_ packet: Packet, into output: inout ByteBuffer) throws(SecureChannelError) {
            switch self {
            case .client(var machine):
                defer { self = .client(machine) }
                try machine.seal(packet, into: &output)
            case .server(var machine):
                defer { self = .server(machine) }
                try machine.seal(packet, into: &output)
            }
        }
    }
}

/// The idle timer's callback: one reference, so that the event loop stores it inline.
private struct IdleCheck: NIOScheduledCallbackHandler {
    let handler: SecureChannelHandler

    func handleScheduledCallback(eventLoop: some EventLoop) {
        handler.checkIdle()
    }
}
