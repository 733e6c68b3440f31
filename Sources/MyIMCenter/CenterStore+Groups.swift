import Foundation
import GRDB
import MyIMWire
import NIOCore

/// A group as the center stores it.
public struct StoredGroup: Sendable, Hashable {
    public var id: Int64
    public var name: String
    public var owner: String
    public var created: Int64
    /// The sequence number of the group's latest message; 0 before the first.
    public var maxSeq: Int64
    /// Incremented by every membership change: a cached member list with this version is
    /// the list as it stands.
    public var memberVersion: Int64
}

/// One member of a group.
public struct StoredMember: Sendable, Hashable {
    public enum Role: String, Sendable {
        case owner, member
    }

    public var address: String
    public var role: Role
    /// The group's `maxSeq` when the member joined: nothing at or below it is theirs.
    public var joinedSeq: Int64
    /// Everything up to this sequence number has reached the member (they acknowledged it,
    /// or it was theirs to begin with).
    public var deliveredSeq: Int64
    /// When they joined, ms since 1970.
    public var joined: Int64
}

/// What a QoS-1 group post did.
public enum GroupPostOutcome: Sendable, Hashable {
    /// `memberVersion`: the group's membership version when the message was sequenced.
    case stored(serverMessageID: Int64, time: Int64, seq: Int64, memberVersion: Int64)
    /// A retry of an earlier send: nothing stored, the earlier ids.
    case duplicate(serverMessageID: Int64, time: Int64, seq: Int64?)
    /// The sender is not (or no longer) a member.
    case notMember
}

/// What a member leaving (or being removed) did to the group.
public struct GroupDeparture: Sendable, Hashable {
    /// The member was there and is gone.
    public var removed: Bool
    /// The new owner, when the owner left.
    public var newOwner: String?
    /// The last member left: the group and its messages are gone.
    public var groupDeleted: Bool
}

