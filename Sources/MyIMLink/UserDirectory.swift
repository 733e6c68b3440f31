import Synchronization

/// Who has an account: the login center's directory, as a center sees it.
///
/// A center knows the users who have signed in to it; for anyone else (a message to a user
/// who has never connected, a friend request, a group member) it asks the directory. No
/// process opens another's database: a center reaches the login center's accounts through
/// ``DirectoryLookup`` over a link (`DirectoryLink` in MyIMCenter), or in-process in the
/// all-in-one mode. The directory also carries the login center's ``AccountNotice``s (a login
/// from a new device) to the center, which alerts the user's online session.
public protocol UserDirectory: Sendable {
    /// The user ids of those of `users` (lower-case `name@domain` addresses of the center's
    /// domain) that have an account; an address left out has none.
    func lookup(_ users: [String]) async throws(DirectoryError) -> [String: Int64]

    /// Keeps the directory connected and hands every account notice to `notices`, until the
    /// task is cancelled.
    func run(notices: @escaping @Sendable (AccountNotice) async -> Void) async
}

/// The directory cannot answer now (the login center is unreachable or too slow); the
/// request that needed it can be retried.
public struct DirectoryError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// An in-memory directory of fixed accounts: the twin of the login center's for unit tests.
public final class StaticDirectory: UserDirectory {
    private let users: Mutex<[String: Int64]>
    private let noticeSinks = Mutex<[@Sendable (AccountNotice) async -> Void]>([])

    /// `users`: address → user id.
    public init(_ users: [String: Int64]) {
        self.users = Mutex(users)
    }

    /// Adds an account (a registration, in a test).
    public func add(_ user: String, id: Int64) {
        users.withLock { $0[user] = id }
    }

    public func lookup(_ users: [String]) async throws(DirectoryError) -> [String: Int64] {
        let known = self.users.withLock { $0 }
        return Dictionary(uniqueKeysWithValues: Set(users).compactMap { user in known[user].map { (user, $0) } })
    }

    public func run(notices: @escaping @Sendable (AccountNotice) async -> Void) async {
        noticeSinks.withLock { $0.append(notices) }
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(3600))
        }
    }

    /// Hands `notice` to every running consumer, as a login center would.
    public func publish(_ notice: AccountNotice) async {
        for sink in noticeSinks.withLock({ $0 }) { await sink(notice) }
    }
}
