import Foundation
import GRDB
import MyIMStorage
import MyIMWire
import NIOCore
import Synchronization

/// A 1:1 message kept until its recipient acknowledges it.
public struct StoredMessage: Sendable, Hashable {
    public var serverMessageID: Int64
    public var recipient: String
    public var delivery: ChatDelivery
}

/// What a session needs when it opens (``CenterStore/opening(of:limit:)``).
public struct SessionOpening: Sendable {
    public var friends: [FriendEntry]
    public var unread: [ChatDelivery]
    public var groups: [(group: StoredGroup, membership: StoredMember)]
}

/// What a QoS-1 send did: stored now, or found as a retry of an earlier send.
public enum AcceptOutcome: Sendable, Hashable {
    case stored(serverMessageID: Int64, time: Int64)
    case duplicate(serverMessageID: Int64, time: Int64)
}

/// The center's own SQLite file: users it has seen, friendships, profiles, 1:1 offline
/// messages and the sender-id table that makes retried sends idempotent.
///
/// Only the center opens it. Writes go through GRDB's pool (WAL), so reads never wait.
public final class CenterStore: Sendable {
    let pool: DatabasePool
    /// QoS-1 accepts share transactions under load (group commit).
    private let batcher: AcceptBatcher
    /// The block of ids QoS 0 messages are numbered from: `next..<end`.
    private let idBlocks = Mutex(IDBlocks())
    /// Last-seen times waiting to be written together.
    private let lastSeen: LastSeenWriter

