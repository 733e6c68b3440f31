import Logging
import MyIMLink
import MyIMWire
import NIOCore
import Synchronization

/// When the center was last heard from on the current link; read by the link's keepalive.
final class LinkActivity: Sendable {
    private let lastHeard = Atomic<UInt64>(NIODeadline.now().uptimeNanoseconds)

    func heard() {
        lastHeard.store(NIODeadline.now().uptimeNanoseconds, ordering: .relaxed)
    }

    /// How long the center has been silent.
    var silence: Duration {
        .nanoseconds(Int64(NIODeadline.now().uptimeNanoseconds &- lastHeard.load(ordering: .relaxed)))
    }
}

/// Handles what the center sends the endpoint's clients on the link's event loop, in the
/// link's order and without a hop: `SessionReady` (42 and 10), `ToClient` and `KickSession`
/// go straight to the ``SessionTable``. Everything else (welcome, refusal, pings) goes on to
/// ``CenterLink``.
///
/// These three must share one order: a `ToClient` that follows a `SessionReady` on the link
/// finds the session bound.
final class LinkDeliveryHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = Packet
    typealias InboundOut = Packet
    typealias OutboundOut = Packet

    private let table: SessionTable
    private let activity: LinkActivity
    private let logger: Logger
    private let limits: WireLimits

    init(table: SessionTable, activity: LinkActivity, logger: Logger, limits: WireLimits) {
        self.table = table
        self.activity = activity
        self.logger = logger
        self.limits = limits
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let packet = unwrapInboundIn(data)
        do {
            switch LinkMessageType(rawValue: packet.type) {
            case .toClient:
                // The payload stays as the center encoded it: the client parses it, not the endpoint.
                let message = try ToClient(forwarding: packet, limits: limits)
                guard message.payload.type < MessageType.clientHello.rawValue, MessageType(rawValue: message.payload.type) != nil else {
                    logger.error("the center sent a client a message of type \(message.payload.type); dropped")
                    return
                }
                table.deliver(message.payload, to: message.sessions)
            case .sessionReady:
                let ready = try SessionReady(packet: packet)
                if !table.bind(ready.session, initial: ready.initial) {
                    let close = SessionClose(session: ready.session, reason: "the client left before the session was ready")
                    context.writeAndFlush(wrapOutboundOut(close.packet), promise: nil)
                }
            case .kickSession:
                let kick = try KickSession(packet: packet)
                if table.kick(kick.session, reason: kick.reason) {
                    logger.info("session kicked", metadata: ["session": "\(kick.session)", "reason": "\(kick.reason)"])
                }
            default:
                context.fireChannelRead(data)
            }
        } catch {
            logger.error("cannot handle a link message", metadata: ["type": "\(packet.type)", "error": "\(error)"])
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        activity.heard()
        context.fireChannelReadComplete()
    }
}

@available(*, unavailable)
extension LinkDeliveryHandler: Sendable {}