/// Groups (seed 004's model): the group with its sequence counter, members with their
/// joined-at sequence and delivered cursor, and each message stored once per group, apart
/// from 1:1 offline messages.
extension CenterStore {
    static func registerGroupMigration(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v2 groups") { db in
            try db.create(table: "group_chat") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("name", .text).notNull()
                t.column("owner", .text).notNull()
                t.column("created", .integer).notNull()
                t.column("max_seq", .integer).notNull().defaults(to: 0)
                t.column("member_version", .integer).notNull().defaults(to: 0)
            }
            try db.create(table: "group_member") { t in
                t.column("group_id", .integer).notNull().references("group_chat", onDelete: .cascade)
                t.column("member", .text).notNull()
                t.column("role", .text).notNull()
                t.column("joined_seq", .integer).notNull()
                t.column("delivered_seq", .integer).notNull()
                t.column("joined", .integer).notNull()
                t.primaryKey(["group_id", "member"])
            }
            try db.create(index: "group_member_by_member", on: "group_member", columns: ["member"])
            // One row per group message, whoever its members: deleted once every member's
            // cursor has passed it, or when it expires.
            try db.create(table: "group_message") { t in
                t.column("group_id", .integer).notNull().references("group_chat", onDelete: .cascade)
                t.column("seq", .integer).notNull()
                t.column("server_msg_id", .integer).notNull()
                t.column("time", .integer).notNull()
                t.column("delivery", .blob).notNull()
                t.primaryKey(["group_id", "seq"])
            }
            try db.create(index: "group_message_by_time", on: "group_message", columns: ["time"])
            // A retried group send answers with its sequence number too.
            try db.alter(table: "sent") { t in
                t.add(column: "group_id", .integer)
                t.add(column: "seq", .integer)
            }
        }
    }

    // MARK: - Groups and members

    /// Creates a group owned by `owner` with `members` (the owner not among them), all
    /// joined at sequence 0.
    public func createGroup(name: String, owner: String, members: [String], now: Int64) async throws -> StoredGroup {
        try await pool.write { db in
            try db.execute(sql: "INSERT INTO group_chat (name, owner, created) VALUES (?, ?, ?)", arguments: [name, owner, now])
            let id = db.lastInsertedRowID
            try Self.insertMember(db, group: id, member: owner, role: .owner, seq: 0, now: now)
            for member in members where member != owner {
                try Self.insertMember(db, group: id, member: member, role: .member, seq: 0, now: now)
            }
            return StoredGroup(id: id, name: name, owner: owner, created: now, maxSeq: 0, memberVersion: 0)
        }
    }

    public func group(_ id: Int64) async throws -> StoredGroup? {
        try await pool.read { db in try Self.group(db, id) }
    }

    /// The group and its members, read together (one consistent snapshot).
    public func groupWithMembers(_ id: Int64) async throws -> (group: StoredGroup, members: [StoredMember])? {
        try await pool.read { db in
            guard let group = try Self.group(db, id) else { return nil }
            let members = try Row.fetchAll(db, sql: "SELECT * FROM group_member WHERE group_id = ?", arguments: [id]).map(Self.member)
            return (group, members)
        }
    }

    public func members(of group: Int64) async throws -> [StoredMember] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM group_member WHERE group_id = ? ORDER BY member", arguments: [group]).map(Self.member)
        }
    }

    /// The groups `user` is a member of, with the user's membership, by group id.
    public func groups(of user: String) async throws -> [(group: StoredGroup, membership: StoredMember)] {
        try await pool.read { db in try Self.groups(db, of: user) }
    }

    static func groups(_ db: Database, of user: String) throws -> [(group: StoredGroup, membership: StoredMember)] {
        let statement = try db.cachedStatement(sql: """
            SELECT g.id, g.name, g.owner, g.created, g.max_seq, g.member_version, m.member, m.role, m.joined_seq, m.delivered_seq, m.joined
            FROM group_member m JOIN group_chat g ON g.id = m.group_id WHERE m.member = ? ORDER BY g.id
            """)
        return try Row.fetchAll(statement, arguments: [user]).map { row in (Self.group(row), Self.member(row)) }
    }

    /// Adds `member` at the group's current sequence (nothing sent before is theirs).
    /// Returns that joined-at sequence, or nil when the group is gone.
    public func addMember(_ member: String, to group: Int64, now: Int64) async throws -> Int64? {
        try await pool.write { db in
            guard let current = try Self.group(db, group) else { return nil }
            try Self.insertMember(db, group: group, member: member, role: .member, seq: current.maxSeq, now: now)
            try db.execute(sql: "UPDATE group_chat SET member_version = member_version + 1 WHERE id = ?", arguments: [group])
            return current.maxSeq
        }
    }

    /// Removes `member`. When the owner goes, the longest-standing member owns the group;
    /// when the last member goes, the group and its messages go too.
    public func removeMember(_ member: String, from group: Int64) async throws -> GroupDeparture {
        try await pool.write { db in
            guard let current = try Self.group(db, group) else { return GroupDeparture(removed: false, groupDeleted: false) }
            try db.execute(sql: "DELETE FROM group_member WHERE group_id = ? AND member = ?", arguments: [group, member])
            guard db.changesCount > 0 else { return GroupDeparture(removed: false, groupDeleted: false) }
            try db.execute(sql: "UPDATE group_chat SET member_version = member_version + 1 WHERE id = ?", arguments: [group])
            guard let heir = try String.fetchOne(
                db, sql: "SELECT member FROM group_member WHERE group_id = ? ORDER BY joined, member LIMIT 1", arguments: [group])
            else {
                try db.execute(sql: "DELETE FROM group_message WHERE group_id = ?", arguments: [group])
                try db.execute(sql: "DELETE FROM group_chat WHERE id = ?", arguments: [group])
                return GroupDeparture(removed: true, groupDeleted: true)
            }
            guard current.owner == member else { return GroupDeparture(removed: true, groupDeleted: false) }
            try db.execute(sql: "UPDATE group_chat SET owner = ? WHERE id = ?", arguments: [heir, group])
            try db.execute(sql: "UPDATE group_member SET role = 'owner' WHERE group_id = ? AND member = ?", arguments: [group, heir])
            return GroupDeparture(removed: true, newOwner: heir, groupDeleted: false)
        }
    }

    // MARK: - Group messages

    /// Stores a QoS-1 group message under the group's next sequence number and records its
    /// client id, in one transaction, unless `(sender, clientMessageID)` was accepted before.
    /// The sender's own cursor moves past it when the sender was caught up.
    public func post(
        to group: Int64, sender: String, clientMessageID: String, now: Int64,
        makeDelivery: @Sendable (_ serverMessageID: Int64, _ time: Int64, _ seq: Int64) -> ChatDelivery
    ) async throws -> GroupPostOutcome {
        try await pool.write { db in
            if let row = try Row.fetchOne(
                db, sql: "SELECT server_msg_id, time, seq FROM sent WHERE sender = ? AND client_msg_id = ?",
                arguments: [sender, clientMessageID])
            {
                return .duplicate(serverMessageID: row["server_msg_id"], time: row["time"], seq: row["seq"])
            }
            guard try Row.fetchOne(
                db, sql: "SELECT 1 FROM group_member WHERE group_id = ? AND member = ?", arguments: [group, sender]) != nil
            else { return .notMember }
            try db.execute(sql: "UPDATE group_chat SET max_seq = max_seq + 1 WHERE id = ?", arguments: [group])
            guard let sequenced = try Row.fetchOne(db, sql: "SELECT max_seq, member_version FROM group_chat WHERE id = ?", arguments: [group])
            else { return .notMember }
            let seq: Int64 = sequenced["max_seq"]
            let id = try Self.nextMessageID(db)
            var encoded = ByteBuffer()
            encoded.writeWireDict(makeDelivery(id, now, seq).body)
            try db.execute(
                sql: "INSERT INTO group_message (group_id, seq, server_msg_id, time, delivery) VALUES (?, ?, ?, ?, ?)",
                arguments: [group, seq, id, now, Data(encoded.readableBytesView)])
            try db.execute(
                sql: "INSERT INTO sent (sender, client_msg_id, server_msg_id, time, group_id, seq) VALUES (?, ?, ?, ?, ?, ?)",
                arguments: [sender, clientMessageID, id, now, group, seq])
            try db.execute(
                sql: "UPDATE group_member SET delivered_seq = ? WHERE group_id = ? AND member = ? AND delivered_seq = ?",
                arguments: [seq, group, sender, seq - 1])
            return .stored(serverMessageID: id, time: now, seq: seq, memberVersion: sequenced["member_version"])
        }
    }

    /// The group's stored messages after sequence `after`, ascending, at most `limit`.
    public func groupMessages(_ group: Int64, after: Int64, limit: Int) async throws -> [ChatDelivery] {
        let rows = try await pool.read { db in
            try Data.fetchAll(
                db, sql: "SELECT delivery FROM group_message WHERE group_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                arguments: [group, after, limit])
        }
        return try rows.map { data in try ChatDelivery(body: WireParser.parseBody(ByteBuffer(bytes: data))) }
    }

    /// Moves `member`'s delivered cursors forward (never back, never past the group's last
    /// message). Cursors for groups the member is not in change nothing.
    public func advanceCursors(_ cursors: [GroupCursor], of member: String) async throws {
        guard !cursors.isEmpty else { return }
        try await pool.write { db in
            for cursor in cursors {
                try db.execute(
                    sql: """
                        UPDATE group_member SET delivered_seq = MIN(?, (SELECT max_seq FROM group_chat WHERE id = ?))
                        WHERE group_id = ? AND member = ? AND delivered_seq < ?
                        """,
                    arguments: [cursor.seq, cursor.groupID, cursor.groupID, member, cursor.seq])
            }
        }
    }

    /// Deletes every group message that all current members have received, and every one
    /// older than `expiredBefore`; returns how many went.
    @discardableResult
    public func sweepGroupMessages(expiredBefore: Int64) async throws -> Int {
        try await pool.write { db in
            try db.execute(
                sql: """
                    DELETE FROM group_message WHERE time < ? OR seq <= COALESCE(
                        (SELECT MIN(delivered_seq) FROM group_member m WHERE m.group_id = group_message.group_id), seq)
                    """,
                arguments: [expiredBefore])
            return db.changesCount
        }
    }

    /// Group messages stored, all groups together.
    public func groupMessageCount() async throws -> Int {
        try await pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM group_message") ?? 0 }
    }

    // MARK: - Rows

    private static func insertMember(_ db: Database, group: Int64, member: String, role: StoredMember.Role, seq: Int64, now: Int64) throws {
        try db.execute(
            sql: "INSERT INTO group_member (group_id, member, role, joined_seq, delivered_seq, joined) VALUES (?, ?, ?, ?, ?, ?)",
            arguments: [group, member, role.rawValue, seq, seq, now])
    }

    private static func group(_ db: Database, _ id: Int64) throws -> StoredGroup? {
        try Row.fetchOne(db, sql: "SELECT * FROM group_chat WHERE id = ?", arguments: [id]).map(group)
    }

    private static func group(_ row: Row) -> StoredGroup {
        StoredGroup(
            id: row["id"], name: row["name"], owner: row["owner"], created: row["created"], maxSeq: row["max_seq"],
            memberVersion: row["member_version"])
    }

    private static func member(_ row: Row) -> StoredMember {
        StoredMember(
            address: row["member"], role: StoredMember.Role(rawValue: row["role"]) ?? .member, joinedSeq: row["joined_seq"],
            deliveredSeq: row["delivered_seq"], joined: row["joined"])
    }
}
