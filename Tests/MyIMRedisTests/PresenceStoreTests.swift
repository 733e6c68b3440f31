import MyIMTestSupport
import MyIMPresence
import MyIMRedis
import Synchronization
import Testing

/// A clock the in-memory store reads and the tests move.
final class ManualClock: Sendable {
    private let milliseconds = Mutex<Int64>(1_700_000_000_000)
    func now() -> Int64 { self.milliseconds.withLock { $0 } }
    func advance(seconds: Double) { self.milliseconds.withLock { $0 += Int64(seconds * 1000) } }
}

enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case memory, redis
    var testDescription: String { self.rawValue }
}

/// One store on a fresh domain, and a way to let time pass for it.
struct PresenceFixture: Sendable {
    let store: any PresenceStore
    let domain: String
    let advance: @Sendable (Double) async throws -> Void
    let close: @Sendable () async -> Void

    static func make(_ kind: StoreKind) async throws -> PresenceFixture {
        let domain = uniqueName("test") + ".example"
        switch kind {
        case .memory:
            let clock = ManualClock()
            return PresenceFixture(
                store: InMemoryPresenceStore(domain: domain, now: { clock.now() }),
                domain: domain,
                advance: { clock.advance(seconds: $0) },
                close: {}
            )
        case .redis:
            let connection = try await RedisTestServer.current.connect()
            return PresenceFixture(
                store: RedisPresenceStore(connection: connection, domain: domain),
                domain: domain,
                advance: { try await Task.sleep(for: .milliseconds(Int($0 * 1000))) },
                close: { try? await connection.close() }
            )
        }
    }

    func user(_ name: String) -> String { "\(name)@\(self.domain)" }

    func entry(_ name: String, endpoint: String = "ep1", session: String, device: String = "cli") -> PresenceEntry {
        PresenceEntry(user: self.user(name), endpoint: endpoint, session: session, device: device, since: 1_700_000_000_123)
    }
}

@Suite("Presence stores, in memory and in Redis", .redisServer)
struct PresenceStoreTests {
    @Test(arguments: StoreKind.allCases)
    func onlineLookupOffline(_ kind: StoreKind) async throws {
        let fixture = try await PresenceFixture.make(kind)
        let store = fixture.store
        let alice = fixture.entry("alice", session: "s1", device: "phone")
        #expect(try await store.setOnline(alice, ttlSeconds: 60) == nil)

        let found = try await store.lookup([fixture.user("alice"), fixture.user("bob"), "alice@elsewhere.example", "nobody"])
        #expect(found == [fixture.user("alice"): alice])

        #expect(try await store.setOffline(user: fixture.user("alice"), session: "s1"))
        #expect(try await store.lookup([fixture.user("alice")]).isEmpty)
        #expect(try await store.setOffline(user: fixture.user("alice"), session: "s1") == false)
        await fixture.close()
    }

    @Test(arguments: StoreKind.allCases)
    func duplicateLoginReturnsThePreviousEntryAndTheNewerWins(_ kind: StoreKind) async throws {
        let fixture = try await PresenceFixture.make(kind)
        let store = fixture.store
        let first = fixture.entry("alice", endpoint: "ep1", session: "s1")
        let second = fixture.entry("alice", endpoint: "ep2", session: "s2", device: "laptop")
        #expect(try await store.setOnline(first, ttlSeconds: 60) == nil)
        #expect(try await store.setOnline(second, ttlSeconds: 60) == first)
        #expect(try await store.lookup([fixture.user("alice")])[fixture.user("alice")] == second)

        // The same session logging in again is not a duplicate.
        #expect(try await store.setOnline(second, ttlSeconds: 60) == nil)

        // The stale session's logout is a no-op; the newer session's counts.
        #expect(try await store.setOffline(user: fixture.user("alice"), session: "s1") == false)
        #expect(try await store.lookup([fixture.user("alice")])[fixture.user("alice")] == second)

        // Cleaning up the old endpoint does not take alice offline: she moved.
        try await store.heartbeat(endpoint: "ep1", users: [], ttlSeconds: 60)
        try await store.heartbeat(endpoint: "ep2", users: [fixture.user("alice")], ttlSeconds: 60)
        #expect(try await store.onlineCount(domain: fixture.domain) == 1)
        #expect(try await store.removeEndpoint("ep1") == [])
        #expect(try await store.lookup([fixture.user("alice")])[fixture.user("alice")] == second)

        #expect(try await store.setOffline(user: fixture.user("alice"), session: "s2"))
        #expect(try await store.lookup([fixture.user("alice")]).isEmpty)
        await fixture.close()
    }

