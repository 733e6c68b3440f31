import Crypto
import Foundation
import Logging
import MyIMAuth
import MyIMLoginCenter
import MyIMSecureChannel
import MyIMTransport
import MyIMWire
import NIOCore
import Synchronization

/// A clock tests can move; milliseconds since 1970.
final class TestClock: Sendable {
    private let now = Mutex<Int64>(1_800_000_000_000)

    var milliseconds: Int64 { now.withLock { $0 } }
    var date: Date { Date(timeIntervalSince1970: Double(milliseconds) / 1000) }

    func advance(seconds: Int64) {
        now.withLock { $0 += seconds * 1000 }
    }
}

/// A login center served in-process on 127.0.0.1 and a free port, with a real SQLite file in
/// a fresh temporary directory; `stop()` shuts it down and removes the directory.
struct TestLoginCenter {
    /// One RSA-2048 identity for every test: generating one costs ~100 ms.
    static let identity = try! ServerIdentityKey.generateRSA()
    static let tokenKey = Curve25519.Signing.PrivateKey()
    static let issuer = "myim:test"
    static let endpointKey = ServerIdentityKey.generateEd25519()
    static let servers: [String: [ServerEntry]] = [
        "alpha.example": [
            ServerEntry(name: "alpha-ep2", host: "127.0.0.1", port: 7202, priority: 20, fingerprint: endpointKey.publicKey.fingerprint.description),
            ServerEntry(name: "alpha-ep1", host: "127.0.0.1", port: 7201, priority: 10, fingerprint: endpointKey.publicKey.fingerprint.description),
        ],
        "beta.example": [
            ServerEntry(name: "beta-ep1", host: "127.0.0.1", port: 7301, priority: 10, fingerprint: endpointKey.publicKey.fingerprint.description),
        ],
    ]

    let center: LoginCenter
    let store: SQLiteAccountStore
    let port: Int
    let directory: URL
    let clock: TestClock
    private let task: Task<Void, any Error>

    var databasePath: String { directory.appendingPathComponent("login.sqlite").path }
    var fingerprint: KeyFingerprint { Self.identity.publicKey.fingerprint }

    static func start(
        clock: TestClock = TestClock(), logger: Logger = Logger(label: "myim.login-center.test"),
        configure: (inout LoginCenterConfiguration) -> Void = { _ in }
    ) async throws -> TestLoginCenter {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("myim-login-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent("login.sqlite").path
        var configuration = LoginCenterConfiguration(
            host: "127.0.0.1", port: 0, identity: identity, servers: servers, defaultDomain: "alpha.example",
            databasePath: path, tokenSigningKey: tokenKey, issuer: issuer)
        configuration.scrypt = .testing
        configuration.clock = { clock.milliseconds }
        configure(&configuration)
        let store = try SQLiteAccountStore(path: path)
        let center = await LoginCenter(configuration: configuration, store: store, logger: logger)
        let listener = try await center.bind()
        guard let port = listener.channel.localAddress?.port else { throw TestFailure("the listener has no port") }
        let task = Task { try await center.serve(listener) }
        return TestLoginCenter(center: center, store: store, port: port, directory: directory, clock: clock, task: task)
    }

    func stop() async {
        task.cancel()
        _ = try? await task.value
        try? await center.shutdown()
        try? FileManager.default.removeItem(at: directory)
    }

    /// Runs `body` with a raw secure connection to the login center, pinned to its key.
    func withConnection<T>(_ body: (RawConnection) async throws -> T) async throws -> T {
        let (connection, _) = try await SecureClient.connect(host: "127.0.0.1", port: port, policy: .pinned(fingerprint))
        return try await RawConnection.with(connection, body)
    }
}

/// Request/response over one secure connection, for tests that speak the protocol directly.
/// It exists only inside ``with(_:_:)``, which closes the connection afterwards.
final class RawConnection {
    private var inbound: NIOAsyncChannelInboundStream<Packet>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<Packet>

    private init(inbound: NIOAsyncChannelInboundStream<Packet>, outbound: NIOAsyncChannelOutboundWriter<Packet>) {
        self.inbound = inbound.makeAsyncIterator()
        self.outbound = outbound
    }

    static func with<T>(_ connection: SecureConnection, _ body: (RawConnection) async throws -> T) async throws -> T {
        try await connection.channel.executeThenClose { inbound, outbound in
            try await body(RawConnection(inbound: inbound, outbound: outbound))
        }
    }

    /// Sends `message` and returns the next packet the server sends.
    func request(_ message: some WireMessage) async throws -> Packet {
        try await send(message.packet)
    }

    func send(_ packet: Packet) async throws -> Packet {
        try await outbound.write(packet)
        return try await next()
    }

    func next() async throws -> Packet {
        guard let packet = try await inbound.next() else { throw TestFailure("the server closed the connection") }
        return packet
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A device fingerprint for tests: `sha256:` and 64 hex digits derived from `seed`.
func testDevice(_ seed: String) -> String {
    "sha256:" + SHA256.hash(data: Data(seed.utf8)).hexString
}

/// Every line a ``CapturingLogHandler`` was given, message and metadata.
final class LogSink: Sendable {
    private let lines = Mutex<[String]>([])

    var text: String { lines.withLock { $0.joined(separator: "\n") } }

    func append(_ line: String) {
        lines.withLock { $0.append(line) }
    }
}

/// A log handler that keeps every line at every level in a ``LogSink``.
struct CapturingLogHandler: LogHandler {
    let sink: LogSink
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        sink.append("\(event.level) \(event.message) \(merged)")
    }
}
