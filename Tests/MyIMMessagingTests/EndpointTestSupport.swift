import Crypto
import Foundation
import Logging
import MyIMAuth
@testable import MyIMEndpoint
import MyIMLink
import MyIMPresence
import MyIMSecureChannel
import MyIMTransport
import MyIMWire
import NIOCore
import Synchronization

/// A presence clock the endpoint tests move by hand; milliseconds since 1970.
final class EndpointTestClock: Sendable {
    private let now = Mutex<Int64>(1_800_000_000_000)
    var milliseconds: Int64 { now.withLock { $0 } }
    func advance(milliseconds: Int64) { now.withLock { $0 += milliseconds } }
}

/// Polls `condition` every 10 ms for up to `timeout`; whether it became true.
func endpointEventually(_ timeout: Duration = .seconds(5), _ condition: () async -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return await condition()
}

/// A scripted center on a plain link: welcomes links (re-binding the sessions a hello lists), binds sessions, echoes chats (6) back
/// to their sender as `ToClient`, answers quit (43) with 44, and records everything it receives.
actor EndpointFakeCenter {
    enum Mode {
        /// Answers as a center does.
        case normal
        /// Accepts TCP connections and closes them at once: the center is "down".
        case refuseLinks
        /// Welcomes links but never answers `SessionOpen`.
        case ignoreSessionOpens
        /// Accepts links and records what arrives, but never answers anything.
        case silent
    }

    let port: Int
    private let listener: NIOAsyncChannel<NIOAsyncChannel<Packet, Packet>, Never>
    private var received: [Packet] = []
    private var writer: NIOAsyncChannelOutboundWriter<Packet>?
    private var current: (any Channel)?
    private(set) var linkCount = 0
    var mode = Mode.normal
    /// While set, nothing more is read from the link: what the endpoint sends piles up.
    private var readingPaused = false

    private init(listener: NIOAsyncChannel<NIOAsyncChannel<Packet, Packet>, Never>) {
        self.listener = listener
        port = listener.channel.localAddress!.port!
    }

    static func start(protection: LinkProtection = .plain) async throws -> EndpointFakeCenter {
        let listener = try await LinkChannel.bind(host: "127.0.0.1", port: 0, protection: protection)
        let center = EndpointFakeCenter(listener: listener)
        Task { await center.accept() }
        return center
    }

    func setMode(_ mode: Mode) { self.mode = mode }

    /// Stops reading the link (a stalled center), or reads it again.
    func setReadingPaused(_ paused: Bool) { readingPaused = paused }

    func stop() async {
        current?.close(promise: nil)
        try? await listener.channel.close()
    }

    /// Closes the current link, as a crashing center would.
    func dropLink() {
        current?.close(promise: nil)
        current = nil
        writer = nil
    }

    /// Sends a link message to the endpoint on the current link.
    func send(_ message: some LinkMessage) async throws {
        guard let writer else { throw EndpointError(.centerUnavailable, "the fake center has no link") }
        try await writer.write(message.packet)
    }

    /// Removes and returns the first received packet of `type` that `matches`, waiting up to `timeout`.
    func take(_ type: LinkMessageType, timeout: Duration = .seconds(5), where matches: (Packet) -> Bool = { _ in true }) async -> Packet? {
        let deadline = ContinuousClock.now + timeout
        repeat {
            if let index = received.firstIndex(where: { $0.type == type.rawValue && matches($0) }) {
                return received.remove(at: index)
            }
            try? await Task.sleep(for: .milliseconds(10))
        } while ContinuousClock.now < deadline
        return nil
    }

    private func accept() async {
        await withDiscardingTaskGroup { group in
            do {
                try await listener.executeThenClose { inbound in
                    for try await link in inbound {
                        group.addTask { await self.serve(link) }
                    }
                }
            } catch {}
        }
    }

    private func serve(_ link: NIOAsyncChannel<Packet, Packet>) async {
        linkCount += 1
        guard mode != .refuseLinks else {
            try? await link.channel.close()
            return
        }
        try? await link.executeThenClose { inbound, outbound in
            writer = outbound
            current = link.channel
            for try await packet in inbound {
                received.append(packet)
                if mode != .silent { try await answer(packet, outbound) }
                while readingPaused, link.channel.isActive { try await Task.sleep(for: .milliseconds(10)) }
            }
        }
    }

    private func answer(_ packet: Packet, _ outbound: NIOAsyncChannelOutboundWriter<Packet>) async throws {
        switch LinkMessageType(rawValue: packet.type) {
        case .hello:
            // Like the real center: welcome, then re-bind each listed session with SessionReady.
            try await outbound.write(LinkWelcome(node: "center", time: 1).packet)
            for info in try LinkHello(packet: packet).sessions where mode == .normal {
                let initial = InitialState(friends: [], groups: [], messages: []).body
                try await outbound.write(SessionReady(session: info.session, initial: initial).packet)
            }
        case .sessionOpen where mode == .normal:
            let open = try SessionOpen(packet: packet)
            let initial = InitialState(friends: [], groups: [], messages: []).body
            try await outbound.write(SessionReady(session: open.info.session, initial: initial).packet)
        case .fromClient:
            let request = try FromClient(packet: packet)
            if request.payload.type == MessageType.chat.rawValue {
                try await outbound.write(ToClient(sessions: [request.session], payload: request.payload).packet)
            } else if request.payload.type == MessageType.quit.rawValue {
                try await outbound.write(ToClient(sessions: [request.session], payload: QuitAck(lastSeen: 42).packet).packet)
            }
        case .ping:
            try await outbound.write(LinkPong(time: try LinkPing(packet: packet).time).packet)
        default:
            break
        }
    }
}

