import Crypto
import Foundation
import Logging
import MyIMCenter
import MyIMClient
import MyIMEndpoint
import MyIMLink
import MyIMLoginCenter
import MyIMPresence
import MyIMSecureChannel
import MyIMTopology
import MyIMWire
import Synchronization
import Testing

/// A login center with its directory, a center linked to it and one endpoint, in-process on
/// loopback sockets, with mutual-TLS links and certificates from `ClusterKeys.initialize`,
/// real SQLite files, and clients that register and log in for real.
final class DirectoryCluster: Sendable {
    let root: URL
    let loginCenter: LoginCenter
    let loginPort: Int
    let loginFingerprint: KeyFingerprint
    let directoryPort: Int
    let directoryProtection: LinkProtection
    let directoryLink: DirectoryLink
    let endpointPort: Int
    let endpointFingerprint: KeyFingerprint
    private let tasks: [Task<Void, any Error>]
    private let directoryTask: Mutex<Task<Void, any Error>?>

    private init(
        root: URL, loginCenter: LoginCenter, loginPort: Int, loginFingerprint: KeyFingerprint, directoryPort: Int,
        directoryProtection: LinkProtection, directoryLink: DirectoryLink, endpointPort: Int, endpointFingerprint: KeyFingerprint,
        tasks: [Task<Void, any Error>], directoryTask: Task<Void, any Error>
    ) {
        self.root = root
        self.loginCenter = loginCenter
        self.loginPort = loginPort
        self.loginFingerprint = loginFingerprint
        self.directoryPort = directoryPort
        self.directoryProtection = directoryProtection
        self.directoryLink = directoryLink
        self.endpointPort = endpointPort
        self.endpointFingerprint = endpointFingerprint
        self.tasks = tasks
        self.directoryTask = Mutex(directoryTask)
    }

    static func start() async throws -> DirectoryCluster {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("myim-directory-\(UUID().uuidString)")
        let topology = Topology(
            cluster: "directory-test", dataDirectory: root.appendingPathComponent("data").path,
            keysDirectory: root.appendingPathComponent("keys").path, loginCenter: LoginCenterNode(name: "login"),
            domains: [
                Domain(
                    name: "alpha.example", center: CenterNode(name: "alpha-center", listen: HostPort(host: "127.0.0.1", port: 7100)),
                    endpoints: [EndpointNode(name: "alpha-ep1", listen: HostPort(host: "127.0.0.1", port: 7201))])
            ])
        _ = try ClusterKeys.initialize(for: topology)
        let keys = ClusterKeys(topology: topology)
        var logger = Logger(label: "myim.directory-test")
        logger.logLevel = .warning

        let identity = ServerIdentityKey.generateEd25519()
        let tokenKey = Curve25519.Signing.PrivateKey()
        let directoryProtection = try LinkProtection.server(for: "login", keys: keys, links: .tls)
        var loginConfiguration = LoginCenterConfiguration(
            host: "127.0.0.1", port: 0, identity: identity, servers: ["alpha.example": []], defaultDomain: "alpha.example",
            databasePath: root.appendingPathComponent("login.sqlite").path, tokenSigningKey: tokenKey, issuer: "myim:directory-test")
        loginConfiguration.scrypt = .testing
        loginConfiguration.directory = DirectoryListenConfiguration(
            host: "127.0.0.1", port: 0, protection: directoryProtection, centers: ["alpha.example": "alpha-center"])
        let loginCenter = await LoginCenter(
            configuration: loginConfiguration, store: try SQLiteAccountStore(path: loginConfiguration.databasePath), logger: logger)
        let loginListener = try await loginCenter.bind()
        let directoryListener = try await loginCenter.bindDirectory()
        let directoryPort = try #require(directoryListener.channel.localAddress?.port)
        var tasks = [Task { try await loginCenter.serve(loginListener) }]
        let directoryTask = Task { try await loginCenter.serveDirectory(directoryListener) }

        var linkSettings = DirectoryLink.Settings(
            node: "alpha-center", domain: "alpha.example", host: "127.0.0.1", port: directoryPort, serverName: "login",
            protection: try LinkProtection.client(for: "alpha-center", keys: keys, links: .tls))
        linkSettings.reconnectMaximumDelay = .milliseconds(200)
        let directoryLink = DirectoryLink(settings: linkSettings, logger: logger)
        let presence = InMemoryPresenceStore(domain: "alpha.example")
        let center = try Center(
            configuration: CenterConfiguration(
                node: "alpha-center", domain: "alpha.example", host: "127.0.0.1", port: 0,
                protection: try LinkProtection.server(for: "alpha-center", keys: keys, links: .tls),
                databasePath: root.appendingPathComponent("center.sqlite").path, endpoints: ["alpha-ep1"], presence: presence,
                directory: directoryLink),
            logger: logger)
        let centerListener = try await center.bind()
        let centerPort = try #require(centerListener.channel.localAddress?.port)
        tasks.append(Task { try await center.serve(centerListener) })

        let endpointIdentity = ServerIdentityKey.generateEd25519()
        let endpoint = await Endpoint(
            configuration: EndpointConfiguration(
                node: "alpha-ep1", domain: "alpha.example", host: "127.0.0.1", port: 0, identity: endpointIdentity,
                tokenPublicKey: tokenKey.publicKey, issuer: "myim:directory-test", centerHost: "127.0.0.1", centerPort: centerPort,
                centerName: "alpha-center", linkProtection: try LinkProtection.client(for: "alpha-ep1", keys: keys, links: .tls),
                presence: presence),
            logger: logger)
        let endpointListener = try await endpoint.bind()
        tasks.append(Task { try await endpoint.serve(endpointListener) })

        let cluster = DirectoryCluster(
            root: root, loginCenter: loginCenter, loginPort: try #require(loginListener.channel.localAddress?.port),
            loginFingerprint: identity.publicKey.fingerprint, directoryPort: directoryPort, directoryProtection: directoryProtection,
            directoryLink: directoryLink, endpointPort: try #require(endpointListener.channel.localAddress?.port),
            endpointFingerprint: endpointIdentity.publicKey.fingerprint, tasks: tasks, directoryTask: directoryTask)
        try await cluster.waitForDirectoryLink(up: true)
        return cluster
    }

