import Foundation
import MyIMAuth
import MyIMClient
import MyIMLoginCenter
import MyIMSecureChannel
import MyIMTransport
import MyIMWire
import NIOCore
import Testing

/// The client library against an in-process login center on real sockets, each test with a
/// fresh client directory.
@Suite("Client: home, login connection, saved session")
struct ClientTests {
    static let password = "correct horse battery"
    static let alice = "alice@alpha.example"

    private func withCenter(
        configure: (inout LoginCenterConfiguration) -> Void = { _ in },
        _ body: (TestLoginCenter, ClientHome) async throws -> Void
    ) async throws {
        let center = try await TestLoginCenter.start(configure: configure)
        let home = temporaryHome()
        defer { try? FileManager.default.removeItem(atPath: home.path) }
        do {
            try await body(center, home)
        } catch {
            await center.stop()
            throw error
        }
        await center.stop()
    }

    private func temporaryHome() -> ClientHome {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("myim-home-\(UUID().uuidString)").path
        return ClientHome(environment: ["MYIM_HOME": path])
    }

    private func open(_ center: TestLoginCenter, _ home: ClientHome, pin: KeyFingerprint? = nil) async throws -> LoginConnection {
        try await LoginConnection.open(server: "127.0.0.1:\(center.port)", pin: pin, home: home, client: "myim-cli/test")
    }

