import MyIMRedis

/// Presence in Redis, readable with redis-cli.
///
/// ## Key schema
///
/// `<domain>` is the store's domain (e.g. `alpha.example`), `<name>` the part of a user's address
/// before `@`, `<endpoint>` an endpoint's node name from the topology. TTLs are the `ttlSeconds`
/// given to `setOnline` and `heartbeat`.
///
/// | Key | Type | Contents | Expires | Written by |
/// |-----|------|----------|---------|------------|
/// | `myim:<domain>:presence:<name>` | HASH | `endpoint`, `session`, `device`, `since` (ms since 1970) | after the TTL, unless the endpoint's heartbeat refreshes it | `setOnline` (Lua compare-and-set); deleted by `setOffline` (only by the holding session) and `removeEndpoint` |
/// | `myim:<domain>:endpoint:<endpoint>:users` | SET | `<name>`s of the users online on the endpoint (the per-node cleanup set) | never; deleted by `removeEndpoint` | `setOnline` adds (and removes the user from its previous endpoint's set), `setOffline` removes, `heartbeat` re-adds held users |
/// | `myim:<domain>:endpoint:<endpoint>:alive` | STRING | last heartbeat, ms since 1970 | after the TTL: the endpoint is live while this key exists | `heartbeat`; deleted by `removeEndpoint` |
/// | `myim:<domain>:endpoints` | ZSET | endpoint names, scored by last heartbeat (ms since 1970) | never; members removed by `removeEndpoint` | `heartbeat` |
///
/// The online count is derived, not stored: the sum of `SCARD` over the live endpoints' user sets
/// (a counter would drift, since TTL expiry cannot decrement it).
///
/// ## redis-cli walkthrough
///
/// ```
/// redis-cli HGETALL myim:alpha.example:presence:alice       # endpoint, session, device, since
/// redis-cli TTL myim:alpha.example:presence:alice           # seconds until alice goes offline without a heartbeat
/// redis-cli ZRANGE myim:alpha.example:endpoints 0 -1 WITHSCORES   # known endpoints, last heartbeat
/// redis-cli EXISTS myim:alpha.example:endpoint:ep1:alive    # 1 while ep1 is live
/// redis-cli SMEMBERS myim:alpha.example:endpoint:ep1:users  # who is on ep1
/// redis-cli --scan --pattern 'myim:alpha.example:presence:*'   # everyone online (SCAN, not KEYS)
/// ```
///
/// A killed endpoint stops heartbeating: its `:alive` key expires after one TTL (it leaves
/// ``liveEndpoints(domain:)`` and appears in ``deadEndpoints(domain:)``), and its users' hashes
/// expire after at most one TTL too; ``removeEndpoint(_:)`` then deletes its set and reports its users.
///
/// Round trips: every method costs one (``heartbeat(endpoint:users:ttlSeconds:)`` and
/// ``lookup(_:)`` pipeline all their commands in one write).
public struct RedisPresenceStore: PresenceStore {
    public let connection: any RedisCommands
    public let domain: String
    private let now: @Sendable () -> Int64

    /// Users per `EVAL` in a heartbeat, so that one script never blocks Redis for long.
    private static let heartbeatChunk = 500

    /// - Parameters:
    ///   - connection: the Redis connection (shared; commands from many tasks are pipelined on
    ///     it): a ``RedisClient`` in the roles, so that a Redis restart is survived.
    ///   - domain: the domain whose users this store holds; also the key prefix `myim:<domain>:`.
    ///   - now: the clock for heartbeat timestamps, in milliseconds; the wall clock by default.
    ///     (TTLs themselves are kept by Redis's clock.)
    public init(connection: any RedisCommands, domain: String, now: @escaping @Sendable () -> Int64 = PresenceClock.wallMilliseconds) {
        self.connection = connection
        self.domain = domain
        self.now = now
    }

    public func setOnline(_ entry: PresenceEntry, ttlSeconds: Int) async throws -> PresenceEntry? {
        let name = try PresenceAddress.requireLocalName(of: entry.user, in: self.domain)
        try PresenceAddress.requireValid(ttlSeconds: ttlSeconds)
        try PresenceAddress.requireValid(endpoint: entry.endpoint)
        let reply = try await self.eval(
            RedisPresenceScripts.setOnline,
            keys: [self.presenceKey(name), self.usersKey(entry.endpoint)],
            arguments: [Self.prefix(self.domain), name, entry.endpoint, entry.session, entry.device, String(entry.since), String(ttlSeconds)]
        )
        if reply.isNull {
            return nil
        }
        return try Self.entry(user: entry.user, from: reply)
    }

    public func setOffline(user: String, session: String) async throws -> Bool {
        guard let name = PresenceAddress.localName(of: user, in: self.domain) else { return false }
        let reply = try await self.eval(
            RedisPresenceScripts.setOffline,
            keys: [self.presenceKey(name)],
            arguments: [Self.prefix(self.domain), name, session]
        )
        return reply.int == 1
    }

