import Foundation
import Metrics
import MyIMLink
import MyIMSecureChannel
import MyIMWire
import Synchronization

/// What an endpoint counts (swift-metrics; served as Prometheus text by `myim endpoint` when
/// the topology gives the node a `metrics` address, and free when it does not).
enum EndpointMetrics {
    /// `myim_connections_open{role="endpoint"}`: client sockets open now.
    /// (Looked up at each use, so that a metrics backend installed after the first connection
    /// still gets it.)
    static var connections: Meter { Meter(label: "myim_connections_open", dimensions: [("role", "endpoint")]) }

    /// `myim_handshakes_total{role, result, code}`: secure-channel handshakes by outcome.
    static func handshake(failure: (any Error)?) {
        guard let failure else {
            Counter(label: "myim_handshakes_total", dimensions: [("role", "endpoint"), ("result", "ok"), ("code", "0")]).increment()
            return
        }
        let code = (failure as? SecureChannelError).map { "\($0.code.rawValue)" } ?? "io"
        Counter(label: "myim_handshakes_total", dimensions: [("role", "endpoint"), ("result", "failed"), ("code", code)]).increment()
    }
}

/// What an endpoint counts per packet, with its handles made once (``PacketCounters``).
final class EndpointCounters: Sendable {
    /// `myim_messages_in_total{role, type}`: packets from clients, by message type.
    private let messagesIn = PacketCounters(label: "myim_messages_in_total", role: "endpoint")
    /// `myim_messages_out_total{role, type}`: packets to clients, by message type.
    private let messagesOut = PacketCounters(label: "myim_messages_out_total", role: "endpoint")
    /// `myim_delivery_latency_seconds`: for chat deliveries (18), from the center's server time
    /// to the write to the client.
    private let latency = Mutex<Metrics.Timer?>(nil)

    func messageIn(_ type: UInt32) {
        messagesIn.increment(type)
    }

    func messageOut(_ packet: Packet) {
        messagesOut.increment(packet.type)
        guard packet.type == MessageType.chatDelivery.rawValue, let time = packet.int("time") else { return }
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        guard now >= time else { return }
        let timer = latency.withLock { timer in
            if let timer { return timer }
            let made = Metrics.Timer(label: "myim_delivery_latency_seconds", dimensions: [("role", "endpoint")])
            timer = made
            return made
        }
        timer.recordNanoseconds((now - time) * 1_000_000)
    }
}
