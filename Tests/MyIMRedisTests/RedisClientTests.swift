import MyIMPresence
import MyIMRedis
import MyIMTestSupport
import Testing

/// The reconnecting client against a real redis-server that is killed and started again.
@Suite("Redis client: surviving a Redis restart", .redisServer)
struct RedisClientTests {
    @Test func commandsWorkAgainOnceRedisIsBackAndFailFastWhileItIsDown() async throws {
        let first = try await RedisTestServer.start()
        let client = try await RedisClient.connect(to: first.url, configuration: .init(connectTimeout: .seconds(1), commandTimeout: .seconds(2)))
        #expect(try await client.send(["SET", "myim:test:k", "v"]) == .simple("OK"))

        first.kill()
        let down = await #expect(throws: RedisError.self) { try await client.send(["GET", "myim:test:k"]) }
        #expect(down?.kind == .connectionFailed, "\(String(describing: down))")

        // Redis is back on the same address (empty: no persistence); presence writes go through.
        let second = try await RedisTestServer.start(port: first.port)
        defer { second.kill() }
        #expect(try await client.send(["PING"]) == .simple("PONG"))
        #expect(await client.reconnects == 1)
        let store = RedisPresenceStore(connection: client, domain: "alpha.example")
        try await store.heartbeat(endpoint: "ep1", users: [], ttlSeconds: 30)
        #expect(try await store.liveEndpoints(domain: "alpha.example") == ["ep1"])
        try await client.close()
    }
}
