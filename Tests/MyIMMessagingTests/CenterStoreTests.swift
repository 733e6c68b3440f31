import Foundation
import MyIMCenter
import MyIMWire
import Synchronization
import Testing

/// Counts failures reported from another task.
private final class FailureCount: Sendable {
    private let value = Mutex(0)
    var count: Int { value.withLock { $0 } }
    func add() { value.withLock { $0 += 1 } }
}

/// The center's SQLite store on a real file.
@Suite("Center store")
struct CenterStoreTests {
    @Test func aBurstOfSendsSharesCommitsAndStoresEachOnce() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("myim-store-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try CenterStore(path: directory.appendingPathComponent("center.sqlite").path)
        let delivery = { @Sendable (sender: String, id: String) in
            { @Sendable (serverID: Int64, time: Int64) in
                ChatDelivery(
                    kind: .user, time: time, senderID: 1, senderName: sender, targetID: 2, targetName: "bob@alpha.example",
                    content: .text(id), serverMessageID: serverID, clientMessageID: id, qos: .atLeastOnce)
            }
        }
        // 200 sends at once, each sent twice (a client retrying): 200 messages, 400 answers.
        let outcomes = try await withThrowingTaskGroup(of: (String, AcceptOutcome).self) { group in
            for index in 0..<400 {
                let id = "c\(index % 200)"
                group.addTask {
                    let outcome = try await store.accept(
                        sender: "alice@alpha.example", clientMessageID: id, recipient: "bob@alpha.example", now: 1_000,
                        makeDelivery: delivery("alice@alpha.example", id))
                    return (id, outcome)
                }
            }
            var all: [(String, AcceptOutcome)] = []
            for try await outcome in group { all.append(outcome) }
            return all
        }
        var serverIDs: [String: Set<Int64>] = [:]
        var stored = 0
        for (id, outcome) in outcomes {
            switch outcome {
            case .stored(let serverID, _):
                stored += 1
                serverIDs[id, default: []].insert(serverID)
            case .duplicate(let serverID, _):
                serverIDs[id, default: []].insert(serverID)
            }
        }
        #expect(stored == 200, "each client id stored once")
        #expect(serverIDs.count == 200 && serverIDs.values.allSatisfy { $0.count == 1 }, "a retry gets the original's server id")
        #expect(try await store.pendingCount() == 200)
        let pending = try await store.pending(for: "bob@alpha.example", limit: 1000)
        #expect(Set(pending.map(\.clientMessageID)).count == 200)
        let transactions = await store.acceptTransactions
        #expect(transactions < 400, "400 concurrent accepts took \(transactions) transactions")
    }

    /// Last-seen times are written in batches, after the call returns: each user once, with
    /// the time recorded last, and they survive a reopening of the file.
    @Test func lastSeenTimesAreWrittenTogetherAndKept() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("myim-store-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("center.sqlite").path
        do {
            let store = try CenterStore(path: path)
            let failures = FailureCount()
            for index in 0..<50 {
                store.recordLastSeen(user: "u\(index)@alpha.example", userID: Int64(index + 1), now: 1_000 + Int64(index)) { _ in failures.add() }
            }
            store.recordLastSeen(user: "u7@alpha.example", userID: 8, now: 5_000) { _ in failures.add() }
            await store.lastSeenWritten()
            #expect(failures.count == 0)
        }
        let reopened = try CenterStore(path: path)
        let seven = try #require(try await reopened.profile(of: "u7@alpha.example"))
        #expect(seven.userID == 8 && seven.lastSeen == 5_000)
        #expect(try await reopened.profile(of: "u49@alpha.example")?.lastSeen == 1_049)
        #expect(try await reopened.userID(of: "u0@alpha.example") == 1)
        // A time that lands late (an older close written after a newer one) does not move it back.
        try await reopened.touch(user: "u7@alpha.example", userID: 8, now: 4_000)
        #expect(try await reopened.profile(of: "u7@alpha.example")?.lastSeen == 5_000)
        try await reopened.touch(user: "u7@alpha.example", userID: 8, now: 6_000)
        #expect(try await reopened.profile(of: "u7@alpha.example")?.lastSeen == 6_000)
    }

