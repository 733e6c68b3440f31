import Metrics
import MyIMWire
import Synchronization

/// One role's `myim_messages_in_total` or `myim_messages_out_total{role, type}`, with a
/// counter handle per message type, made once and kept.
///
/// Making a swift-metrics handle asks the backend each time (a lock and a lookup by label and
/// dimensions), and a role counts every packet. Handles are made on first use, so counters
/// created before `MetricsSystem.bootstrap` still reach the backend as long as nothing was
/// counted before it; each role instance keeps its own. An unknown type counts as `other`, so
/// that peers cannot grow the label set.
public final class PacketCounters: Sendable {
    private let label: String
    private let role: String
    private let counters = Mutex<[UInt32: Counter]>([:])

    public init(label: String, role: String) {
        self.label = label
        self.role = role
    }

    public func increment(_ type: UInt32, by amount: Int = 1) {
        let key = MessageType(rawValue: type) == nil ? UInt32.max : type
        let counter = counters.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = Counter(label: label, dimensions: [("role", role), ("type", key == .max ? "other" : "\(type)")])
            counters[key] = counter
            return counter
        }
        counter.increment(by: amount)
    }
}
