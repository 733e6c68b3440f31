import GRDB
import MyIMWire

/// One QoS-1 send to store.
struct AcceptRequest: Sendable {
    var sender: String
    var clientMessageID: String
    var recipient: String
    var now: Int64
    var makeDelivery: @Sendable (_ serverMessageID: Int64, _ time: Int64) -> ChatDelivery
}

/// Group commit for QoS-1 sends: requests that arrive while a transaction is being written
/// wait, and go together into the next one (at most ``maximumBatch``).
///
/// An idle center writes each message alone, as before; under load the commits, each an
/// fsync of the WAL, are shared. Requests are applied in arrival order inside the
/// transaction, so a retry in the same batch as its original is recognised as a duplicate.
/// Each is answered only after its transaction committed; if one fails, the others of the
/// batch are written again on their own, so a bad request fails alone.
actor AcceptBatcher {
    static let maximumBatch = 256

    private struct Waiting {
        var request: AcceptRequest
        var continuation: CheckedContinuation<AcceptOutcome, any Error>
    }

    private let pool: DatabasePool
    private var queue: [Waiting] = []
    private var writing = false
    /// Transactions written so far (each a commit): fewer than the accepts under load.
    private(set) var transactions = 0

    init(pool: DatabasePool) {
        self.pool = pool
    }

    func accept(_ request: AcceptRequest) async throws -> AcceptOutcome {
        try await withCheckedThrowingContinuation { continuation in
            queue.append(Waiting(request: request, continuation: continuation))
            if !writing {
                writing = true
                Task { await self.drain() }
            }
        }
    }

    private func drain() async {
        while !queue.isEmpty {
            let batch = Array(queue.prefix(Self.maximumBatch))
            queue.removeFirst(batch.count)
            let requests = batch.map(\.request)
            transactions += 1
            do {
                let outcomes = try await pool.write { db in
                    try requests.map { try CenterStore.accept($0, in: db) }
                }
                for (waiting, outcome) in zip(batch, outcomes) { waiting.continuation.resume(returning: outcome) }
            } catch {
                guard batch.count > 1 else {
                    batch[0].continuation.resume(throwing: error)
                    continue
                }
                for waiting in batch {
                    let request = waiting.request
                    do {
                        waiting.continuation.resume(returning: try await pool.write { db in try CenterStore.accept(request, in: db) })
                    } catch {
                        waiting.continuation.resume(throwing: error)
                    }
                }
            }
        }
        writing = false
    }
}
