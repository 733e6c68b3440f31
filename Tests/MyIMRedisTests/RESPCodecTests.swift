import MyIMTestSupport
import MyIMRedis
import NIOCore
import Testing

@Suite("RESP codec (hiredis), no server")
struct RESPCodecTests {
    /// One of each reply type, nested arrays, a null array, and binary bulk strings.
    static let wire: [UInt8] = Array((
        "+OK\r\n" +
        "-ERR unknown command\r\n" +
        ":-42\r\n" +
        "$5\r\nhello\r\n" +
        "$0\r\n\r\n" +
        "$-1\r\n" +
        "*-1\r\n" +
        "*0\r\n" +
        "*3\r\n:1\r\n*2\r\n$1\r\na\r\n*1\r\n$-1\r\n+x\r\n"
    ).utf8) + Array("$6\r\n".utf8) + [0, 13, 10, 0, 255, 13] + Array("\r\n".utf8)

    static let expected: [RedisValue] = [
        .simple("OK"),
        .error("ERR unknown command"),
        .integer(-42),
        .bulk(Array("hello".utf8)),
        .bulk([]),
        .bulk(nil),
        .array(nil),
        .array([]),
        .array([.integer(1), .array([.bulk([97]), .array([.bulk(nil)])]), .simple("x")]),
        .bulk([0, 13, 10, 0, 255, 13]),
    ]

    private func drain(_ reader: RESPReader) throws -> [RedisValue] {
        var values: [RedisValue] = []
        while let value = try reader.next() {
            values.append(value)
        }
        return values
    }

    @Test func decodesEveryReplyTypeAtOnce() throws {
        let reader = RESPReader()
        try reader.feed(Self.wire)
        #expect(try self.drain(reader) == Self.expected)
    }

    @Test func decodesTheSameWhenFedOneByteAtATime() throws {
        let reader = RESPReader()
        var values: [RedisValue] = []
        for byte in Self.wire {
            try reader.feed([byte])
            values += try self.drain(reader)
        }
        #expect(values == Self.expected)
    }

    @Test func decodesTheSameInUnevenChunks() throws {
        for chunk in [2, 3, 7, 13] {
            let reader = RESPReader()
            var values: [RedisValue] = []
            var start = 0
            while start < Self.wire.count {
                try reader.feed(Array(Self.wire[start..<min(start + chunk, Self.wire.count)]))
                values += try self.drain(reader)
                start += chunk
            }
            #expect(values == Self.expected, "chunk \(chunk)")
        }
    }

    @Test func rejectsGarbageAndStaysFailed() throws {
        let reader = RESPReader()
        try reader.feed(Array("?what\r\n".utf8))
        #expect { try reader.next() } throws: { ($0 as? RedisError)?.kind == .protocolViolation }
        #expect { try reader.feed(Array("+OK\r\n".utf8)) } throws: { ($0 as? RedisError)?.kind == .protocolViolation }
    }

    @Test func refusesNestingDeeperThanHiredisSupports() throws {
        let reader = RESPReader()
        try reader.feed(Array((String(repeating: "*1\r\n", count: 10) + ":1\r\n").utf8))
        #expect { try reader.next() } throws: { ($0 as? RedisError)?.kind == .protocolViolation }
    }

    @Test func refusesAnArrayAboveTheElementLimitBeforeAllocatingIt() throws {
        let reader = RESPReader(limits: .init(maximumArrayElements: 1000))
        try reader.feed(Array("*2000000000\r\n".utf8))
        #expect { try reader.next() } throws: { ($0 as? RedisError)?.kind == .replyTooLarge }

        let nested = RESPReader(limits: .init(maximumArrayElements: 2))
        try nested.feed(Array("*1\r\n*3\r\n:1\r\n:2\r\n:3\r\n".utf8))
        #expect { try nested.next() } throws: { ($0 as? RedisError)?.kind == .replyTooLarge }
    }