    @Test(arguments: StoreKind.allCases)
    func concurrentLoginsOfOneUserLeaveOneWinnerAndAChainOfPredecessors(_ kind: StoreKind) async throws {
        let fixture = try await PresenceFixture.make(kind)
        let store = fixture.store
        let sessions = (0..<40).map { "s\($0)" }
        let previous = try await withThrowingTaskGroup(of: PresenceEntry?.self) { group in
            for session in sessions {
                group.addTask {
                    try await store.setOnline(fixture.entry("alice", endpoint: "ep\(session.count)", session: session), ttlSeconds: 60)
                }
            }
            return try await group.reduce(into: [PresenceEntry?]()) { $0.append($1) }
        }
        // Compare-and-set: exactly one login found nobody, every other found a distinct predecessor,
        // and the winner is the one session nobody replaced.
        #expect(previous.filter { $0 == nil }.count == 1)
        let replaced = Set(previous.compactMap { $0?.session })
        #expect(replaced.count == sessions.count - 1)
        let winner = try #require(try await store.lookup([fixture.user("alice")])[fixture.user("alice")])
        #expect(Set(sessions).subtracting(replaced) == [winner.session])
        await fixture.close()
    }

    @Test(.timeLimit(.minutes(1)), arguments: StoreKind.allCases)
    func entriesExpireAfterTheirTTL(_ kind: StoreKind) async throws {
        let fixture = try await PresenceFixture.make(kind)
        let store = fixture.store
        _ = try await store.setOnline(fixture.entry("alice", session: "s1"), ttlSeconds: 1)
        #expect(try await store.lookup([fixture.user("alice")]).count == 1)
        try await fixture.advance(1.5)
        #expect(try await store.lookup([fixture.user("alice")]).isEmpty)
        #expect(try await store.setOffline(user: fixture.user("alice"), session: "s1") == false)
        // A new login after expiry is not a duplicate.
        #expect(try await store.setOnline(fixture.entry("alice", session: "s2"), ttlSeconds: 60) == nil)
        await fixture.close()
    }

    @Test(.timeLimit(.minutes(1)), arguments: StoreKind.allCases)
    func heartbeatsKeepEntriesAndEndpointsAlive(_ kind: StoreKind) async throws {
        let fixture = try await PresenceFixture.make(kind)
        let store = fixture.store
        let users = [fixture.user("alice"), fixture.user("bob")]
        try await store.heartbeat(endpoint: "ep1", users: [], ttlSeconds: 2)
        for user in users {
            _ = try await store.setOnline(PresenceEntry(user: user, endpoint: "ep1", session: "s-" + user, device: "d", since: 1), ttlSeconds: 2)
        }
        for _ in 0..<3 {
            try await fixture.advance(1)
            try await store.heartbeat(endpoint: "ep1", users: users, ttlSeconds: 2)
        }
        // 3 s after login with a 2 s TTL: alive only thanks to the heartbeats.
        #expect(try await store.lookup(users).count == 2)
        #expect(try await store.liveEndpoints(domain: fixture.domain) == ["ep1"])
        #expect(try await store.deadEndpoints(domain: fixture.domain) == [])
        #expect(try await store.onlineCount(domain: fixture.domain) == 2)

        // The endpoint dies: no more heartbeats.
        try await fixture.advance(2.5)
        #expect(try await store.lookup(users).isEmpty)
        #expect(try await store.liveEndpoints(domain: fixture.domain) == [])
        #expect(try await store.deadEndpoints(domain: fixture.domain) == ["ep1"])
        #expect(try await store.onlineCount(domain: fixture.domain) == 0)
        // Cleanup reports the users whose entries expired unannounced, and forgets the endpoint.
        #expect(try await store.removeEndpoint("ep1") == users.sorted())
        #expect(try await store.deadEndpoints(domain: fixture.domain) == [])
        await fixture.close()
    }

