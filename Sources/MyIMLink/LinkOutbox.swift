import MyIMWire
import NIOCore

/// Writes packets to a link from any thread, in the order they are given, with one flush per
/// batch.
///
/// A packet is written on the link's event loop; the first of a batch schedules a flush behind
/// whatever the loop has queued, and every packet written before that flush runs leaves with it.
/// Under load many packets share one TLS record (``PacketBatchEncoder``) and one `write(2)`; an
/// idle link flushes each packet at once (its flush is the next thing the loop does).
public final class LinkOutbox: Sendable {
    public let channel: any Channel
    private let flushPending: NIOLoopBoundBox<Bool>

    public init(channel: any Channel) {
        self.channel = channel
        flushPending = NIOLoopBoundBox.makeBoxSendingValue(false, eventLoop: channel.eventLoop)
    }

    public func write(_ packet: Packet) {
        if channel.eventLoop.inEventLoop {
            writeOnLoop(packet)
        } else {
            channel.eventLoop.execute { self.writeOnLoop(packet) }
        }
    }

    /// Writes `packet` behind every packet given to this outbox before, from any thread: unlike
    /// ``write(_:)``, never at once, even on the link's event loop, where it waits for the
    /// writes other threads have queued on that loop. A packet routed on an event loop must
    /// not overtake what the center's actor sent first.
    public func enqueue(_ packet: Packet) {
        channel.eventLoop.execute { self.writeOnLoop(packet) }
    }

    /// Returns once the link takes writes again: while more than its high-water mark waits
    /// unwritten (the peer reads slower than it is written to), or at once. Callers that wait
    /// here after each write are held back instead of buffering without bound. It runs on the
    /// caller's executor (`nonisolated(nonsending)`): a writable link costs an actor no hop.
    public nonisolated(nonsending) func writable() async {
        while !channel.isWritable, channel.isActive {
            try? await Task.sleep(for: .milliseconds(1))
        }
    }

    private func writeOnLoop(_ packet: Packet) {
        channel.write(packet, promise: nil)
        guard !flushPending.value else { return }
        flushPending.value = true
        channel.eventLoop.execute {
            self.flushPending.value = false
            self.channel.flush()
        }
    }
}
