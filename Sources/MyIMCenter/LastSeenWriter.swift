import GRDB
import Synchronization

/// Last-seen times written in batches: a session that closes records its user's time and
/// goes on; times recorded while a transaction is being written go together into the next
/// one. A user recorded twice before a write is written once, with the later time.
///
/// A lock, not an actor: recording costs the caller (the center's actor, at every session
/// open and close) no hop to another executor and back; only the writing task waits on SQLite.
final class LastSeenWriter: Sendable {
    private struct Entry {
        var userID: Int64
        var now: Int64
        var failed: @Sendable (any Error) -> Void
    }

    private struct State {
        var waiting: [String: Entry] = [:]
        var writing = false
        var idle: [CheckedContinuation<Void, Never>] = []
    }

    private let pool: DatabasePool
    private let state = Mutex(State())

    init(pool: DatabasePool) {
        self.pool = pool
    }

    /// Queues the time; returns at once (the write happens after).
    func record(user: String, userID: Int64, now: Int64, failed: @escaping @Sendable (any Error) -> Void) {
        let startWriting = state.withLock { state in
            state.waiting[user] = Entry(userID: userID, now: now, failed: failed)
            guard !state.writing else { return false }
            state.writing = true
            return true
        }
        if startWriting { Task { await self.drain() } }
    }

    /// Returns once everything recorded before the call is written.
    func written() async {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state in
                guard state.writing || !state.waiting.isEmpty else { return true }
                state.idle.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    private func drain() async {
        while true {
            // Taken with `writing` cleared in the same lock when nothing waits: a time recorded
            // just after starts a new task rather than being left to this one.
            let (batch, waiters) = state.withLock { state -> ([String: Entry], [CheckedContinuation<Void, Never>]) in
                guard !state.waiting.isEmpty else {
                    state.writing = false
                    defer { state.idle = [] }
                    return ([:], state.idle)
                }
                defer { state.waiting = [:] }
                return (state.waiting, [])
            }
            guard !batch.isEmpty else {
                for continuation in waiters { continuation.resume() }
                return
            }
            do {
                try await pool.write { db in
                    for (user, entry) in batch { try CenterStore.touch(db, user: user, userID: entry.userID, now: entry.now) }
                }
            } catch {
                for entry in batch.values { entry.failed(error) }
            }
        }
    }
}
