import GRDB

/// Last-seen times written in batches: a session that closes records its user's time and
/// goes on; times recorded while a transaction is being written go together into the next
/// one. A user recorded twice before a write is written once, with the later time.
actor LastSeenWriter {
    private struct Entry {
        var userID: Int64
        var now: Int64
        var failed: @Sendable (any Error) -> Void
    }

    private let pool: DatabasePool
    private var waiting: [String: Entry] = [:]
    private var writing = false
    private var idle: [CheckedContinuation<Void, Never>] = []

    init(pool: DatabasePool) {
        self.pool = pool
    }

    /// Queues the time; returns at once (the write happens after).
    func record(user: String, userID: Int64, now: Int64, failed: @escaping @Sendable (any Error) -> Void) {
        add(user: user, entry: Entry(userID: userID, now: now, failed: failed))
    }

    /// Returns once everything recorded before the call (and reached this actor) is written.
    func written() async {
        guard writing || !waiting.isEmpty else { return }
        await withCheckedContinuation { idle.append($0) }
    }

    private func add(user: String, entry: Entry) {
        waiting[user] = entry
        guard !writing else { return }
        writing = true
        Task { await self.drain() }
    }

    private func drain() async {
        while !waiting.isEmpty {
            let batch = waiting
            waiting = [:]
            do {
                try await pool.write { db in
                    for (user, entry) in batch { try CenterStore.touch(db, user: user, userID: entry.userID, now: entry.now) }
                }
            } catch {
                for entry in batch.values { entry.failed(error) }
            }
        }
        writing = false
        for continuation in idle { continuation.resume() }
        idle = []
    }
}