    @Test(arguments: StoreKind.allCases)
    func removeEndpointClearsExactlyThatEndpointsUsers(_ kind: StoreKind) async throws {
        let fixture = try await PresenceFixture.make(kind)
        let store = fixture.store
        try await store.heartbeat(endpoint: "ep1", users: [], ttlSeconds: 60)
        try await store.heartbeat(endpoint: "ep2", users: [], ttlSeconds: 60)
        for (name, endpoint) in [("alice", "ep1"), ("bob", "ep1"), ("carol", "ep2"), ("dave", "ep2")] {
            _ = try await store.setOnline(fixture.entry(name, endpoint: endpoint, session: "s-\(name)"), ttlSeconds: 60)
        }
        // dave logs out normally; he must not be reported again.
        #expect(try await store.setOffline(user: fixture.user("dave"), session: "s-dave"))
        #expect(try await store.onlineCount(domain: fixture.domain) == 3)

        #expect(try await store.removeEndpoint("ep1") == [fixture.user("alice"), fixture.user("bob")])
        let left = try await store.lookup(["alice", "bob", "carol", "dave"].map(fixture.user))
        #expect(Array(left.keys) == [fixture.user("carol")])
        #expect(try await store.liveEndpoints(domain: fixture.domain) == ["ep2"])
        #expect(try await store.onlineCount(domain: fixture.domain) == 1)
        #expect(try await store.removeEndpoint("ep1") == [])
        #expect(try await store.liveEndpoints(domain: "other.example") == [])
        await fixture.close()
    }

    @Test(arguments: StoreKind.allCases)
    func rejectsWhatItCannotStore(_ kind: StoreKind) async throws {
        let fixture = try await PresenceFixture.make(kind)
        let store = fixture.store
        var foreign = fixture.entry("alice", session: "s1")
        foreign.user = "alice@elsewhere.example"
        await #expect { try await store.setOnline(foreign, ttlSeconds: 60) } throws: { ($0 as? PresenceError)?.kind == .invalidUser }
        foreign.user = "alice"
        await #expect { try await store.setOnline(foreign, ttlSeconds: 60) } throws: { ($0 as? PresenceError)?.kind == .invalidUser }
        await #expect { try await store.setOnline(fixture.entry("alice", session: "s1"), ttlSeconds: 0) } throws: {
            ($0 as? PresenceError)?.kind == .invalidArgument
        }
        await #expect { try await store.heartbeat(endpoint: "", users: [], ttlSeconds: 5) } throws: {
            ($0 as? PresenceError)?.kind == .invalidArgument
        }
        #expect(try await store.setOffline(user: "alice@elsewhere.example", session: "s1") == false)
        await fixture.close()
    }

    @Test(arguments: StoreKind.allCases)
    func lookupOfAThousandUsers(_ kind: StoreKind) async throws {
        let fixture = try await PresenceFixture.make(kind)
        let store = fixture.store
        let users = (0..<1000).map { fixture.user("user\($0)") }
        for user in users where user.hashValue.isMultiple(of: 2) || user == users[0] {
            _ = try await store.setOnline(PresenceEntry(user: user, endpoint: "ep1", session: "s", device: "d", since: 5), ttlSeconds: 60)
        }
        let online = try await store.lookup(users)
        #expect(online[users[0]]?.since == 5)
        #expect(online.count == users.filter { $0.hashValue.isMultiple(of: 2) || $0 == users[0] }.count)
        await fixture.close()
    }
}

