import Foundation
import MyIMRedis
import NIOCore
import NIOPosix
import Testing

// Test support shared by the test targets (one helper module, not copies).

/// A real `redis-server` on a free port of 127.0.0.1, no persistence, killed by PID when done.
public final class RedisTestServer: Sendable {
    public let port: Int
    public let pid: Int32
    private let process: Process

    public var url: RedisURL { RedisURL(host: "127.0.0.1", port: self.port) }

    private init(port: Int, process: Process) {
        self.port = port
        self.pid = process.processIdentifier
        self.process = process
    }

    /// Starts a server (on `port`, or a free one) and waits (up to 10 s) until it answers PING.
    public static func start(port: Int? = nil) async throws -> RedisTestServer {
        let port = if let port { port } else { try await self.freePort() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "redis-server", "--port", String(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning",
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let server = RedisTestServer(port: port, process: process)
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if let connection = try? await RedisConnection.connect(to: server.url) {
                let pong = try? await connection.send(["PING"])
                try? await connection.close()
                if pong == .simple("PONG") {
                    return server
                }
            }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        server.kill()
        throw RedisError(.connectionFailed, "redis-server on port \(port) did not answer PING")
    }

    /// SIGKILL, then reap.
    public func kill() {
        if self.process.isRunning {
            _ = Foundation.kill(self.pid, SIGKILL)
        }
        self.process.waitUntilExit()
    }

    public func connect(configuration: RedisConnection.Configuration = .init(commandTimeout: .seconds(10))) async throws -> RedisConnection {
        try await RedisConnection.connect(to: self.url, configuration: configuration)
    }

    /// A free TCP port: bind port 0, read the port, close. (`redis-server --port 0` would disable TCP.)
    private static func freePort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "127.0.0.1", port: 0)
            .get()
        let port = channel.localAddress?.port
        try await channel.close()
        guard let port else { throw RedisError(.connectionFailed, "no local port") }
        return port
    }

    /// The server of the enclosing suite (see ``RedisServerTrait``).
    @TaskLocal public static var shared: RedisTestServer?

    public static var current: RedisTestServer {
        get throws {
            try #require(self.shared, "the suite needs the .redisServer trait")
        }
    }
}

/// Runs the suite with one redis-server, killed when the suite ends.
public struct RedisServerTrait: SuiteTrait, TestScoping {
    public init() {}

    public func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        let server = try await RedisTestServer.start()
        do {
            try await RedisTestServer.$shared.withValue(server) {
                try await function()
            }
        } catch {
            server.kill()
            throw error
        }
        server.kill()
    }
}

extension Trait where Self == RedisServerTrait {
    public static var redisServer: Self { Self() }
}

/// A unique name for keys and domains, so that tests sharing a server do not meet.
public func uniqueName(_ base: String) -> String {
    "\(base)-\(UUID().uuidString.prefix(8).lowercased())"
}

/// `INFO stats` field as an integer.
public func infoStat(_ connection: RedisConnection, _ field: String) async throws -> Int {
    let info = try #require(try await connection.send(["INFO", "stats"]).string)
    for line in info.split(whereSeparator: \.isNewline) where line.hasPrefix(field + ":") {
        return try #require(Int(line.dropFirst(field.count + 1)))
    }
    throw RedisError(.unexpectedReply, "INFO stats has no \(field)")
}
