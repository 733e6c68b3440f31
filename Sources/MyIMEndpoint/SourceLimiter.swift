import Synchronization

/// Counts open connections per source IP address and admits at most `maximum` of each.
///
/// Shared by every connection task of one endpoint; a `Mutex` is enough since each call is a
/// dictionary update.
final class SourceLimiter: Sendable {
    let maximum: Int
    private let counts = Mutex<[String: Int]>([:])

    init(maximum: Int) { self.maximum = maximum }

    /// Takes a slot for `source`; `false` (and nothing taken) when it already has `maximum`.
    func acquire(_ source: String) -> Bool {
        counts.withLock { counts in
            let count = counts[source, default: 0]
            guard count < maximum else { return false }
            counts[source] = count + 1
            return true
        }
    }

    /// Gives back a slot taken with ``acquire(_:)``.
    func release(_ source: String) {
        counts.withLock { counts in
            let count = counts[source, default: 0] - 1
            counts[source] = count > 0 ? count : nil
        }
    }

    /// Open connections from `source`.
    func count(_ source: String) -> Int { counts.withLock { $0[source, default: 0] } }
}