    private func mode(_ path: String) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        return try #require(attributes[.posixPermissions] as? NSNumber).intValue & 0o777
    }

    /// Runs `body`, which must throw a ``ClientError``, and returns it.
    private func clientError(_ body: () async throws -> Void) async throws -> ClientError {
        do {
            try await body()
        } catch let error as ClientError {
            return error
        }
        throw TestFailure("expected a ClientError")
    }

    // MARK: - Register and log in

    @Test func registerThenLoginSavesVerifiedSession() async throws {
        try await withCenter { center, home in
            let connection = try await open(center, home)
            let registered = try await connection.register(address: "Alice@Alpha.example", password: Self.password)
            #expect(registered.username == Self.alice)

            let session = try await connection.login(address: Self.alice, password: Self.password)
            await connection.close()
            #expect(session.address == Self.alice)
            #expect(session.userID == registered.userID)
            #expect(session.domain == "alpha.example")
            #expect(session.newDevice, "the first login of an account is from a new device")
            #expect(session.device == (try home.deviceFingerprint(for: Self.alice)))
            #expect(session.expires == center.clock.milliseconds + 24 * 3_600_000)
            #expect(!session.token.isEmpty && !session.sessionID.isEmpty)
            #expect(session.loginServer == "127.0.0.1:\(center.port)")
            #expect(session.loginServerFingerprint == center.fingerprint.description)
            #expect(session.serverListIssued == center.clock.milliseconds)
            #expect(session.servers.map(\.name) == ["alpha-ep1", "alpha-ep2"], "sorted by priority")
            #expect(session.servers.map(\.priority) == [10, 20])
            #expect(session.servers.map(\.port) == [7201, 7202])
            #expect(session.servers.allSatisfy { $0.fingerprint == TestLoginCenter.endpointKey.publicKey.fingerprint.description })

            // Saved, readable back, private.
            #expect(try home.loadSession() == session)
            #expect(try mode(home.path) == 0o700)
            #expect(try mode(home.sessionPath) == 0o600)
            #expect(try mode(home.deviceKeyPath) == 0o600)

            // The token is the login center's, for this user, session and device.
            let verifier = await TokenVerifier(publicKey: TestLoginCenter.tokenKey.publicKey, issuer: TestLoginCenter.issuer)
            let claims = try await verifier.verify(session.token, now: center.clock.date)
            #expect(claims.address == Self.alice)
            #expect(claims.sessionID == session.sessionID)
            #expect(claims.deviceHash == TokenClaims.deviceHash(of: session.device))

            // The same device again is not new; a new login replaces the saved session.
            let again = try await open(center, home)
            let second = try await again.login(address: Self.alice, password: Self.password)
            await again.close()
            #expect(!second.newDevice)
            #expect(second.device == session.device)
            #expect(second.sessionID != session.sessionID)
            #expect(try home.loadSession() == second)

            try home.clearSession()
            #expect(try home.loadSession() == nil)
        }
    }

    @Test func wrongPasswordThenRightPasswordOnOneConnection() async throws {
        try await withCenter { center, home in
            let connection = try await open(center, home)
            _ = try await connection.register(address: Self.alice, password: Self.password)
            let error = try await clientError { _ = try await connection.login(address: Self.alice, password: "not the password") }
            #expect(error.code == .invalidCredentials)
            #expect(error.message.contains("wrong user name or password"))
            #expect(try home.loadSession() == nil, "a failed login saves nothing")

            let session = try await connection.login(address: Self.alice, password: Self.password)
            #expect(session.address == Self.alice)
            await connection.close()
        }
    }

    @Test func repeatedFailuresCarryRetryAfter() async throws {
        try await withCenter(configure: { $0.rateLimit.freeFailures = 1 }) { center, home in
            let connection = try await open(center, home)
            _ = try await connection.register(address: Self.alice, password: Self.password)
            var last: ClientError?
            for _ in 0..<3 {
                last = try await clientError { _ = try await connection.login(address: Self.alice, password: "wrong password!") }
            }
            let error = try #require(last)
            #expect([ErrorCode.invalidCredentials, .rateLimited].contains(error.code))
            #expect((error.retryAfter ?? 0) > 0, "\(error)")
            #expect(error.description.contains("try again"))
            await connection.close()
        }
    }

    @Test func duplicateRegisterIsNameTaken() async throws {
        try await withCenter { center, home in
            let connection = try await open(center, home)
            _ = try await connection.register(address: Self.alice, password: Self.password)
            let error = try await clientError { _ = try await connection.register(address: "ALICE@alpha.example", password: "another password") }
            #expect(error.code == .nameTaken && error.code.rawValue == 301)
            #expect(error.message.contains(Self.alice))
            await connection.close()
        }
    }

    @Test func requestsAfterCloseFail() async throws {
        try await withCenter { center, home in
            let connection = try await open(center, home)
            await connection.close()
            let error = try await clientError { _ = try await connection.register(address: Self.alice, password: Self.password) }
            #expect(error.code == .notEstablished)
            let refused = try await clientError { _ = try await LoginConnection.open(server: "127.0.0.1:1", home: home) }
            #expect(refused.code == .notEstablished)
            #expect(refused.message.contains("cannot connect to the login center at 127.0.0.1:1"), "\(refused)")
        }
    }

    // MARK: - Device fingerprint

    @Test func deviceFingerprintIsStablePerHomeAndAddress() throws {
        let home = temporaryHome()
        defer { try? FileManager.default.removeItem(atPath: home.path) }
        let first = try home.deviceFingerprint(for: Self.alice)
        #expect(first.hasPrefix("sha256:"))
        #expect(first.utf8.count == 71)
        #expect(first.dropFirst(7).allSatisfy { "0123456789abcdef".contains($0) })
        #expect(KeyFingerprint(first) != nil)

        #expect(try home.deviceFingerprint(for: Self.alice) == first)
        #expect(try ClientHome(path: home.path).deviceFingerprint(for: Self.alice) == first, "stable across processes")
        #expect(try home.deviceFingerprint(for: "Alice@Alpha.Example") == first, "addresses compare in lower case")
        #expect(try home.deviceFingerprint(for: "bob@alpha.example") != first, "one fingerprint per address")
        #expect(try mode(home.deviceKeyPath) == 0o600)
        #expect(FileManager.default.contents(atPath: home.deviceKeyPath)?.count == 32)

        let other = temporaryHome()
        defer { try? FileManager.default.removeItem(atPath: other.path) }
        #expect(try other.deviceFingerprint(for: Self.alice) != first, "another machine or user has another key")
    }

    @Test func homeLocation() {
        #expect(ClientHome(path: "/tmp/x", environment: ["MYIM_HOME": "/tmp/y"]).path == "/tmp/x")
        #expect(ClientHome(environment: ["MYIM_HOME": "/tmp/y", "HOME": "/home/z"]).path == "/tmp/y")
        #expect(ClientHome(environment: ["HOME": "/home/z"]).path == "/home/z/.config/myim")
        let home = ClientHome(path: "/srv/h")
        #expect(home.knownServersPath == "/srv/h/known_servers")
        #expect(home.sessionPath == "/srv/h/session.json")
        #expect(home.deviceKeyPath == "/srv/h/device.key")
    }

    // MARK: - Server keys

    @Test func trustOnFirstUseRecordsTheKey() async throws {
        try await withCenter { center, home in
            let server = "127.0.0.1:\(center.port)"
            let first = try await open(center, home)
            #expect(first.session.serverKeyFirstSeen)
            await first.close()
            #expect(try home.knownServers().entries == [server: center.fingerprint])
            let text = try String(contentsOfFile: home.knownServersPath, encoding: .utf8)
            #expect(text == "\(server) \(center.fingerprint)\n")

            let second = try await open(center, home)
            #expect(!second.session.serverKeyFirstSeen)
            _ = try await second.register(address: Self.alice, password: Self.password)
            await second.close()
            #expect(try String(contentsOfFile: home.knownServersPath, encoding: .utf8) == text, "recorded once")
        }
    }

    @Test func changedServerKeyIsRefused() async throws {
        try await withCenter { center, home in
            let server = "127.0.0.1:\(center.port)"
            let recorded = TestLoginCenter.endpointKey.publicKey.fingerprint
            try home.prepare()
            let line = "\(server) \(recorded)\n"
            try line.write(toFile: home.knownServersPath, atomically: true, encoding: .utf8)

            let error = try await clientError { _ = try await open(center, home) }
            #expect(error.code == .serverKeyChanged)
            #expect(error.message.contains(home.knownServersPath), "names the file")
            #expect(error.message.contains(server), "names the line to remove")
            #expect(error.message.contains(recorded.description), "says what was recorded")
            #expect(error.message.contains(center.fingerprint.description), "says what was presented")
            #expect(error.message.contains("--pin"))
            #expect(try String(contentsOfFile: home.knownServersPath, encoding: .utf8) == line, "the client never replaces a key itself")

            // Pinning the new key after checking it out of band gets through.
            let pinned = try await open(center, home, pin: center.fingerprint)
            await pinned.close()
        }
    }

    @Test func pinnedWrongFingerprintIsRefused() async throws {
        try await withCenter { center, home in
            let wrong = TestLoginCenter.endpointKey.publicKey.fingerprint
            let error = try await clientError { _ = try await open(center, home, pin: wrong) }
            #expect(error.code == .serverKeyMismatch)
            #expect(error.message.contains(wrong.description))
            #expect(error.message.contains(center.fingerprint.description))
            #expect(try home.knownServers().entries.isEmpty, "a refused key is not recorded")

            let right = try await open(center, home, pin: center.fingerprint)
            await right.close()
            #expect(try home.knownServers().entries == ["127.0.0.1:\(center.port)": center.fingerprint])

            // With a key recorded, the message still tells the presented key from the pinned one.
            let again = try await clientError { _ = try await open(center, home, pin: wrong) }
            #expect(again.message.contains("presented key \(center.fingerprint), not the pinned \(wrong)"), "\(again)")
        }
    }

    // MARK: - Password hygiene

    @Test func passwordNeverReachesTheHomeDirectory() async throws {
        try await withCenter { center, home in
            let wrong = "Wrong-Password-42"
            let connection = try await open(center, home)
            _ = try await connection.register(address: Self.alice, password: Self.password)
            _ = try? await connection.login(address: Self.alice, password: wrong)
            _ = try await connection.login(address: Self.alice, password: Self.password)
            await connection.close()

            let files = try FileManager.default.contentsOfDirectory(atPath: home.path)
            #expect(Set(files) == ["known_servers", "session.json", "device.key"], "no stray files")
            for file in files {
                let data = try #require(FileManager.default.contents(atPath: (home.path as NSString).appendingPathComponent(file)))
                for secret in [Self.password, wrong] {
                    #expect(data.range(of: Data(secret.utf8)) == nil, "\(file) contains a password")
                }
            }
        }
    }

    // MARK: - Server list checks, against an impostor with the login center's key

    enum ListCase: String, CaseIterable, Sendable {
        case missing, unsigned, signedByAnotherKey, tampered, otherDomain
    }

    @Test("a server list that does not check out is refused and nothing is saved", arguments: ListCase.allCases)
    func badServerListIsRefused(_ listCase: ListCase) async throws {
        let alpha = try #require(TestLoginCenter.servers["alpha.example"])
        let identity = TestLoginCenter.identity
        let list: ServerList?
        switch listCase {
        case .missing: list = nil
        case .unsigned: list = ServerList(domain: "alpha.example", issued: 1, servers: alpha, signature: [])
        case .signedByAnotherKey:
            list = try ServerListSignature.sign(domain: "alpha.example", servers: alpha, issued: 1, with: TestLoginCenter.endpointKey)
        case .tampered:
            var signed = try ServerListSignature.sign(domain: "alpha.example", servers: alpha, issued: 1, with: identity)
            signed.servers[0].host = "203.0.113.66"
            list = signed
        case .otherDomain:
            list = try ServerListSignature.sign(
                domain: "beta.example", servers: try #require(TestLoginCenter.servers["beta.example"]), issued: 1, with: identity)
        }
        try await withImpostor(servers: list) { port, home in
            let connection = try await LoginConnection.open(server: "127.0.0.1:\(port)", home: home)
            let error = try await clientError { _ = try await connection.login(address: Self.alice, password: Self.password) }
            await connection.close()
            #expect(error.code == (listCase == .otherDomain ? .unknownDomain : .badSignature), "\(error)")
            #expect(try home.loadSession() == nil)
        }
    }

    @Test func impostorWithAGoodListIsAccepted() async throws {
        var alpha = try #require(TestLoginCenter.servers["alpha.example"])
        alpha.append(ServerEntry(name: "broken", host: "127.0.0.1", port: 7203, priority: 5, fingerprint: "md5:nope"))
        let list = try ServerListSignature.sign(domain: "alpha.example", servers: alpha, issued: 1, with: TestLoginCenter.identity)
        try await withImpostor(servers: list) { port, home in
            let connection = try await LoginConnection.open(server: "127.0.0.1:\(port)", home: home)
            let session = try await connection.login(address: Self.alice, password: Self.password)
            await connection.close()
            #expect(session.servers.map(\.name) == ["alpha-ep1", "alpha-ep2"], "sorted; the unparsable fingerprint is left out")
            #expect(try home.loadSession() == session)
        }
    }

    /// A server with the login center's identity key that answers every request with a
    /// LoginOK carrying `servers`.
    private func withImpostor(servers: ServerList?, _ body: (Int, ClientHome) async throws -> Void) async throws {
        let reply = LoginOK(userID: 7, username: Self.alice, token: "a.b.c", sessionID: "s1", expires: 1_900_000_000_000, servers: servers).packet
        let listener = try await SecureListener.bind(host: "127.0.0.1", port: 0, identity: TestLoginCenter.identity)
        let port = try #require(listener.channel.localAddress?.port)
        let task = Task {
            try await withThrowingDiscardingTaskGroup { group in
                try await listener.executeThenClose { inbound in
                    for try await connection in inbound {
                        group.addTask {
                            try? await connection.channel.executeThenClose { inbound, outbound in
                                for try await _ in inbound { try await outbound.write(reply) }
                            }
                        }
                    }
                }
            }
        }
        let home = temporaryHome()
        defer { try? FileManager.default.removeItem(atPath: home.path) }
        defer { task.cancel() }
        try await body(port, home)
    }

    // MARK: - Addresses and summaries

    @Test func serverAddresses() throws {
        #expect(try ServerAddress(parsing: "127.0.0.1:7000") == ServerAddress(host: "127.0.0.1", port: 7000))
        #expect(try ServerAddress(parsing: " Login.Example ").description == "login.example:7000")
        #expect(try ServerAddress(parsing: "[::1]:7001").description == "[::1]:7001")
        #expect(try ServerAddress(parsing: "[::1]").port == 7000)
        for bad in ["", ":7000", "host:", "host:0", "host:70000", "host:x", "::1:7000", "[::1", "[::1]x", "a b:1"] {
            #expect(throws: ClientError.self, "\(bad)") { try ServerAddress(parsing: bad) }
        }
    }

    @Test func sessionSummary() throws {
        let session = SavedSession(
            address: Self.alice, userID: 3, token: "secret.token.value", sessionID: "abc", expires: 1_800_000_000_000,
            device: "sha256:" + String(repeating: "0", count: 64), newDevice: true, loginServer: "127.0.0.1:7000",
            loginServerFingerprint: "sha256:" + String(repeating: "1", count: 64), domain: "alpha.example",
            servers: [
                SavedServer(name: "b", host: "::1", port: 2, priority: 20, fingerprint: "sha256:" + String(repeating: "2", count: 64)),
                SavedServer(name: "a", host: "10.0.0.1", port: 1, priority: 10, fingerprint: "sha256:" + String(repeating: "3", count: 64)),
            ],
            serverListIssued: 1_799_999_000_000)
        #expect(session.servers.map(\.name) == ["a", "b"])

        let valid = SessionSummary(session, now: 1_799_000_000_000)
        #expect(!valid.expired)
        #expect(valid.expires == "2027-01-15T08:00:00Z")
        let json = valid.json()
        #expect(!json.contains("secret.token.value"), "the token is not printed")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        #expect(object["address"] as? String == Self.alice)
        #expect(object["expires"] as? String == "2027-01-15T08:00:00Z")
        #expect(object["expired"] as? Bool == false)
        #expect((object["servers"] as? [Any])?.count == 2)
        #expect(valid.lines.contains { $0.contains("[::1]:2") })

        let expired = SessionSummary(session, now: 1_800_000_000_000)
        #expect(expired.expired)
        #expect(expired.lines.contains { $0.contains("EXPIRED") })

        // session.json round-trips with snake_case keys.
        let data = try JSONEncoder().encode(session)
        #expect(String(decoding: data, as: UTF8.self).contains("\"login_server_fingerprint\""))
        #expect(try JSONDecoder().decode(SavedSession.self, from: data) == session)
    }
}
