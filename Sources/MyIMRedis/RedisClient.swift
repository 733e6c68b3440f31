import NIOCore
import NIOPosix

/// What presence needs of Redis: one command, or several pipelined in one write.
/// ``RedisConnection`` (one connection) and ``RedisClient`` (one that reconnects) both do it.
public protocol RedisCommands: Sendable {
    func send(_ command: [String]) async throws -> RedisValue
    func pipeline(_ commands: [[String]]) async throws -> [RedisValue]
}

extension RedisConnection: RedisCommands {}

/// A Redis connection that survives Redis restarting: a command that finds the connection
/// lost connects again (one attempt, within the connect timeout) and is sent once more.
///
/// Sending twice is safe for what MyIM sends (presence writes are compare-and-set scripts,
/// sets and TTL refreshes that may be repeated). While Redis stays down, each command fails
/// with `connectionFailed` after one connect attempt, so the caller's own retry (the next
/// heartbeat) decides the pace.
public actor RedisClient: RedisCommands {
    public nonisolated let url: RedisURL
    public nonisolated let configuration: RedisConnection.Configuration
    private let group: any EventLoopGroup
    private var connection: RedisConnection?
    private var everConnected = false
    /// Connections made after the first: how often Redis came back.
    public private(set) var reconnects = 0

    /// Connects once; throws when Redis does not answer now.
    public static func connect(
        to url: RedisURL, configuration: RedisConnection.Configuration = .init(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> RedisClient {
        let client = RedisClient(url: url, configuration: configuration, group: group)
        _ = try await client.usable()
        return client
    }

    private init(url: RedisURL, configuration: RedisConnection.Configuration, group: any EventLoopGroup) {
        self.url = url
        self.configuration = configuration
        self.group = group
    }

    public func send(_ command: [String]) async throws -> RedisValue {
        try await withConnection { try await $0.send(command) }
    }

    public func pipeline(_ commands: [[String]]) async throws -> [RedisValue] {
        try await withConnection { try await $0.pipeline(commands) }
    }

    public func close() async throws {
        let current = connection
        connection = nil
        try await current?.close()
    }

    private func withConnection<T: Sendable>(_ body: @Sendable (RedisConnection) async throws -> T) async throws -> T {
        let current = try await usable()
        do {
            return try await body(current)
        } catch let error as RedisError where [.connectionLost, .timeout, .connectionClosed].contains(error.kind) {
            if connection === current { connection = nil }
            return try await body(try await usable())
        }
    }

    /// The live connection, or a new one.
    private func usable() async throws -> RedisConnection {
        if let connection, connection.isActive { return connection }
        let fresh = try await RedisConnection.connect(to: url, group: group, configuration: configuration)
        // Another caller may have reconnected while this one did: use theirs, drop this one.
        if let installed = connection, installed.isActive {
            try? await fresh.close()
            return installed
        }
        if let stale = connection { try? await stale.close() }
        if everConnected { reconnects += 1 }
        everConnected = true
        connection = fresh
        return fresh
    }
}