    public init(path: String) throws {
        pool = try SQLiteFile.openPool(path: path, migrator: Self.migrator)
        batcher = AcceptBatcher(pool: pool)
        lastSeen = LastSeenWriter(pool: pool)
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1 users, friends, offline messages") { db in
            try db.create(table: "user") { t in
                t.primaryKey("address", .text)
                t.column("user_id", .integer).notNull()
                t.column("signature", .text).notNull().defaults(to: "")
                t.column("last_seen", .integer)
            }
            try db.create(table: "friendship") { t in
                t.column("user", .text).notNull()
                t.column("friend", .text).notNull()
                t.column("since", .integer).notNull()
                t.primaryKey(["user", "friend"])
            }
            // One row a QoS-1 message not yet acknowledged by its recipient, in arrival order.
            try db.create(table: "offline_message") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("recipient", .text).notNull()
                t.column("time", .integer).notNull()
                t.column("delivery", .blob).notNull()
            }
            try db.create(index: "offline_by_recipient", on: "offline_message", columns: ["recipient", "id"])
            // Every accepted QoS-1 send by (sender, client id), kept after delivery so that a
            // late retry is recognised; swept after `dedupRetention`.
            try db.create(table: "sent") { t in
                t.column("sender", .text).notNull()
                t.column("client_msg_id", .text).notNull()
                t.column("server_msg_id", .integer).notNull()
                t.column("time", .integer).notNull()
                t.primaryKey(["sender", "client_msg_id"])
            }
            try db.create(index: "sent_by_time", on: "sent", columns: ["time"])
            // Server message ids: one counter, so that ids are unique and increase with time.
            try db.create(table: "counter") { t in
                t.primaryKey("name", .text)
                t.column("value", .integer).notNull()
            }
        }
        registerGroupMigration(&migrator)
        return migrator
    }

    // MARK: - Users and profiles

    /// Records a user seen at login (address and user id from the token) and its last seen time.
    /// A time never moves back: writes that land out of order keep the latest.
    public func touch(user: String, userID: Int64, now: Int64) async throws {
        try await pool.write { db in try Self.touch(db, user: user, userID: userID, now: now) }
    }

    static func touch(_ db: Database, user: String, userID: Int64, now: Int64) throws {
        try db.cachedStatement(sql: """
            INSERT INTO user (address, user_id, last_seen) VALUES (?, ?, ?)
            ON CONFLICT(address) DO UPDATE SET user_id = excluded.user_id,
                last_seen = max(coalesce(user.last_seen, excluded.last_seen), excluded.last_seen)
            """).execute(arguments: [user, userID, now])
    }

    /// Records when a user was last seen without waiting for the write: the times of users
    /// who leave together are written together, in one transaction. A failure is reported
    /// to `failed`; the time is lost then, nothing else.
    public func recordLastSeen(user: String, userID: Int64, now: Int64, failed: @escaping @Sendable (any Error) -> Void) {
        lastSeen.record(user: user, userID: userID, now: now, failed: failed)
    }

    /// Waits until every last-seen time recorded so far is written.
    public func lastSeenWritten() async {
        await lastSeen.written()
    }

    /// Records a user the directory knows, without a last-seen time (never signed in here).
    public func remember(user: String, userID: Int64) async throws {
        try await pool.write { db in
            try db.execute(
                sql: "INSERT INTO user (address, user_id) VALUES (?, ?) ON CONFLICT(address) DO UPDATE SET user_id = excluded.user_id",
                arguments: [user, userID])
        }
    }

    public func userID(of user: String) async throws -> Int64? {
        try await pool.read { db in
            try Int64.fetchOne(db.cachedStatement(sql: "SELECT user_id FROM user WHERE address = ?"), arguments: [user])
        }
    }

    public func profile(of user: String) async throws -> (userID: Int64, signature: String, lastSeen: Int64?)? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT user_id, signature, last_seen FROM user WHERE address = ?", arguments: [user]).map {
                (userID: $0["user_id"], signature: $0["signature"], lastSeen: $0["last_seen"])
            }
        }
    }

    public func setSignature(_ signature: String, of user: String) async throws {
        try await pool.write { db in
            try db.execute(sql: "UPDATE user SET signature = ? WHERE address = ?", arguments: [signature, user])
        }
    }

    // MARK: - Friends

    /// Makes the two friends (both ways); false if they already were.
    public func addFriendship(_ user: String, _ friend: String, now: Int64) async throws -> Bool {
        try await pool.write { db in
            try db.execute(
                sql: "INSERT OR IGNORE INTO friendship (user, friend, since) VALUES (?, ?, ?), (?, ?, ?)",
                arguments: [user, friend, now, friend, user, now])
            return db.changesCount > 0
        }
    }

    /// A user's friends with their user ids (0 if never seen) and signatures, by address.
    ///
    /// Read on the caller's thread, as ``opening(of:limit:)`` is: the center's actor asks at
    /// every session close and status change, where an `async` read would cost two thread
    /// wake-ups for one indexed query. One statement needs no transaction around it (SQLite
    /// reads it from one snapshot), so none is begun and committed.
    public func friends(of user: String) throws -> [FriendEntry] {
        try pool.unsafeRead { db in try Self.friends(db, of: user) }
    }

    static func friends(_ db: Database, of user: String) throws -> [FriendEntry] {
        let statement = try db.cachedStatement(sql: """
            SELECT f.friend, COALESCE(u.user_id, 0) AS user_id, COALESCE(u.signature, '') AS signature
            FROM friendship f LEFT JOIN user u ON u.address = f.friend
            WHERE f.user = ? ORDER BY f.friend
            """)
        return try Row.fetchAll(statement, arguments: [user]).map {
            FriendEntry(username: $0["friend"], userID: $0["user_id"], signature: $0["signature"])
        }
    }

    /// What a session needs when it opens, read in one go: the user's friends, its first
    /// `limit` unacknowledged messages and its groups with its cursor in each.
    ///
    /// Synchronous: it runs on the caller's thread (GRDB's `DispatchQueue.sync` on a free
    /// reader), where an `async` read would wake a reader queue's thread and then the caller's
    /// executor again. A WAL read never waits for the writer, and these three indexed queries
    /// take tens of microseconds, less than the two thread wake-ups they save.
    public func opening(of user: String, limit: Int) throws -> SessionOpening {
        try pool.read { db in
            SessionOpening(
                friends: try Self.friends(db, of: user), unread: try Self.pending(db, for: user, after: 0, limit: limit),
                groups: try Self.groups(db, of: user))
        }
    }

    // MARK: - 1:1 messages

    /// Stores a QoS-1 message for `recipient` and records its client id, in one transaction,
    /// unless `(sender, clientMessageID)` was accepted before: then nothing is stored and the
    /// earlier ids are returned. `makeDelivery` builds the stored delivery from the new ids.
    ///
    /// Sends that arrive while a transaction commits are stored together in the next one, so
    /// that a burst costs one commit (and one fsync) per batch, not per message; each is still
    /// stored before its caller returns.
    public func accept(
        sender: String, clientMessageID: String, recipient: String, now: Int64,
        makeDelivery: @escaping @Sendable (_ serverMessageID: Int64, _ time: Int64) -> ChatDelivery
    ) async throws -> AcceptOutcome {
        try await batcher.accept(AcceptRequest(
            sender: sender, clientMessageID: clientMessageID, recipient: recipient, now: now, makeDelivery: makeDelivery))
    }

    /// How many transactions QoS-1 accepts have used so far.
    public var acceptTransactions: Int {
        get async { await batcher.transactions }
    }

    /// One accept, inside a write transaction.
    static func accept(_ request: AcceptRequest, in db: Database) throws -> AcceptOutcome {
        if let row = try Row.fetchOne(
            db.cachedStatement(sql: "SELECT server_msg_id, time FROM sent WHERE sender = ? AND client_msg_id = ?"),
            arguments: [request.sender, request.clientMessageID])
        {
            return .duplicate(serverMessageID: row["server_msg_id"], time: row["time"])
        }
        let id = try Self.nextMessageID(db)
        var encoded = ByteBuffer()
        encoded.writeWireDict(request.makeDelivery(id, request.now).body)
        try db.cachedStatement(sql: "INSERT INTO offline_message (id, recipient, time, delivery) VALUES (?, ?, ?, ?)")
            .execute(arguments: [id, request.recipient, request.now, Data(encoded.readableBytesView)])
        try db.cachedStatement(sql: "INSERT INTO sent (sender, client_msg_id, server_msg_id, time) VALUES (?, ?, ?, ?)")
            .execute(arguments: [request.sender, request.clientMessageID, id, request.now])
        return .stored(serverMessageID: id, time: request.now)
    }

    /// A fresh server message id for a message that is not stored (QoS 0).
    ///
    /// Taken from a block of ``idBlockSize`` ids reserved in one write, so that best-effort
    /// messages cost no SQLite write each. The counter is moved past the block first, so an
    /// id is never given twice, even after a restart (the rest of a block is then skipped).
    /// Ids stay unique, and increase with time among stored (QoS 1) messages; a QoS 0 id may
    /// be lower than a QoS 1 id given after it. It runs on the caller's executor
    /// (`nonisolated(nonsending)`): an id from the block costs the center's actor no hop.
    public nonisolated(nonsending) func allocateMessageID() async throws -> Int64 {
        if let id = reservedMessageID() { return id }
        let block = try await reserveBlock()
        return idBlocks.withLock { blocks in
            // This block replaces any other refilled meanwhile (its rest is skipped, never reused).
            blocks.current = block.lowerBound + 1..<block.upperBound
            return block.lowerBound
        }
    }

    /// The next id of the reserved block, without waiting; nil when the block and the one
    /// reserved ahead are used up (then ``allocateMessageID()`` reserves one). Once half of a
    /// block is used, the next is reserved in the background, so that a steady stream of
    /// best-effort chats finds one ready and never waits on SQLite.
    public func reservedMessageID() -> Int64? {
        let (id, refill) = idBlocks.withLock { blocks -> (Int64?, Bool) in
            if blocks.current.isEmpty, let spare = blocks.spare {
                blocks.current = spare
                blocks.spare = nil
            }
            guard let id = blocks.current.first else { return (nil, false) }
            blocks.current = id + 1..<blocks.current.upperBound
            let refill = blocks.spare == nil && !blocks.refilling && Int64(blocks.current.count) < Self.idBlockSize / 2
            if refill { blocks.refilling = true }
            return (id, refill)
        }
        if refill {
            Task {
                let spare = try? await reserveBlock()
                idBlocks.withLock { blocks in
                    blocks.spare = spare
                    blocks.refilling = false
                }
            }
        }
        return id
    }

    /// Whether the next block of ids is reserved already (for status and tests).
    public var hasSpareIDBlock: Bool { idBlocks.withLock { $0.spare != nil } }

    /// Reserves ``idBlockSize`` ids in one write.
    private func reserveBlock() async throws -> Range<Int64> {
        let last = try await pool.write { db in try Self.nextMessageID(db, count: Self.idBlockSize) }
        return last - Self.idBlockSize + 1..<last + 1
    }

    /// The reserved ids not yet handed out: the block in use, and the next, once reserved.
    private struct IDBlocks {
        var current: Range<Int64> = 0..<0
        var spare: Range<Int64>?
        var refilling = false
    }

    /// Ids reserved at a time for QoS 0 messages.
    public static let idBlockSize: Int64 = 1000

    /// Moves the message counter on by `count` and returns its new value: the last of the
    /// `count` ids reserved.
    static func nextMessageID(_ db: Database, count: Int64 = 1) throws -> Int64 {
        try db.cachedStatement(sql: "INSERT INTO counter (name, value) VALUES ('message', ?) ON CONFLICT(name) DO UPDATE SET value = value + ?")
            .execute(arguments: [count, count])
        return try Int64.fetchOne(db.cachedStatement(sql: "SELECT value FROM counter WHERE name = 'message'")) ?? count
    }

    /// The recipient's unacknowledged messages after server id `after`, in ascending server
    /// order, at most `limit`.
    public func pending(for recipient: String, after: Int64 = 0, limit: Int) async throws -> [ChatDelivery] {
        try await pool.read { db in try Self.pending(db, for: recipient, after: after, limit: limit) }
    }

    static func pending(_ db: Database, for recipient: String, after: Int64, limit: Int) throws -> [ChatDelivery] {
        let statement = try db.cachedStatement(sql: "SELECT delivery FROM offline_message WHERE recipient = ? AND id > ? ORDER BY id LIMIT ?")
        return try Data.fetchAll(statement, arguments: [recipient, after, limit]).map { data in
            try ChatDelivery(body: WireParser.parseBody(ByteBuffer(bytes: data)))
        }
    }

    /// Deletes the recipient's acknowledged messages; returns how many went.
    @discardableResult
    public func acknowledge(_ ids: [Int64], by recipient: String) async throws -> Int {
        guard !ids.isEmpty else { return 0 }
        return try await pool.write { db in
            // One cached statement run per id: no statement to prepare for each batch size.
            let statement = try db.cachedStatement(sql: "DELETE FROM offline_message WHERE recipient = ? AND id = ?")
            var removed = 0
            for id in Set(ids) {
                try statement.execute(arguments: [recipient, id])
                removed += db.changesCount
            }
            return removed
        }
    }

    /// Messages waiting for acknowledgement, all recipients together.
    public func pendingCount() async throws -> Int {
        try await pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM offline_message") ?? 0 }
    }

    /// Forgets client ids older than `before`; a retry after that is a new message.
    @discardableResult
    public func sweepSent(before: Int64) async throws -> Int {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM sent WHERE time < ?", arguments: [before])
            return db.changesCount
        }
    }
}