    func waitForDirectoryLink(up: Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while await directoryLink.isConnected != up {
            try #require(ContinuousClock.now < deadline, "the directory link did not go \(up ? "up" : "down") within 10 s")
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Stops serving the directory: the listener closes and so do the centers' links.
    func stopDirectory() async {
        let task = directoryTask.withLock { $0 }
        task?.cancel()
        _ = await task?.result
    }

    /// Serves the directory again on the same port.
    func restartDirectory() async throws {
        let listener = try await LinkChannel.bind(host: "127.0.0.1", port: directoryPort, protection: directoryProtection)
        directoryTask.withLock { $0 = Task { try await loginCenter.serveDirectory(listener) } }
    }

    /// Registers `address` with a test password; returns its user id.
    @discardableResult
    func register(_ address: String) async throws -> Int64 {
        let home = ClientMessagingHome()
        defer { home.remove() }
        let connection = try await LoginConnection.open(server: "127.0.0.1:\(loginPort)", pin: loginFingerprint, home: home.home)
        defer { Task { await connection.close() } }
        return try await connection.register(address: address, password: "correct horse battery").userID
    }

    /// Logs `address` in from `home` (its device) and connects it to the endpoint.
    func connect(_ address: String, home: ClientMessagingHome) async throws -> MessagingConnection {
        let login = try await LoginConnection.open(server: "127.0.0.1:\(loginPort)", pin: loginFingerprint, home: home.home)
        let session = try await login.login(address: address, password: "correct horse battery")
        await login.close()
        return try await MessagingConnection.open(
            session: session, home: home.home, endpoint: "127.0.0.1:\(endpointPort)", pin: endpointFingerprint)
    }

    func stop() async {
        await stopDirectory()
        for task in tasks.reversed() {
            task.cancel()
            _ = await task.result
        }
        try? await loginCenter.shutdown()
        try? FileManager.default.removeItem(at: root)
    }
}

/// The login center's directory as centers use it: existence checks and security alerts.
@Suite("Directory", .timeLimit(.minutes(1)))
struct DirectoryTests {
    @Test func messagesAndFriendRequestsNeedAnAccountNotASignIn() async throws {
        let cluster = try await DirectoryCluster.start()
        let aliceHome = ClientMessagingHome()
        let carolHome = ClientMessagingHome()
        defer {
            aliceHome.remove()
            carolHome.remove()
        }
        do {
            try await cluster.register("alice@alpha.example")
            let carolID = try await cluster.register("carol@alpha.example")
            let alice = try await cluster.connect("alice@alpha.example", home: aliceHome)

            // No account: refused with 332, nothing queued.
            let refusal = await #expect(throws: ClientError.self) { try await alice.send(text: "hello?", to: "nobody@alpha.example") }
            #expect(refusal?.code == .unknownRecipient)
            #expect(refusal?.message.contains("nobody@alpha.example") == true)
            let friendRefusal = await #expect(throws: ClientError.self) { try await alice.addFriend("nobody") }
            #expect(friendRefusal?.code == .unknownRecipient)

            // Registered but never connected: the directory vouches for carol.
            let accepted = try await alice.send(text: "welcome aboard", to: "carol@alpha.example")
            #expect(try await alice.addFriend("carol") == AddFriendResult(status: .added, username: "carol@alpha.example"))
            let profile = try await alice.profile(of: "carol@alpha.example")
            #expect(profile.userID == carolID)
            #expect(profile.online == false)
            try await alice.quit()

            let carol = try await cluster.connect("carol@alpha.example", home: carolHome)
            #expect(carol.initialState.messages.map(\.serverMessageID) == [accepted.serverMessageID])
            #expect(carol.initialState.messages.first?.targetID == carolID)
            #expect(carol.initialState.friends.map(\.username) == ["alice@alpha.example"])
            try await carol.quit()
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    @Test func aLoginFromANewDeviceAlertsTheOnlineSessionBeforeItIsKicked() async throws {
        let cluster = try await DirectoryCluster.start()
        let laptop = ClientMessagingHome()
        let phone = ClientMessagingHome()
        defer {
            laptop.remove()
            phone.remove()
        }
        do {
            try await cluster.register("alice@alpha.example")
            let first = try await cluster.connect("alice@alpha.example", home: laptop)
            let second = try await cluster.connect("alice@alpha.example", home: phone)
            let phoneDevice = try phone.home.deviceFingerprint(for: "alice@alpha.example")

            var alert: SecurityAlert?
            var kicked = false
            while let event = await first.next(timeout: .seconds(5)) {
                switch event {
                case .securityAlert(let received):
                    #expect(!kicked, "the alert comes before the kick")
                    alert = received
                case .kicked:
                    kicked = true
                default:
                    break
                }
                if kicked { break }
            }
            let received = try #require(alert)
            #expect(received.kind == "new_device")
            #expect(received.device == phoneDevice)
            #expect(received.address == "127.0.0.1")
            #expect(kicked)

            // The same device again is no news: the phone's next login alerts nobody.
            try await second.quit()
            let again = try await cluster.connect("alice@alpha.example", home: phone)
            #expect(again.session.newDevice == false)
            try await again.quit()
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    @Test func whileTheDirectoryIsDownLookupsFailWith334AndWorkAgainAfterwards() async throws {
        let cluster = try await DirectoryCluster.start()
        let aliceHome = ClientMessagingHome()
        defer { aliceHome.remove() }
        do {
            try await cluster.register("alice@alpha.example")
            try await cluster.register("dave@alpha.example")
            let alice = try await cluster.connect("alice@alpha.example", home: aliceHome)

            await cluster.stopDirectory()
            try await cluster.waitForDirectoryLink(up: false)
            let refusal = await #expect(throws: ClientError.self) { try await alice.send(text: "are you there?", to: "dave@alpha.example") }
            #expect(refusal?.code == .directoryUnavailable)

            try await cluster.restartDirectory()
            try await cluster.waitForDirectoryLink(up: true)
            let accepted = try await alice.send(text: "are you there?", to: "dave@alpha.example")
            #expect(accepted.serverMessageID > 0)
            try await alice.quit()
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }
}
