/// Who is online where. Two implementations: ``RedisPresenceStore`` for a cluster and
/// ``InMemoryPresenceStore`` for the all-in-one mode and tests; they behave the same.
///
/// A store serves one domain: users are addresses `name@<domain>`. Entries carry a TTL that
/// endpoints refresh with ``heartbeat(endpoint:users:ttlSeconds:)``, so that a killed endpoint's
/// users go offline by themselves. Each endpoint's users are also kept in a per-endpoint set
/// (ejabberd's per-node session table): when an endpoint is known to be dead — its link dropped,
/// or it appears in ``deadEndpoints(domain:)`` — ``removeEndpoint(_:)`` takes all its users
/// offline at once and says who they were, so that their friends can be told. An endpoint that
/// restarts calls ``removeEndpoint(_:)`` for itself before accepting users (as an ejabberd node
/// cleans its own stale sessions at start-up).
public protocol PresenceStore: Sendable {
    /// Marks `entry.user` online at `entry.endpoint` for `ttlSeconds`, atomically with respect to
    /// concurrent logins of the same user. Returns the previous entry when another session held the
    /// user (a duplicate login: the new session wins, the caller kicks the old one), else `nil`.
    func setOnline(_ entry: PresenceEntry, ttlSeconds: Int) async throws -> PresenceEntry?

    /// Marks `user` offline, but only if `session` still holds it (a stale session's logout after a
    /// newer login is a no-op). Returns whether an entry was removed.
    func setOffline(user: String, session: String) async throws -> Bool

    /// The online entries among `users`, keyed by address; absent users are offline (or of another
    /// domain). One round trip however many users: group fan-out uses it.
    func lookup(_ users: [String]) async throws -> [String: PresenceEntry]

    /// Refreshes the TTL of `endpoint`'s liveness and of those of `users` that `endpoint` still holds,
    /// in one round trip. Users now held by another endpoint are left alone.
    func heartbeat(endpoint: String, users: [String], ttlSeconds: Int) async throws

    /// Endpoints of `domain` whose last heartbeat is younger than its TTL, sorted by name.
    func liveEndpoints(domain: String) async throws -> [String]

    /// Endpoints of `domain` that heartbeat once but whose liveness has expired, and that have not
    /// been removed with ``removeEndpoint(_:)`` yet: candidates for cleanup. Sorted by name.
    func deadEndpoints(domain: String) async throws -> [String]

    /// Users online in `domain`: the members of the live endpoints' user sets.
    func onlineCount(domain: String) async throws -> Int

    /// Takes `endpoint`'s users offline and forgets the endpoint. Returns the addresses of the users
    /// that went offline because of it: those it still held, and those whose entries had already
    /// expired (nobody announced those yet); not those who moved to another endpoint. Sorted.
    func removeEndpoint(_ endpoint: String) async throws -> [String]
}

/// A presence request the store refuses, with a message a person can act on.
public struct PresenceError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Kind: Sendable, Hashable, CustomStringConvertible {
        public let name: String
        private init(_ name: String) { self.name = name }

        /// The user is not an address `name@<this store's domain>`.
        public static let invalidUser = Kind("invalidUser")
        /// A TTL below one second, or an empty endpoint or session.
        public static let invalidArgument = Kind("invalidArgument")
        /// The backing store answered something this code does not understand.
        public static let unexpectedReply = Kind("unexpectedReply")

        public var description: String { self.name }
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { "presence \(self.kind): \(self.message)" }
}

/// Address handling shared by both stores.
enum PresenceAddress {
    /// The name part of `user` if it is `name@domain` with a non-empty name, else `nil`.
    static func localName(of user: String, in domain: String) -> String? {
        guard let at = user.lastIndex(of: "@") else { return nil }
        let name = user[..<at]
        let userDomain = user[user.index(after: at)...]
        guard !name.isEmpty, userDomain.lowercased() == domain.lowercased() else { return nil }
        return String(name)
    }

    static func requireLocalName(of user: String, in domain: String) throws(PresenceError) -> String {
        guard let name = self.localName(of: user, in: domain) else {
            throw PresenceError(.invalidUser, "\"\(user)\" is not an address name@\(domain) of this store's domain")
        }
        return name
    }

    static func requireValid(ttlSeconds: Int) throws(PresenceError) {
        guard ttlSeconds >= 1 else {
            throw PresenceError(.invalidArgument, "a presence TTL must be at least 1 second, got \(ttlSeconds)")
        }
    }

    static func requireValid(endpoint: String) throws(PresenceError) {
        guard !endpoint.isEmpty else {
            throw PresenceError(.invalidArgument, "an endpoint name must not be empty")
        }
    }
}
