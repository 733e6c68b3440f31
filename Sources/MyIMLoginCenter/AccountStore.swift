import Foundation

/// An account as the login center stores it.
public struct Account: Sendable, Hashable {
    public var id: Int64
    /// Lower-case user name, without the domain.
    public var name: String
    public var domain: String
    public var credential: PasswordCredential
    /// Milliseconds since 1970.
    public var created: Int64
    public var lastLogin: Int64?
    /// The user's signature / profile text.
    public var profile: String

    public var address: String { "\(name)@\(domain)" }
}

/// One row of the login audit.
public struct LoginAuditEntry: Sendable, Hashable {
    public enum Outcome: String, Sendable {
        case registered, loggedIn = "logged_in", newDevice = "new_device", wrongPassword = "wrong_password"
        case unknownUser = "unknown_user", rateLimited = "rate_limited", refused
    }

    public var time: Int64
    public var userID: Int64?
    /// The address that was tried (as the client sent it, normalised).
    public var username: String
    /// The client's network address.
    public var source: String
    public var device: String?
    public var outcome: Outcome
    public var code: Int?
}

/// Why the store refused a change.
public enum AccountStoreError: Error, Sendable, Equatable {
    case nameTaken(String)
}

/// Where the login center keeps accounts, devices and the audit: SQLite in production
/// (``SQLiteAccountStore``), behind a protocol so that another database can replace it.
public protocol AccountStore: Sendable {
    /// Creates an account; throws ``AccountStoreError/nameTaken(_:)`` if the address exists.
    func createAccount(name: String, domain: String, credential: PasswordCredential, now: Int64) async throws -> Account
    func account(name: String, domain: String) async throws -> Account?
    /// The user ids of those of `names` that have an account in `domain`, by name.
    func userIDs(names: [String], domain: String) async throws -> [String: Int64]
    /// Records a successful login of `username` from `device` at `source`, with its audit entry
    /// (``LoginAuditEntry/Outcome/loggedIn`` or ``LoginAuditEntry/Outcome/newDevice``), in one
    /// transaction; returns whether the account had never used this device before.
    func recordLogin(accountID: Int64, username: String, device: String, source: String, now: Int64) async throws -> Bool
    func audit(_ entry: LoginAuditEntry) async throws
    /// The devices an account has used, oldest first.
    func devices(accountID: Int64) async throws -> [String]
}