/// A client of the endpoint under test: the secure channel, with received packets collected
/// in order so that tests can wait for them with a timeout.
actor EndpointTestClient {
    private let channel: any Channel
    private var writer: NIOAsyncChannelOutboundWriter<Packet>?
    private var packets: [Packet] = []
    private(set) var closed = false
    /// While set, nothing more is read: what the server sends piles up in the socket buffers.
    private var paused = false

    private init(channel: any Channel) { self.channel = channel }

    static func connect(port: Int, fingerprint: KeyFingerprint) async throws -> EndpointTestClient {
        let (connection, _) = try await SecureClient.connect(host: "127.0.0.1", port: port, policy: .pinned(fingerprint))
        let client = EndpointTestClient(channel: connection.channel.channel)
        Task { await client.pump(connection.channel) }
        return client
    }

    func send(_ packet: Packet) async throws {
        for _ in 0..<500 where writer == nil && !closed { try await Task.sleep(for: .milliseconds(10)) }
        guard let writer else { throw EndpointError(.internalError, "the test client is closed") }
        try await writer.write(packet)
    }

    func send(_ message: some WireMessage) async throws { try await send(message.packet) }

    /// The next packet, or `nil` when the connection closed (or nothing came within `timeout`).
    func next(timeout: Duration = .seconds(5)) async -> Packet? {
        let deadline = ContinuousClock.now + timeout
        repeat {
            if !packets.isEmpty { return packets.removeFirst() }
            if closed { return nil }
            try? await Task.sleep(for: .milliseconds(10))
        } while ContinuousClock.now < deadline
        return packets.isEmpty ? nil : packets.removeFirst()
    }

    /// Whether the server closed the connection within `timeout`.
    func waitClosed(timeout: Duration = .seconds(5)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !closed, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        return closed
    }

    func close() async { try? await channel.close() }

    /// Writes `packet`, then waits up to `timeout` for the server to read enough of what was
    /// written that the connection takes writes again; `false` if it did not (the server has
    /// stopped reading).
    func send(_ packet: Packet, thenWaitWritable timeout: Duration) async -> Bool {
        // On the event loop, so that the write has reached the channel's buffer before the check.
        let channel = channel
        try? await channel.eventLoop.submit { channel.writeAndFlush(packet, promise: nil) }.get()
        let deadline = ContinuousClock.now + timeout
        while !channel.isWritable, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(5)) }
        return channel.isWritable
    }

    /// Writes `bytes` as they are, below the secure channel (a partial or broken frame).
    func sendRaw(_ bytes: [UInt8]) async throws {
        let channel = channel
        try await channel.eventLoop.submit {
            let context = try channel.pipeline.syncOperations.context(handlerType: SecureChannelHandler.self)
            context.writeAndFlush(NIOAny(ByteBuffer(bytes: bytes)), promise: nil)
        }.get()
    }

    /// Stops reading, as a client that hangs would.
    func pauseReading() { paused = true }

    /// Reads again after ``pauseReading()``.
    func resumeReading() { paused = false }

    /// Every packet received so far, removed from the queue.
    func drain() -> [Packet] {
        defer { packets = [] }
        return packets
    }

    private func pump(_ connection: NIOAsyncChannel<Packet, Packet>) async {
        try? await connection.executeThenClose { inbound, outbound in
            writer = outbound
            for try await packet in inbound {
                while paused, channel.isActive { try await Task.sleep(for: .milliseconds(10)) }
                packets.append(packet)
            }
        }
        closed = true
        writer = nil
    }
}