    @Test func refusesAReplyAboveTheByteLimit() throws {
        let reader = RESPReader(limits: .init(maximumReplyBytes: 1024))
        // Small replies in between are fine, however many bytes they add up to.
        for _ in 0..<100 {
            try reader.feed(Array("$10\r\n0123456789\r\n".utf8))
            #expect(try reader.next() == .bulk(Array("0123456789".utf8)))
        }
        try reader.feed(Array("$100000\r\n".utf8))
        #expect(try reader.next() == nil)
        try reader.feed([UInt8](repeating: 65, count: 2000))
        #expect { try reader.next() } throws: { ($0 as? RedisError)?.kind == .replyTooLarge }
    }

    @Test func closedReaderFails() throws {
        let reader = RESPReader()
        reader.close()
        reader.close()
        #expect(throws: RedisError.self) { try reader.feed(Array("+OK\r\n".utf8)) }
    }

    @Test func encodesArgvAsMultiBulk() throws {
        var buffer = ByteBuffer()
        try RESPCommandEncoder.encode(["SET", "k", "v"], into: &buffer)
        #expect(String(buffer: buffer) == "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n")

        var binary = ByteBuffer()
        try RESPCommandEncoder.encode([Array("SET".utf8), [], [0, 13, 10, 0]], into: &binary)
        #expect(Array(binary.readableBytesView) == Array("*3\r\n$3\r\nSET\r\n$0\r\n\r\n$4\r\n".utf8) + [0, 13, 10, 0] + Array("\r\n".utf8))
    }

    @Test func refusesAnEmptyCommand() {
        var buffer = ByteBuffer()
        #expect { try RESPCommandEncoder.encode([String](), into: &buffer) } throws: { ($0 as? RedisError)?.kind == .invalidCommand }
    }

    @Test func valueHelpers() {
        #expect(RedisValue.bulk(Array("12".utf8)).int == 12)
        #expect(RedisValue.bulk(Array("12".utf8)).string == "12")
        #expect(RedisValue.integer(7).string == "7")
        #expect(RedisValue.bulk([0xff]).string == nil)
        #expect(RedisValue.bulk(nil).isNull && RedisValue.array(nil).isNull && !RedisValue.array([]).isNull)
        #expect(RedisValue.array([.integer(1)]).array == [.integer(1)])
        #expect(RedisValue.error("ERR x").errorMessage == "ERR x")
    }
}

@Suite("Redis URL")
struct RedisURLTests {
    @Test func parsesTheForms() throws {
        #expect(try RedisURL("redis://localhost") == RedisURL(host: "localhost"))
        #expect(try RedisURL("redis://127.0.0.1:6380/2") == RedisURL(host: "127.0.0.1", port: 6380, database: 2))
        #expect(try RedisURL("redis://:s%40cret@db.example:7000/") == RedisURL(host: "db.example", port: 7000, password: "s@cret"))
        #expect(try RedisURL("redis://app:pw@[::1]:6379/3") == RedisURL(host: "::1", database: 3, user: "app", password: "pw"))
        #expect(try RedisURL("REDIS://h:1").port == 1)
    }

    @Test(arguments: [
        "http://localhost", "localhost:6379", "rediss://localhost", "redis://", "redis://:6379",
        "redis://h:0", "redis://h:70000", "redis://h:port", "redis://h/db", "redis://h/-1",
        "redis://h?x=1", "redis://user@h", "redis://[::1", "redis://:%zz@h",
    ])
    func rejects(_ text: String) {
        #expect { try RedisURL(text) } throws: { ($0 as? RedisError)?.kind == .invalidURL }
    }

    @Test func descriptionHidesThePassword() throws {
        let url = try RedisURL("redis://:hunter2@h:1/4")
        #expect(url.description == "redis://:***@h:1/4")
        #expect { try RedisURL("rediss://:hunter2@h") } throws: { !"\($0)".contains("hunter2") }
    }
}
