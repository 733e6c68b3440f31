import Foundation
import GRDB
import MyIMStorage

/// ``AccountStore`` in the login center's own SQLite file (WAL, through GRDB's pool).
public final class SQLiteAccountStore: AccountStore {
    private let pool: DatabasePool

    /// Opens (creating if needed) the database at `path` and migrates it.
    public init(path: String) throws {
        pool = try SQLiteFile.openPool(path: path, migrator: Self.migrator)
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1 accounts, devices, audit") { db in
            try db.create(table: "account") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("name", .text).notNull()
                t.column("domain", .text).notNull()
                t.column("password_hash", .blob).notNull()
                t.column("salt", .blob).notNull()
                t.column("scrypt_n", .integer).notNull()
                t.column("scrypt_r", .integer).notNull()
                t.column("scrypt_p", .integer).notNull()
                t.column("created", .integer).notNull()
                t.column("last_login", .integer)
                t.column("profile", .text).notNull().defaults(to: "")
                t.uniqueKey(["name", "domain"])
            }
            try db.create(table: "device") { t in
                t.column("account_id", .integer).notNull().references("account", onDelete: .cascade)
                t.column("fingerprint", .text).notNull()
                t.column("first_seen", .integer).notNull()
                t.column("last_seen", .integer).notNull()
                t.column("last_address", .text).notNull()
                t.primaryKey(["account_id", "fingerprint"])
            }
            try db.create(table: "login_audit") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("time", .integer).notNull()
                t.column("account_id", .integer)
                t.column("username", .text).notNull()
                t.column("source", .text).notNull()
                t.column("device", .text)
                t.column("outcome", .text).notNull()
                t.column("code", .integer)
            }
            try db.create(index: "login_audit_by_account", on: "login_audit", columns: ["account_id", "time"])
        }
        return migrator
    }

    public func createAccount(name: String, domain: String, credential: PasswordCredential, now: Int64) async throws -> Account {
        try await pool.write { db in
            if try Row.fetchOne(db, sql: "SELECT 1 FROM account WHERE name = ? AND domain = ?", arguments: [name, domain]) != nil {
                throw AccountStoreError.nameTaken("\(name)@\(domain)")
            }
            try db.execute(
                sql: """
                    INSERT INTO account (name, domain, password_hash, salt, scrypt_n, scrypt_r, scrypt_p, created)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    name, domain, Data(credential.hash), Data(credential.salt), credential.parameters.n,
                    credential.parameters.r, credential.parameters.p, now,
                ])
            return Account(id: db.lastInsertedRowID, name: name, domain: domain, credential: credential, created: now, lastLogin: nil, profile: "")
        }
    }

    public func account(name: String, domain: String) async throws -> Account? {
        try await pool.read { db in
            let statement = try db.cachedStatement(sql: "SELECT * FROM account WHERE name = ? AND domain = ?")
            guard let row = try Row.fetchOne(statement, arguments: [name, domain]) else {
                return nil
            }
            let credential = PasswordCredential(
                hash: Array(row["password_hash"] as Data), salt: Array(row["salt"] as Data),
                parameters: ScryptParameters(n: row["scrypt_n"], r: row["scrypt_r"], p: row["scrypt_p"]))
            return Account(
                id: row["id"], name: row["name"], domain: row["domain"], credential: credential, created: row["created"],
                lastLogin: row["last_login"], profile: row["profile"])
        }
    }

    public func userIDs(names: [String], domain: String) async throws -> [String: Int64] {
        guard !names.isEmpty else { return [:] }
        return try await pool.read { db in
            var found: [String: Int64] = [:]
            // SQLite allows 32,766 parameters; a lookup carries at most 1,000 names.
            for chunk in stride(from: 0, to: names.count, by: 500).map({ names[$0..<min($0 + 500, names.count)] }) {
                let marks = Array(repeating: "?", count: chunk.count).joined(separator: ", ")
                let rows = try Row.fetchCursor(
                    db, sql: "SELECT id, name FROM account WHERE domain = ? AND name IN (\(marks))",
                    arguments: StatementArguments([domain] + Array(chunk)))
                while let row = try rows.next() { found[row["name"]] = row["id"] }
            }
            return found
        }
    }

    public func recordLogin(accountID: Int64, username: String, device: String, source: String, now: Int64) async throws -> Bool {
        try await pool.write { db in
            try db.cachedStatement(sql: "UPDATE account SET last_login = ? WHERE id = ?").execute(arguments: [now, accountID])
            try db.cachedStatement(sql: "UPDATE device SET last_seen = ?, last_address = ? WHERE account_id = ? AND fingerprint = ?")
                .execute(arguments: [now, source, accountID, device])
            let known = db.changesCount > 0
            if !known {
                try db.cachedStatement(
                    sql: "INSERT INTO device (account_id, fingerprint, first_seen, last_seen, last_address) VALUES (?, ?, ?, ?, ?)"
                ).execute(arguments: [accountID, device, now, now, source])
            }
            try Self.insert(
                LoginAuditEntry(
                    time: now, userID: accountID, username: username, source: source, device: device,
                    outcome: known ? .loggedIn : .newDevice),
                into: db)
            return !known
        }
    }

    public func audit(_ entry: LoginAuditEntry) async throws {
        try await pool.write { db in try Self.insert(entry, into: db) }
    }

    private static func insert(_ entry: LoginAuditEntry, into db: Database) throws {
        try db.cachedStatement(
            sql: "INSERT INTO login_audit (time, account_id, username, source, device, outcome, code) VALUES (?, ?, ?, ?, ?, ?, ?)"
        ).execute(arguments: [entry.time, entry.userID, entry.username, entry.source, entry.device, entry.outcome.rawValue, entry.code])
    }

    public func devices(accountID: Int64) async throws -> [String] {
        try await pool.read { db in
            try String.fetchAll(
                db, sql: "SELECT fingerprint FROM device WHERE account_id = ? ORDER BY first_seen, rowid", arguments: [accountID])
        }
    }

    /// The audit, newest last; for tests and operators.
    public func auditLog() async throws -> [LoginAuditEntry] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM login_audit ORDER BY id").map { row in
                LoginAuditEntry(
                    time: row["time"], userID: row["account_id"], username: row["username"], source: row["source"],
                    device: row["device"], outcome: LoginAuditEntry.Outcome(rawValue: row["outcome"]) ?? .refused, code: row["code"])
            }
        }
    }
}
