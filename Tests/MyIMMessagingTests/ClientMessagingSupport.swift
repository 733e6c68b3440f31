import Crypto
import Foundation
import Logging
import MyIMAuth
import MyIMCenter
import MyIMClient
import MyIMEndpoint
import MyIMLink
import MyIMPresence
import MyIMSecureChannel
import MyIMTransport
import MyIMWire
import NIOCore
import NIOPosix

/// A temporary client directory, removed by ``remove()``.
struct ClientMessagingHome {
    let home: ClientHome

    init() {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("myim-client-\(UUID().uuidString)").path
        home = ClientHome(path: path)
    }

    func remove() { try? FileManager.default.removeItem(atPath: home.path) }
}

/// A saved session built by hand, with a far expiry, for `address` and `servers`.
func clientMessagingSession(
    _ address: String = "alice@alpha.example", userID: Int64 = 7, token: String = "token", device: String = "sha256:device",
    servers: [SavedServer]
) -> SavedSession {
    SavedSession(
        address: address, userID: userID, token: token, sessionID: "login-\(address)",
        expires: Int64(Date().timeIntervalSince1970 * 1000) + 3_600_000, device: device, newDevice: false,
        loginServer: "127.0.0.1:7000", loginServerFingerprint: "sha256:" + String(repeating: "0", count: 64),
        domain: "alpha.example", servers: servers, serverListIssued: 1)
}

/// A TCP port on 127.0.0.1 that refuses connections (bound once, then closed).
func clientMessagingRefusedPort() async throws -> Int {
    let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .bind(host: "127.0.0.1", port: 0).get()
    let port = channel.localAddress!.port!
    try await channel.close()
    return port
}

/// A scripted endpoint on the secure channel: answers 41 with 42 (its name as `node`) and 10
/// (with ``unread``), a QoS 1 chat with 8 and a QoS 0 one with nothing (no copy of either goes
/// back to the sender), unless told to refuse chats with 330 (naming the chat) first; 21 with
/// 22; 43 with 44 and close. Records what it receives.
actor ClientMessagingFakeEndpoint {
    let name: String
    let identity: ServerIdentityKey
    let port: Int
    private let listener: NIOAsyncChannel<SecureConnection, Never>
    private(set) var received: [Packet] = []
    private(set) var connections = 0
    private var unread: [ChatDelivery] = []
    private var chatsToRefuse = 0
    private var acceptDelay: Duration = .zero
    private var copiesAnyway = false
    private var tokenRefusal: ErrorMessage?
    private var nextID: Int64 = 100

    private init(name: String, identity: ServerIdentityKey, listener: NIOAsyncChannel<SecureConnection, Never>) {
        self.name = name
        self.identity = identity
        self.listener = listener
        port = listener.channel.localAddress!.port!
    }

    /// Starts an endpoint named `name` with a fresh Ed25519 key.
    static func start(_ name: String) async throws -> ClientMessagingFakeEndpoint {
        let identity = ServerIdentityKey.generateEd25519()
        let listener = try await SecureListener.bind(host: "127.0.0.1", port: 0, identity: identity)
        let endpoint = ClientMessagingFakeEndpoint(name: name, identity: identity, listener: listener)
        Task { await endpoint.accept() }
        return endpoint
    }

    nonisolated var fingerprint: KeyFingerprint { identity.publicKey.fingerprint }

    /// This endpoint as a server-list entry.
    nonisolated func entry(priority: Int64) -> SavedServer {
        SavedServer(name: name, host: "127.0.0.1", port: port, priority: priority, fingerprint: fingerprint.description)
    }

    func setUnread(_ messages: [ChatDelivery]) { unread = messages }
    func refuseChats(_ count: Int) { chatsToRefuse = count }
    /// From now on a QoS 1 chat's 8 is followed by a copy (18), whatever the client's 41 said.
    func sendCopiesAnyway() { copiesAnyway = true }
    /// Each 8 from now on is sent this long after its chat.
    func delayAccepts(by delay: Duration) { acceptDelay = delay }
    func refuseTokens(with error: ErrorMessage) { tokenRefusal = error }

    func stop() async { try? await listener.channel.close() }

    private func accept() async {
        await withDiscardingTaskGroup { group in
            do {
                try await listener.executeThenClose { inbound in
                    for try await connection in inbound {
                        group.addTask { await self.serve(connection) }
                    }
                }
            } catch {}
        }
    }

    private func serve(_ connection: SecureConnection) async {
        connections += 1
        try? await connection.channel.executeThenClose { inbound, outbound in
            _ = try await connection.session.get()
            var packets = inbound.makeAsyncIterator()
            guard let first = try await packets.next() else { return }
            received.append(first)
            if let tokenRefusal {
                try await outbound.write(tokenRefusal.packet)
                return
            }
            _ = try TokenAuth(packet: first)
            try await outbound.write(AuthOK(username: "alice@alpha.example", sessionID: "s1", serverTime: 1, node: name).packet)
            try await outbound.write(InitialState(friends: [], groups: [], messages: unread).packet)
            while let packet = try await packets.next() {
                received.append(packet)
                switch MessageType(rawValue: packet.type) {
                case .chat:
                    if chatsToRefuse > 0 {
                        chatsToRefuse -= 1
                        try await outbound.write(
                            ErrorMessage(code: .centerUnavailable, data: "the center is unreachable; retry").answering(packet).packet)
                        continue
                    }
                    let chat = try Chat(packet: packet)
                    nextID += 1
                    guard case .user = chat.target, chat.qos == .atLeastOnce else { continue }
                    if acceptDelay > .zero { try await Task.sleep(for: acceptDelay) }
                    try await outbound.write(
                        ChatAccepted(clientMessageID: chat.clientMessageID, serverMessageID: nextID, time: 5000 + nextID, targetID: 8).packet)
                    if copiesAnyway, case .user(let target) = chat.target {
                        try await outbound.write(ChatDelivery(
                            kind: .user, time: 5000 + nextID, senderID: 7, senderName: "alice@alpha.example", targetID: 8, targetName: target,
                            content: chat.content, serverMessageID: nextID, clientMessageID: chat.clientMessageID, qos: chat.qos,
                            serverID: "center").packet)
                    }
                case .ping:
                    try await outbound.write(Pong(time: try Ping(packet: packet).time).packet)
                case .quit:
                    try await outbound.write(QuitAck(lastSeen: 42).packet)
                    return
                default:
                    break
                }
            }
        }
    }

    /// The chats (6) received so far.
    var chats: [Chat] { received.compactMap { try? Chat(packet: $0) } }
}

