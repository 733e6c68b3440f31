import Foundation
import Metrics
import MyIMSecureChannel
import MyIMWire

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

    /// `myim_messages_in_total{role, type}`: packets from clients, by message type (an unknown
    /// type counts as `other`, so that clients cannot grow the label set).
    static func messageIn(_ type: UInt32) {
        Counter(label: "myim_messages_in_total", dimensions: [("role", "endpoint"), ("type", label(type))]).increment()
    }

    /// `myim_messages_out_total{role, type}`, and for chat deliveries (18)
    /// `myim_delivery_latency_seconds`: from the center's server time to the write to the client.
    static func messageOut(_ packet: Packet) {
        Counter(label: "myim_messages_out_total", dimensions: [("role", "endpoint"), ("type", label(packet.type))]).increment()
        if packet.type == MessageType.chatDelivery.rawValue, case .int(let time)? = packet.body["time"] {
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            if now >= time {
                Metrics.Timer(label: "myim_delivery_latency_seconds", dimensions: [("role", "endpoint")])
                    .recordNanoseconds((now - time) * 1_000_000)
            }
        }
    }

    private static func label(_ type: UInt32) -> String {
        MessageType(rawValue: type).map { "\($0.rawValue)" } ?? "other"
    }
}