/// An endpoint under test on 127.0.0.1, linked to an ``EndpointFakeCenter``, with
/// in-memory presence on a clock the test moves.
struct EndpointHarness {
    static let identity = ServerIdentityKey.generateEd25519()
    static let tokenKey = Curve25519.Signing.PrivateKey()
    static let issuer = "myim:test"
    static let domain = "alpha.example"
    static let node = "ep1"

    let center: EndpointFakeCenter
    let endpoint: Endpoint
    let port: Int
    let presence: InMemoryPresenceStore
    let presenceClock: EndpointTestClock
    private let serving: Task<Void, any Error>

    /// Runs `body` with a fresh endpoint and center (adjusted by `adjust`), and stops both after.
    static func with(
        _ adjust: (inout EndpointConfiguration) -> Void = { _ in }, _ body: (EndpointHarness) async throws -> Void
    ) async throws {
        let harness = try await start(adjust)
        do {
            try await body(harness)
        } catch {
            await harness.stop()
            throw error
        }
        await harness.stop()
    }

    static func start(
        _ adjust: (inout EndpointConfiguration) -> Void, center: EndpointFakeCenter? = nil,
        base: EndpointConfiguration? = nil, presence: InMemoryPresenceStore? = nil, presenceClock: EndpointTestClock = EndpointTestClock()
    ) async throws -> EndpointHarness {
        let center = if let center { center } else { try await EndpointFakeCenter.start() }
        let clock = presenceClock
        let presence = presence ?? InMemoryPresenceStore(domain: domain, now: { clock.milliseconds })
        var configuration = base ?? EndpointConfiguration(
            node: node, domain: domain, host: "127.0.0.1", port: 0, identity: identity, tokenPublicKey: tokenKey.publicKey,
            issuer: issuer, centerHost: "127.0.0.1", centerPort: center.port, centerName: "center", linkProtection: .plain,
            presence: presence)
        configuration.reconnectMaximumDelay = .milliseconds(200)
        configuration.heartbeatInterval = .milliseconds(50)
        adjust(&configuration)
        var logger = Logger(label: "myim.endpoint.test")
        logger.logLevel = .warning
        let endpoint = await Endpoint(configuration: configuration, logger: logger)
        let listener = try await endpoint.bind()
        let port = listener.channel.localAddress!.port!
        let serving = Task { try await endpoint.serve(listener) }
        return EndpointHarness(
            center: center, endpoint: endpoint, port: port, presence: presence, presenceClock: clock, serving: serving)
    }

    func stop() async {
        try? await endpoint.shutdown()
        serving.cancel()
        _ = await serving.result
        await center.stop()
    }

    /// A token for `user`, issued at `now` and signed with `key` (the cluster's by default).
    func token(
        _ user: String = "alice@alpha.example", login: String = "login-1", now: Date = Date(),
        key: Curve25519.Signing.PrivateKey = EndpointHarness.tokenKey
    ) async throws -> String {
        let issuer = await TokenIssuer(signingKey: key, issuer: Self.issuer)
        return try await issuer.issue(address: user, userID: 7, sessionID: login, device: "sha256:device", now: now).token
    }

    func connect() async throws -> EndpointTestClient {
        try await EndpointTestClient.connect(port: port, fingerprint: Self.identity.publicKey.fingerprint)
    }

    /// Connects and authenticates `user`; returns the client (42 and 10 consumed) and its session id at the endpoint.
    func authenticated(_ user: String = "alice@alpha.example") async throws -> (client: EndpointTestClient, session: String) {
        let client = try await connect()
        try await client.send(TokenAuth(token: try await token(user)))
        guard let authOK = await client.next(), authOK.type == MessageType.authOK.rawValue,
              let initial = await client.next(), initial.type == MessageType.initialState.rawValue,
              let open = await center.take(.sessionOpen, where: { (try? SessionOpen(packet: $0).info.user) == user })
        else { throw EndpointError(.internalError, "\(user) did not authenticate") }
        return (client, try SessionOpen(packet: open).info.session)
    }
}
