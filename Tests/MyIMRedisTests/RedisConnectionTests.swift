import MyIMTestSupport
import MyIMRedis
import NIOCore
import Testing

@Suite("Redis connection against a real redis-server", .redisServer)
struct RedisConnectionTests {
    @Test func roundTripsEveryReplyType() async throws {
        let redis = try await RedisTestServer.current.connect()
        defer { Task { try? await redis.close() } }
        let key = uniqueName("types")

        #expect(try await redis.send(["PING"]) == .simple("PONG"))
        #expect(try await redis.send(["SET", key, "v"]) == .simple("OK"))
        #expect(try await redis.send(["GET", key]) == .bulk(Array("v".utf8)))
        #expect(try await redis.send(["GET", key + ":missing"]) == .bulk(nil))
        #expect(try await redis.send(["INCR", key + ":n"]) == .integer(1))
        #expect(try await redis.send(["INCRBY", key + ":n", "-5"]) == .integer(-4))
        #expect(try await redis.send(["SET", key + ":empty", ""]) == .simple("OK"))
        #expect(try await redis.send(["GET", key + ":empty"]) == .bulk([]))
        _ = try await redis.send(["RPUSH", key + ":list", "a", "b", "c"])
        #expect(try await redis.send(["LRANGE", key + ":list", "0", "-1"]) == .array(["a", "b", "c"].map { .bulk(Array($0.utf8)) }))
        #expect(try await redis.send(["LRANGE", key + ":none", "0", "-1"]) == .array([]))
        #expect(try await redis.send(["EVAL", "return {1, {'a', {2, 'b'}}, redis.status_reply('fine')}", "0"])
            == .array([.integer(1), .array([.bulk([97]), .array([.integer(2), .bulk([98])])]), .simple("fine")]))
    }

    @Test func errorRepliesAreThrownBySendAndReturnedByPipeline() async throws {
        let redis = try await RedisTestServer.current.connect()
        defer { Task { try? await redis.close() } }
        await #expect { try await redis.send(["NOSUCHCOMMAND", "x"]) } throws: { error in
            guard let error = error as? RedisError else { return false }
            return error.kind == .server && error.message.hasPrefix("ERR unknown command")
        }
        let replies = try await redis.pipeline([["PING"], ["NOSUCHCOMMAND"], ["ECHO", "after"]])
        #expect(replies.count == 3)
        #expect(replies[0] == .simple("PONG"))
        #expect(replies[1].errorMessage?.hasPrefix("ERR unknown command") == true)
        #expect(replies[2] == .bulk(Array("after".utf8)))
        // The connection is still usable after an error reply.
        #expect(try await redis.send(["PING"]) == .simple("PONG"))
    }

    @Test func binaryValuesSurviveTheRoundTrip() async throws {
        let redis = try await RedisTestServer.current.connect()
        defer { Task { try? await redis.close() } }
        let key = Array(uniqueName("bin\0\r\n").utf8)
        let value: [UInt8] = [0, 13, 10, 0, 255, 36, 45, 49, 13, 10, 42, 0] + Array(0...255)
        #expect(try await redis.send([Array("SET".utf8), key, value]) == .simple("OK"))
        #expect(try await redis.send([Array("GET".utf8), key]) == .bulk(value))
        #expect(try await redis.send([ByteBuffer(string: "STRLEN"), ByteBuffer(bytes: key)]) == .integer(Int64(value.count)))
        let replies = try await redis.pipeline([[Array("GET".utf8), key], [Array("ECHO".utf8), [0, 0]]])
        #expect(replies == [.bulk(value), .bulk([0, 0])])
    }

    @Test func aNullArrayFromAnAbortedTransaction() async throws {
        let server = try RedisTestServer.current
        let redis = try await server.connect()
        let other = try await server.connect()
        defer { Task { try? await redis.close(); try? await other.close() } }
        let key = uniqueName("watched")
        _ = try await redis.send(["WATCH", key])
        _ = try await other.send(["SET", key, "changed"])
        _ = try await redis.send(["MULTI"])
        #expect(try await redis.send(["SET", key, "mine"]) == .simple("QUEUED"))
        #expect(try await redis.send(["EXEC"]) == .array(nil))
    }

    @Test func aPipelineOfAThousandCommandsAnswersInOrder() async throws {
        let redis = try await RedisTestServer.current.connect()
        defer { Task { try? await redis.close() } }
        let key = uniqueName("counter")
        let commands = (0..<1000).map { index in index.isMultiple(of: 2) ? ["ECHO", "reply \(index)"] : ["INCR", key] }
        let replies = try await redis.pipeline(commands)
        #expect(replies.count == 1000)
        for (index, reply) in replies.enumerated() {
            let expected: RedisValue = index.isMultiple(of: 2) ? .bulk(Array("reply \(index)".utf8)) : .integer(Int64(index / 2 + 1))
            #expect(reply == expected, "reply \(index)")
        }
    }

    @Test func concurrentSendersGetTheirOwnReplies() async throws {
        let redis = try await RedisTestServer.current.connect()
        defer { Task { try? await redis.close() } }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<50 {
                group.addTask { () async throws -> Void in
                    for round in 0..<20 {
                        let text = "task \(task) round \(round)"
                        let reply = try await redis.send(["ECHO", text])
                        #expect(reply == .bulk(Array(text.utf8)))
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    @Test func authAndSelectFromTheURL() async throws {
        let server = try RedisTestServer.current
        let url = try RedisURL("redis://127.0.0.1:\(server.port)/5")
        let redis = try await RedisConnection.connect(to: url)
        defer { Task { try? await redis.close() } }
        let key = uniqueName("db5")
        _ = try await redis.send(["SET", key, "here"])
        let plain = try await server.connect()
        defer { Task { try? await plain.close() } }
        #expect(try await plain.send(["GET", key]) == .bulk(nil))
        #expect(try await plain.send(["SELECT", "5"]) == .simple("OK"))
        #expect(try await plain.send(["GET", key]) == .bulk(Array("here".utf8)))

        // The server has no password: AUTH fails, and connect reports it.
        let withPassword = try RedisURL("redis://:nope@127.0.0.1:\(server.port)")
        await #expect { try await RedisConnection.connect(to: withPassword) } throws: { ($0 as? RedisError)?.kind == .server }
    }

    @Test func commandsAfterCloseFail() async throws {
        let redis = try await RedisTestServer.current.connect()
        try await redis.close()
        try await redis.close()
        await #expect { try await redis.send(["PING"]) } throws: { ($0 as? RedisError)?.kind == .connectionClosed }
        #expect(!redis.isActive)
    }

    @Test func connectingToANonListeningPortFails() async throws {
        // A server started and killed leaves a port nobody listens on.
        let server = try await RedisTestServer.start()
        server.kill()
        await #expect { try await RedisConnection.connect(to: server.url) } throws: { ($0 as? RedisError)?.kind == .connectionFailed }
    }
}

@Suite("Redis connection loss")
struct RedisConnectionLossTests {
    @Test(.timeLimit(.minutes(1)))
    func commandsFailWhenTheServerIsKilled() async throws {
        let server = try await RedisTestServer.start()
        defer { server.kill() }
        // A generous timeout: the failure must come from the lost connection, not from the timeout.
        let redis = try await server.connect(configuration: .init(commandTimeout: .seconds(20)))
        let blocked = try await server.connect(configuration: .init(commandTimeout: .seconds(20)))
        #expect(try await redis.send(["PING"]) == .simple("PONG"))

        // A command in flight when the server dies...
        let pending = Task { try await blocked.send(["BLPOP", uniqueName("never"), "0"]) }
        try await Task.sleep(for: .milliseconds(100))
        server.kill()

        let started = ContinuousClock.now
        await #expect { _ = try await pending.value } throws: { ($0 as? RedisError)?.kind == .connectionLost }
        // ...and one sent afterwards both fail with a RedisError, promptly.
        await #expect { try await redis.send(["PING"]) } throws: { ($0 as? RedisError)?.kind == .connectionLost }
        await #expect { try await redis.pipeline([["PING"], ["PING"]]) } throws: { ($0 as? RedisError)?.kind == .connectionLost }
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect(!redis.isActive)
    }

    @Test(.timeLimit(.minutes(1)))
    func aCommandTimeoutClosesTheConnection() async throws {
        let server = try await RedisTestServer.start()
        defer { server.kill() }
        let redis = try await server.connect(configuration: .init(commandTimeout: .milliseconds(300)))
        await #expect { try await redis.send(["BLPOP", uniqueName("never"), "0"]) } throws: { ($0 as? RedisError)?.kind == .timeout }
        await #expect { try await redis.send(["PING"]) } throws: { ($0 as? RedisError)?.kind == .connectionLost }
    }
}
