import ArgumentParser
import Crypto
import Foundation
import Logging
import MyIMAuth
import MyIMLoginCenter
import MyIMSecureChannel
import MyIMTransport
import MyIMWire
import NIOCore
import NIOPosix
import Synchronization

/// `myim bench logins`: full logins/s against an in-process login center on 127.0.0.1, next
/// to the bound that scrypt sets on this machine, measured in the same run.
///
/// A full login is what a client does from nothing: TCP connect, the secure-channel
/// handshake (RSA-2048 identity), message 1, the scrypt check, the SQLite writes (device,
/// audit), the token and the signed server list in message 9.
struct BenchLogins: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logins",
        abstract: "Full logins/s against an in-process login center, and the scrypt bound (build with -c release)."
    )

    @Option(help: "Seconds to spend on each measurement.")
    var seconds: Double = 5

    @Option(help: "Concurrent clients.")
    var clients: Int = 16

    func run() async throws {
        guard seconds > 0, seconds <= 120 else { throw ValidationError("--seconds must be in (0, 120]") }
        guard (1...1000).contains(clients) else { throw ValidationError("--clients must be 1...1000") }
        #if DEBUG
        print("note: this is a debug build; run `swift run -c release myim bench logins` for real figures\n")
        #endif
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("myim-bench-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let identity = try ServerIdentityKey.generateRSA()
        let configuration = LoginCenterConfiguration(
            host: "127.0.0.1", port: 0, identity: identity, servers: ["bench.example": []], defaultDomain: "bench.example",
            databasePath: directory.appendingPathComponent("login.sqlite").path, tokenSigningKey: Curve25519.Signing.PrivateKey(),
            issuer: "myim:bench")
        var logger = Logger(label: "myim.bench")
        logger.logLevel = .warning
        let center = await LoginCenter(
            configuration: configuration, store: try SQLiteAccountStore(path: configuration.databasePath), logger: logger)
        let listener = try await center.bind()
        let port = listener.channel.localAddress?.port ?? 0
        let server = Task { try await center.serve(listener) }
        defer { server.cancel() }

        print("MyIM login center, \(System.coreCount) cores, \(clients) clients, \(seconds) s per row, scrypt N=2^14 r=8 p=1")
        let bound = try await scryptBound()
        row("scrypt hashes, all cores (the bound)", String(format: "%.1f /s", bound))

        let fingerprint = identity.publicKey.fingerprint
        let password = "bench-password-1"
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<clients {
                group.addTask {
                    try await Self.withConnection(port: port, fingerprint: fingerprint) { request in
                        _ = try await request(Register(username: "user\(index)", password: password).packet)
                    }
                }
            }
            try await group.waitForAll()
        }

        let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        let counts = Counters()
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<clients {
                group.addTask {
                    let device = "sha256:" + SHA256.hash(data: Data("bench-\(index)".utf8)).hexString
                    while ContinuousClock.now < deadline {
                        try await Self.withConnection(port: port, fingerprint: fingerprint) { request in
                            let reply = try await request(Login(username: "user\(index)", password: password, device: device).packet)
                            counts.add(ok: reply.type == MessageType.loginOK.rawValue)
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = ContinuousClock.now - start
        let perSecond = Double(counts.ok) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        row("full logins (connect + handshake + login)", String(format: "%.1f /s", perSecond))
        row("full logins / scrypt bound", String(format: "%.1f %%", 100 * perSecond / bound))
        let failed = counts.failed
        if failed > 0 { print("failed logins: \(failed)") }
        try await center.shutdown()
        try await tokenReconnects()
    }

    /// Token reconnects/s: a client that already holds a token (after a network change, or an
    /// endpoint's 48) connects to an endpoint, completes the Ed25519 handshake with 41 sent along
    /// with ClientFinished (as the client library does), and waits for 42 and 10 (the center has bound the session), then drops the connection.
    /// Endpoints, center and clients share this process; clients alternate between the two
    /// endpoints.
    private func tokenReconnects() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("myim-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let cluster = try await BenchCluster.start(directory: directory, maxConnectionsPerSource: clients * 4 + 64)
        let issuer = await TokenIssuer(signingKey: cluster.tokenKey, issuer: BenchMessages.issuer)
        var tokens: [String] = []
        for index in 0..<clients {
            tokens.append(try await issuer.issue(
                address: "rc\(index)@\(BenchMessages.domain)", userID: Int64(500_000 + index), sessionID: "rc-\(index)",
                device: "sha256:bench", now: Date()).token)
        }
        let tokenList = tokens
        let counts = Counters()
        let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        let start = ContinuousClock.now
        await withTaskGroup(of: Void.self) { group in
            for index in 0..<clients {
                group.addTask {
                    while ContinuousClock.now < deadline {
                        let endpoint = index % 2
                        guard let client = try? await BenchClient.connect(
                            port: cluster.ports[endpoint], fingerprint: cluster.fingerprints[endpoint], user: "rc\(index)",
                            token: tokenList[index])
                        else {
                            counts.add(ok: false)
                            continue
                        }
                        do {
                            try await client.sessionOpened()
                            counts.add(ok: true)
                        } catch {
                            counts.add(ok: false)
                        }
                        client.close()
                    }
                }
            }
        }
        let elapsed = ContinuousClock.now - start
        let perSecond = Double(counts.ok) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        row("token reconnects (handshake + 41 → 42, 10)", String(format: "%.0f /s", perSecond))
        if counts.failed > 0 { print("failed reconnects: \(counts.failed)") }
        await cluster.stop()
    }

    private func row(_ name: String, _ value: String) {
        print(name.padding(toLength: 44, withPad: " ", startingAt: 0) + String(repeating: " ", count: max(0, 12 - value.count)) + value)
    }

    /// scrypt hashes per second with every core busy, as the login center runs them.
    private func scryptBound() async throws -> Double {
        let hasher = PasswordHasher(parameters: .standard)
        defer { Task { try? await hasher.shutdown() } }
        let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        let count = Counters()
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<System.coreCount {
                group.addTask {
                    while ContinuousClock.now < deadline {
                        _ = try await hasher.makeCredential(password: "bench-password-1")
                        count.add(ok: true)
                    }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = ContinuousClock.now - start
        return Double(count.ok) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }

    /// One connection: `body` gets a request function that sends a packet and returns the reply.
    private static func withConnection(
        port: Int, fingerprint: KeyFingerprint, _ body: (_ request: (Packet) async throws -> Packet) async throws -> Void
    ) async throws {
        let (connection, _) = try await SecureClient.connect(host: "127.0.0.1", port: port, policy: .pinned(fingerprint))
        try await connection.channel.executeThenClose { inbound, outbound in
            var replies = inbound.makeAsyncIterator()
            try await body { packet in
                try await outbound.write(packet)
                guard let reply = try await replies.next() else { throw ValidationError("the login center closed the connection") }
                return reply
            }
        }
    }
}

/// Success and failure counts shared by the benchmark's tasks.
private final class Counters: Sendable {
    private let state = Mutex((ok: 0, failed: 0))
    var ok: Int { state.withLock { $0.ok } }
    var failed: Int { state.withLock { $0.failed } }

    func add(ok: Bool) {
        state.withLock { ok ? ($0.ok += 1) : ($0.failed += 1) }
    }
}