    /// Times recorded from many tasks at once, some while a batch is being written and some
    /// just as the writer finds nothing left, are all written: none is left waiting without a
    /// writer, and `lastSeenWritten` returns only once each recorded before it is on disk.
    @Test func lastSeenTimesRecordedWhileWritingAreNeverLeftBehind() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("myim-store-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try CenterStore(path: directory.appendingPathComponent("center.sqlite").path)
        let failures = FailureCount()
        for round in 0..<20 {
            await withTaskGroup(of: Void.self) { group in
                for task in 0..<8 {
                    group.addTask {
                        for index in 0..<5 {
                            let user = "r\(round)t\(task)i\(index)@alpha.example"
                            store.recordLastSeen(user: user, userID: Int64(1 + round * 40 + task * 5 + index), now: Int64(round)) { _ in failures.add() }
                            if index == 2 { await Task.yield() }
                        }
                    }
                }
            }
            await store.lastSeenWritten()
            // Everything of this round is written by now, before the next round records more.
            for task in 0..<8 {
                #expect(try await store.profile(of: "r\(round)t\(task)i4@alpha.example")?.lastSeen == Int64(round), "round \(round), task \(task)")
            }
        }
        #expect(failures.count == 0)
    }

    /// A session's opening read: friends, unread messages in order (at most the limit) and groups.
    @Test func anOpeningReadsFriendsUnreadAndGroupsAtOnce() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("myim-store-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try CenterStore(path: directory.appendingPathComponent("center.sqlite").path)
        let bob = "bob@alpha.example"
        #expect(try await store.addFriendship(bob, "alice@alpha.example", now: 1))
        #expect(try await store.addFriendship(bob, "carol@alpha.example", now: 1))
        for index in 0..<3 {
            _ = try await store.accept(sender: "alice@alpha.example", clientMessageID: "m\(index)", recipient: bob, now: 10) { id, time in
                ChatDelivery(
                    kind: .user, time: time, senderID: 1, senderName: "alice@alpha.example", targetID: 2, targetName: bob,
                    content: .text("m\(index)"), serverMessageID: id, clientMessageID: "m\(index)", qos: .atLeastOnce)
            }
        }
        let group = try await store.createGroup(name: "team", owner: "alice@alpha.example", members: [bob], now: 5)
        let opening = try store.opening(of: bob, limit: 2)
        #expect(opening.friends.map(\.username) == ["alice@alpha.example", "carol@alpha.example"])
        #expect(opening.unread.map(\.clientMessageID) == ["m0", "m1"])
        #expect(opening.groups.map(\.group.id) == [group.id])
        #expect(try store.opening(of: "nobody@alpha.example", limit: 2).friends.isEmpty)
    }

    @Test func bestEffortIdsComeFromBlocksAndNeverCollideWithStoredOnes() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("myim-store-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("center.sqlite").path
        var ids: [Int64] = []
        do {
            let store = try CenterStore(path: path)
            ids = try await withThrowingTaskGroup(of: Int64.self) { group in
                for _ in 0..<2500 { group.addTask { try await store.allocateMessageID() } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let stored = try await store.accept(
                sender: "alice@alpha.example", clientMessageID: "q1", recipient: "bob@alpha.example", now: 1, makeDelivery: { id, time in
                    ChatDelivery(
                        kind: .user, time: time, senderID: 1, senderName: "alice@alpha.example", targetID: 2, targetName: "bob@alpha.example",
                        content: .text("x"), serverMessageID: id, clientMessageID: "q1", qos: .atLeastOnce)
                })
            guard case .stored(let storedID, _) = stored else { throw CenterTestFailure("not stored") }
            ids.append(storedID)
        }
        // A restarted center (same file) continues past every block handed out.
        let restarted = try CenterStore(path: path)
        ids.append(try await restarted.allocateMessageID())
        #expect(Set(ids).count == ids.count, "every id is unique")
        #expect(ids.last! > ids.dropLast().max()!)
    }

    /// Past half of a block of best-effort ids, the next block is reserved in the background:
    /// a steady stream of chats routed on the link's loop never finds the ids used up and
    /// never waits on SQLite for the next.
    @Test func theNextBlockOfIdsIsReservedBeforeTheCurrentOneRunsOut() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("myim-store-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try CenterStore(path: directory.appendingPathComponent("center.sqlite").path)
        var ids = [try await store.allocateMessageID()]
        for _ in 0..<CenterStore.idBlockSize / 2 { ids.append(try #require(store.reservedMessageID())) }
        let deadline = ContinuousClock.now + .seconds(10)
        while !store.hasSpareIDBlock, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        #expect(store.hasSpareIDBlock, "the next block is reserved once half of this one is used")
        for _ in 0..<CenterStore.idBlockSize {
            ids.append(try #require(store.reservedMessageID(), "no id ready after \(ids.count)"))
        }
        #expect(Set(ids).count == ids.count && ids == ids.sorted(), "unique, and increasing from block to block")
    }
}
