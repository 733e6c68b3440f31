/// Presence kept in this process, for the all-in-one mode and tests. Behaves like
/// ``RedisPresenceStore``, TTLs included, with time from an injected clock.
public actor InMemoryPresenceStore: PresenceStore {
    private struct Held {
        var entry: PresenceEntry
        var expiresAt: Int64
    }

    private struct Endpoint {
        var lastHeartbeat: Int64
        var aliveUntil: Int64
    }

    public let domain: String
    private let now: @Sendable () -> Int64
    /// By user name (the part before `@`), like the Redis keys.
    private var held: [String: Held] = [:]
    /// Each endpoint's users by name; like the Redis sets, not expired by TTL (see ``removeEndpoint(_:)``).
    private var endpointUsers: [String: Set<String>] = [:]
    private var endpoints: [String: Endpoint] = [:]

    /// - Parameters:
    ///   - domain: the domain whose users this store holds.
    ///   - now: the clock, in milliseconds; the wall clock by default.
    public init(domain: String, now: @escaping @Sendable () -> Int64 = PresenceClock.wallMilliseconds) {
        self.domain = domain
        self.now = now
    }

    public func setOnline(_ entry: PresenceEntry, ttlSeconds: Int) throws -> PresenceEntry? {
        let name = try PresenceAddress.requireLocalName(of: entry.user, in: self.domain)
        try PresenceAddress.requireValid(ttlSeconds: ttlSeconds)
        try PresenceAddress.requireValid(endpoint: entry.endpoint)
        let now = self.now()
        let previous = self.live(name, at: now)
        if let previous, previous.endpoint != entry.endpoint {
            self.endpointUsers[previous.endpoint]?.remove(name)
        }
        self.held[name] = Held(entry: entry, expiresAt: now + Int64(ttlSeconds) * 1000)
        self.endpointUsers[entry.endpoint, default: []].insert(name)
        guard let previous, previous.session != entry.session else { return nil }
        return previous
    }

    public func setOffline(user: String, session: String) -> Bool {
        guard let name = PresenceAddress.localName(of: user, in: self.domain),
              let current = self.live(name, at: self.now()), current.session == session else {
            return false
        }
        self.held[name] = nil
        self.endpointUsers[current.endpoint]?.remove(name)
        return true
    }

    public func lookup(_ users: [String]) -> [String: PresenceEntry] {
        let now = self.now()
        var found: [String: PresenceEntry] = [:]
        for user in users {
            if let name = PresenceAddress.localName(of: user, in: self.domain), var entry = self.live(name, at: now) {
                entry.user = user
                found[user] = entry
            }
        }
        return found
    }

    public func heartbeat(endpoint: String, users: [String], ttlSeconds: Int) throws {
        try PresenceAddress.requireValid(ttlSeconds: ttlSeconds)
        try PresenceAddress.requireValid(endpoint: endpoint)
        let now = self.now()
        let expiresAt = now + Int64(ttlSeconds) * 1000
        self.endpoints[endpoint] = Endpoint(lastHeartbeat: now, aliveUntil: expiresAt)
        for user in users {
            guard let name = PresenceAddress.localName(of: user, in: self.domain),
                  let current = self.live(name, at: now), current.endpoint == endpoint else { continue }
            self.held[name]?.expiresAt = expiresAt
            self.endpointUsers[endpoint, default: []].insert(name)
        }
        // Expired entries would otherwise stay until their user is looked up again.
        self.held = self.held.filter { $0.value.expiresAt > now }
    }

    public func liveEndpoints(domain: String) -> [String] {
        guard domain.lowercased() == self.domain.lowercased() else { return [] }
        let now = self.now()
        return self.endpoints.filter { $0.value.aliveUntil > now }.keys.sorted()
    }

    public func deadEndpoints(domain: String) -> [String] {
        guard domain.lowercased() == self.domain.lowercased() else { return [] }
        let now = self.now()
        return self.endpoints.filter { $0.value.aliveUntil <= now }.keys.sorted()
    }

    public func onlineCount(domain: String) -> Int {
        self.liveEndpoints(domain: domain).reduce(0) { $0 + (self.endpointUsers[$1]?.count ?? 0) }
    }

    public func removeEndpoint(_ endpoint: String) -> [String] {
        let now = self.now()
        var gone: [String] = []
        for name in self.endpointUsers[endpoint] ?? [] {
            let current = self.live(name, at: now)
            if current?.endpoint == endpoint {
                self.held[name] = nil
                gone.append("\(name)@\(self.domain)")
            } else if current == nil {
                gone.append("\(name)@\(self.domain)")
            }
        }
        self.endpointUsers[endpoint] = nil
        self.endpoints[endpoint] = nil
        return gone.sorted()
    }

    private func live(_ name: String, at now: Int64) -> PresenceEntry? {
        guard let held = self.held[name] else { return nil }
        guard held.expiresAt > now else {
            self.held[name] = nil
            return nil
        }
        return held.entry
    }
}