@Suite("Redis presence: key schema and round trips")
struct RedisPresenceSchemaTests {
    @Test func lookupOfAThousandUsersIsOneRoundTrip() async throws {
        // A server of its own, so that no other test's traffic shows in its counters.
        let server = try await RedisTestServer.start()
        defer { server.kill() }
        let connection = try await server.connect()
        let store = RedisPresenceStore(connection: connection, domain: "alpha.example")
        let users = (0..<1000).map { "user\($0)@alpha.example" }
        for user in users {
            _ = try await store.setOnline(PresenceEntry(user: user, endpoint: "ep1", session: "s", device: "d", since: 1), ttlSeconds: 60)
        }

        let readsBefore = try await infoStat(connection, "total_reads_processed")
        let online = try await store.lookup(users)
        let readsAfter = try await infoStat(connection, "total_reads_processed")
        #expect(online.count == 1000)
        // 1,000 sequential HMGETs would be 1,000 socket reads on the server; one pipelined write of
        // ~90 kB is a handful (Redis reads at most 16 kB at a time), plus one for the INFO itself.
        #expect(readsAfter - readsBefore <= 20, "server reads during lookup: \(readsAfter - readsBefore)")

        // The heartbeat of 1,000 users is one round trip too.
        let beforeHeartbeat = try await infoStat(connection, "total_reads_processed")
        try await store.heartbeat(endpoint: "ep1", users: users, ttlSeconds: 60)
        let afterHeartbeat = try await infoStat(connection, "total_reads_processed")
        #expect(afterHeartbeat - beforeHeartbeat <= 20, "server reads during heartbeat: \(afterHeartbeat - beforeHeartbeat)")
        try await connection.close()
    }

    @Test func keysAreReadableWithRedisCli() async throws {
        let server = try await RedisTestServer.start()
        defer { server.kill() }
        let connection = try await server.connect()
        let store = RedisPresenceStore(connection: connection, domain: "alpha.example", now: { 1_700_000_000_000 })
        try await store.heartbeat(endpoint: "ep1", users: [], ttlSeconds: 30)
        _ = try await store.setOnline(
            PresenceEntry(user: "alice@alpha.example", endpoint: "ep1", session: "sess-1", device: "phone", since: 1_700_000_000_500),
            ttlSeconds: 30
        )

        let hash = try await connection.send(["HGETALL", "myim:alpha.example:presence:alice"])
        let fields = try #require(hash.array).map { $0.string ?? "" }
        let dictionary = Dictionary(uniqueKeysWithValues: stride(from: 0, to: fields.count, by: 2).map { (fields[$0], fields[$0 + 1]) })
        #expect(dictionary == ["endpoint": "ep1", "session": "sess-1", "device": "phone", "since": "1700000000500"])
        let ttl = try #require(try await connection.send(["TTL", "myim:alpha.example:presence:alice"]).int)
        #expect((1...30).contains(ttl))
        #expect(try await connection.send(["SMEMBERS", "myim:alpha.example:endpoint:ep1:users"]) == .array([.bulk(Array("alice".utf8))]))
        #expect(try await connection.send(["ZSCORE", "myim:alpha.example:endpoints", "ep1"]).int == 1_700_000_000_000)
        #expect(try await connection.send(["GET", "myim:alpha.example:endpoint:ep1:alive"]).int == 1_700_000_000_000)
        let aliveTTL = try #require(try await connection.send(["TTL", "myim:alpha.example:endpoint:ep1:alive"]).int)
        #expect((1...30).contains(aliveTTL))
        try await connection.close()
    }
}