/// A center and two endpoints (`ep1`, `ep2`) in-process on 127.0.0.1, with one in-memory
/// presence store, a real SQLite file, and tokens signed by a test key.
struct ClientMessagingCluster {
    static let tokenKey = Curve25519.Signing.PrivateKey()
    static let issuer = "myim:test"

    let center: Center
    let endpoints: [(name: String, endpoint: Endpoint, port: Int)]
    let directory: URL
    private let tasks: [Task<Void, any Error>]

    static func start() async throws -> ClientMessagingCluster {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("myim-cluster-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var logger = Logger(label: "myim.client-test")
        logger.logLevel = .warning
        let presence = InMemoryPresenceStore(domain: "alpha.example")
        let centerConfiguration = CenterConfiguration(
            node: "alpha-center", domain: "alpha.example", host: "127.0.0.1", port: 0, protection: .plain,
            databasePath: directory.appendingPathComponent("center.sqlite").path, endpoints: ["ep1", "ep2"], presence: presence,
            directory: StaticDirectory.testUsers)
        let center = try Center(configuration: centerConfiguration, logger: logger)
        let centerListener = try await center.bind()
        let centerPort = centerListener.channel.localAddress!.port!
        var tasks = [Task { try await center.serve(centerListener) }]
        var endpoints: [(name: String, endpoint: Endpoint, port: Int)] = []
        for name in ["ep1", "ep2"] {
            var configuration = EndpointConfiguration(
                node: name, domain: "alpha.example", host: "127.0.0.1", port: 0, identity: ServerIdentityKey.generateEd25519(),
                tokenPublicKey: tokenKey.publicKey, issuer: issuer, centerHost: "127.0.0.1", centerPort: centerPort,
                centerName: "alpha-center", linkProtection: .plain, presence: presence)
            configuration.reconnectMaximumDelay = .milliseconds(200)
            let endpoint = await Endpoint(configuration: configuration, logger: logger)
            let listener = try await endpoint.bind()
            endpoints.append((name, endpoint, listener.channel.localAddress!.port!))
            tasks.append(Task { try await endpoint.serve(listener) })
        }
        return ClientMessagingCluster(center: center, endpoints: endpoints, directory: directory, tasks: tasks)
    }

    /// The signed-list entries of both endpoints, `ep1` at `priorities.0` and `ep2` at `priorities.1`.
    func servers(priorities: (Int64, Int64)) -> [SavedServer] {
        zip(endpoints, [priorities.0, priorities.1]).map { endpoint, priority in
            SavedServer(
                name: endpoint.name, host: "127.0.0.1", port: endpoint.port, priority: priority,
                fingerprint: endpoint.endpoint.configuration.identity.publicKey.fingerprint.description)
        }
    }

    /// A saved session for `address` with a token from the cluster's issuer.
    func session(_ address: String, userID: Int64, priorities: (Int64, Int64)) async throws -> SavedSession {
        let device = "sha256:" + String(repeating: "ab", count: 32)
        let issuer = await TokenIssuer(signingKey: Self.tokenKey, issuer: Self.issuer)
        let token = try await issuer.issue(address: address, userID: userID, sessionID: "login-\(userID)", device: device, now: Date()).token
        return clientMessagingSession(address, userID: userID, token: token, device: device, servers: servers(priorities: priorities))
    }

    func stop() async {
        for (_, endpoint, _) in endpoints { try? await endpoint.shutdown() }
        // Endpoints first, so that their links do not see the center go away.
        for task in tasks.reversed() {
            task.cancel()
            _ = await task.result
        }
        try? FileManager.default.removeItem(at: directory)
    }
}

extension ClientMessagingCluster {
    /// Runs `body` with a started cluster and `homes` fresh client directories; afterwards,
    /// also when `body` throws, stops the cluster and removes the directories.
    static func with(homes: Int, _ body: (ClientMessagingCluster, [ClientMessagingHome]) async throws -> Void) async throws {
        let cluster = try await start()
        let directories = (0..<homes).map { _ in ClientMessagingHome() }
        defer { for directory in directories { directory.remove() } }
        do {
            try await body(cluster, directories)
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }
}

/// The next `count` deliveries on `connection` (other events skipped), waiting up to 10 s in all.
func clientMessagingDeliveries(_ count: Int, on connection: MessagingConnection) async -> [ChatDelivery] {
    var deliveries: [ChatDelivery] = []
    let deadline = ContinuousClock.now + .seconds(10)
    while deliveries.count < count, ContinuousClock.now < deadline {
        guard let event = await connection.next(timeout: deadline - ContinuousClock.now) else { break }
        if case .delivery(let delivery) = event { deliveries.append(delivery) }
    }
    return deliveries
}