    public func lookup(_ users: [String]) async throws -> [String: PresenceEntry] {
        var asked: [(user: String, command: [String])] = []
        asked.reserveCapacity(users.count)
        for user in users {
            if let name = PresenceAddress.localName(of: user, in: self.domain) {
                asked.append((user, ["HMGET", self.presenceKey(name), "endpoint", "session", "device", "since"]))
            }
        }
        guard !asked.isEmpty else { return [:] }
        let replies = try await self.connection.pipeline(asked.map(\.command))
        var found: [String: PresenceEntry] = [:]
        for (index, reply) in replies.enumerated() {
            if let entry = try Self.entry(user: asked[index].user, from: reply) {
                found[asked[index].user] = entry
            }
        }
        return found
    }

    public func heartbeat(endpoint: String, users: [String], ttlSeconds: Int) async throws {
        try PresenceAddress.requireValid(ttlSeconds: ttlSeconds)
        try PresenceAddress.requireValid(endpoint: endpoint)
        let now = String(self.now())
        let prefix = Self.prefix(self.domain)
        var commands: [[String]] = [
            ["ZADD", prefix + "endpoints", now, endpoint],
            ["SET", self.aliveKey(endpoint), now, "EX", String(ttlSeconds)],
        ]
        let names = users.compactMap { PresenceAddress.localName(of: $0, in: self.domain) }
        var start = 0
        while start < names.count {
            let chunk = names[start..<min(start + Self.heartbeatChunk, names.count)]
            commands.append(["EVAL", RedisPresenceScripts.heartbeatUsers, "0", prefix, endpoint, String(ttlSeconds)] + chunk)
            start += Self.heartbeatChunk
        }
        for reply in try await self.connection.pipeline(commands) {
            if case .error(let message) = reply {
                throw RedisError(.server, message)
            }
        }
    }

    public func liveEndpoints(domain: String) async throws -> [String] {
        try await self.endpoints(domain: domain, wanted: "live")
    }

    public func deadEndpoints(domain: String) async throws -> [String] {
        try await self.endpoints(domain: domain, wanted: "dead")
    }

    public func onlineCount(domain: String) async throws -> Int {
        let reply = try await self.eval(RedisPresenceScripts.onlineCount, keys: [], arguments: [Self.prefix(domain)])
        guard let count = reply.int else {
            throw PresenceError(.unexpectedReply, "online count script returned \(reply)")
        }
        return Int(count)
    }

    public func removeEndpoint(_ endpoint: String) async throws -> [String] {
        let reply = try await self.eval(RedisPresenceScripts.removeEndpoint, keys: [], arguments: [Self.prefix(self.domain), endpoint])
        return try Self.strings(reply).map { "\($0)@\(self.domain)" }.sorted()
    }

    // MARK: - Keys

    static func prefix(_ domain: String) -> String { "myim:\(domain):" }
    func presenceKey(_ name: String) -> String { Self.prefix(self.domain) + "presence:" + name }
    func usersKey(_ endpoint: String) -> String { Self.prefix(self.domain) + "endpoint:" + endpoint + ":users" }
    func aliveKey(_ endpoint: String) -> String { Self.prefix(self.domain) + "endpoint:" + endpoint + ":alive" }

    // MARK: - Helpers

    private func eval(_ script: String, keys: [String], arguments: [String]) async throws -> RedisValue {
        try await self.connection.send(["EVAL", script, String(keys.count)] + keys + arguments)
    }

    private func endpoints(domain: String, wanted: String) async throws -> [String] {
        let reply = try await self.eval(RedisPresenceScripts.endpoints, keys: [], arguments: [Self.prefix(domain), wanted])
        return try Self.strings(reply).sorted()
    }

    /// An entry from an `HMGET endpoint session device since` reply; `nil` if the user is offline.
    private static func entry(user: String, from reply: RedisValue) throws -> PresenceEntry? {
        if case .error(let message) = reply {
            throw RedisError(.server, message)
        }
        guard let fields = reply.array, fields.count == 4 else {
            throw PresenceError(.unexpectedReply, "presence of \(user): expected 4 fields, got \(reply)")
        }
        guard let endpoint = fields[0].string, let session = fields[1].string else {
            return nil
        }
        return PresenceEntry(user: user, endpoint: endpoint, session: session, device: fields[2].string ?? "", since: fields[3].int ?? 0)
    }

    private static func strings(_ reply: RedisValue) throws -> [String] {
        guard let elements = reply.array else {
            throw PresenceError(.unexpectedReply, "expected an array of names, got \(reply)")
        }
        return try elements.map { element in
            guard let text = element.string else {
                throw PresenceError(.unexpectedReply, "expected a name, got \(element)")
            }
            return text
        }
    }
}
