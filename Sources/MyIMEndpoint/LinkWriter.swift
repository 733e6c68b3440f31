import MyIMLink
import MyIMWire
import NIOCore
import Synchronization

/// The current link's channel, written from any event loop without a hop through
/// ``CenterLink``'s actor.
///
/// Client connections relay through it straight from their event loops, so a client's packets
/// reach the center in the order they were read; packets from all of them share the link's
/// flushes (``LinkOutbox``). Past the link's high-water mark the link is
/// *busy*: a connection then holds what it read, stops reading (TCP pushes back on the client)
/// and asks to be resumed when the link drains (``whenWritable(_:)``).
final class LinkWriter: Sendable {
    enum Outcome: Equatable {
        case sent
        /// Not written: the link is over its high-water mark. Try again once it drains.
        case busy
        /// Not written: there is no link.
        case down
    }

    private struct State {
        var outbox: LinkOutbox?
        var waiters: [@Sendable () -> Void] = []
    }

    private let state = Mutex(State())

    /// The center welcomed `channel`: writes go to it from now on.
    func attach(_ channel: any Channel) {
        let outbox = LinkOutbox(channel: channel)
        state.withLock { $0.outbox = outbox }
    }

    /// The link is gone: writes fail with ``Outcome/down`` until the next ``attach(_:)``, and
    /// whoever waited for the link to drain is resumed (to find it down).
    func detach() {
        let waiters = state.withLock { state in
            state.outbox = nil
            defer { state.waiters = [] }
            return state.waiters
        }
        for resume in waiters { resume() }
    }

    /// Writes and flushes `packet` unless the link is down, or busy and `evenIfBusy` is false
    /// (the link's own small messages — opens and closes of sessions — never wait).
    func send(_ packet: Packet, evenIfBusy: Bool = false) -> Outcome {
        // A link closed but not detached yet is down: a write to it would be lost unseen.
        guard let outbox = state.withLock({ $0.outbox }), outbox.channel.isActive else { return .down }
        guard evenIfBusy || outbox.channel.isWritable else { return .busy }
        outbox.write(packet)
        return .sent
    }

    /// Calls `resume` once the link takes writes again or goes down; at once if it already does.
    func whenWritable(_ resume: @escaping @Sendable () -> Void) {
        let now = state.withLock { state -> Bool in
            guard let channel = state.outbox?.channel, !channel.isWritable else { return true }
            state.waiters.append(resume)
            return false
        }
        if now { resume() }
    }

    fileprivate func writabilityChanged(_ channel: any Channel) {
        guard channel.isWritable else { return }
        let waiters = state.withLock { state -> [@Sendable () -> Void] in
            guard state.outbox?.channel === channel else { return [] }
            defer { state.waiters = [] }
            return state.waiters
        }
        for resume in waiters { resume() }
    }
}

/// Tells a ``LinkWriter`` when its link drains. First in the link's pipeline, so it sees the
/// socket's own writability.
final class LinkWritabilityHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    private let writer: LinkWriter

    init(writer: LinkWriter) { self.writer = writer }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        writer.writabilityChanged(context.channel)
        context.fireChannelWritabilityChanged()
    }
}

@available(*, unavailable)
extension LinkWritabilityHandler: Sendable {}
