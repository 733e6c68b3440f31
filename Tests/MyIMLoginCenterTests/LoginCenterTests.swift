import Crypto
import Foundation
import GRDB
import Logging
import MyIMAuth
import MyIMLoginCenter
import MyIMSecureChannel
import MyIMTransport
import MyIMWire
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// The login center over real sockets and a real SQLite file, spoken to in raw protocol.
@Suite("Login center")
struct LoginCenterTests {
    static let password = "correct horse battery"

    private func withCenter(
        clock: TestClock = TestClock(), logger: Logger = Logger(label: "myim.login-center.test"),
        configure: (inout LoginCenterConfiguration) -> Void = { _ in }, _ body: (TestLoginCenter) async throws -> Void
    ) async throws {
        let center = try await TestLoginCenter.start(clock: clock, logger: logger, configure: configure)
        do {
            try await body(center)
        } catch {
            await center.stop()
            throw error
        }
        await center.stop()
    }

    private func register(_ connection: RawConnection, _ username: String, _ password: String = password) async throws -> Packet {
        try await connection.request(Register(username: username, password: password))
    }

    private func login(_ connection: RawConnection, _ username: String, _ password: String = password, device: String = testDevice("laptop")) async throws -> Packet {
        try await connection.request(Login(username: username, password: password, device: device, client: "tests"))
    }

    @Test func registerThenLogin() async throws {
        try await withCenter { center in
            try await center.withConnection { connection in
                let registered = try RegisterOK(packet: try await register(connection, "Alice@alpha.example"))
                #expect(registered.username == "alice@alpha.example")

                let ok = try LoginOK(packet: try await login(connection, "alice"))
                #expect(ok.username == "alice@alpha.example")
                #expect(ok.userID == registered.userID)
                #expect(ok.newDevice, "the first login from any device is from a new device")
                #expect(ok.expires == center.clock.milliseconds + 24 * 3_600_000)

                let servers = try #require(ok.servers)
                #expect(servers.domain == "alpha.example")
                #expect(servers.servers.map(\.name) == ["alpha-ep1", "alpha-ep2"], "lower priority first")
                #expect(ServerListSignature.isValid(servers, signedBy: TestLoginCenter.identity.publicKey))
                var forged = servers
                forged.servers[0].port = 6666
                #expect(!ServerListSignature.isValid(forged, signedBy: TestLoginCenter.identity.publicKey))
            }
        }
    }

    @Test func duplicateRegistrationIsRefusedWithItsCode() async throws {
        try await withCenter { center in
            try await center.withConnection { connection in
                _ = try RegisterOK(packet: try await register(connection, "bob"))
                let failed = try RegisterFailed(packet: try await register(connection, "BOB@alpha.example"))
                #expect(failed.errorCode == .nameTaken)
                #expect(failed.message.contains("bob@alpha.example"))
            }
        }
    }

    @Test(arguments: [
        ("al", "correct horse", ErrorCode.invalidName),
        ("9lives", "correct horse", .invalidName),
        ("admin", "correct horse", .invalidName),
        ("carol!", "correct horse", .invalidName),
        ("carol@gamma.example", "correct horse", .unknownDomain),
        ("carol", "short", .weakPassword),
        ("carol", "carol", .weakPassword),
        ("carol", "aaaaaaaaaa", .weakPassword),
    ] as [(String, String, ErrorCode)])
    func registrationRules(username: String, password: String, code: ErrorCode) async throws {
        try await withCenter { center in
            try await center.withConnection { connection in
                let failed = try RegisterFailed(packet: try await register(connection, username, password))
                #expect(failed.errorCode == code, "\(username) / \(password): \(failed.message)")
            }
        }
    }

    @Test func wrongPasswordThenRightPasswordOnOneConnection() async throws {
        try await withCenter { center in
            try await center.withConnection { connection in
                _ = try RegisterOK(packet: try await register(connection, "dave"))
                let failed = try LoginFailed(packet: try await login(connection, "dave", "not the password"))
                #expect(failed.errorCode == .invalidCredentials)
                #expect(failed.retryAfter == nil, "one failure costs no wait")
                let unknown = try LoginFailed(packet: try await login(connection, "nobody", "not the password"))
                #expect(unknown.errorCode == .invalidCredentials)
                #expect(unknown.message == failed.message, "an unknown user and a wrong password look the same")
                let ok = try LoginOK(packet: try await login(connection, "dave"))
                #expect(ok.username == "dave@alpha.example")
            }
        }
    }

    @Test func failedLoginsSlowDownThenLock() async throws {
        try await withCenter { center in
            try await center.withConnection { connection in
                _ = try RegisterOK(packet: try await register(connection, "erin"))
                var waits: [Int64?] = []
                for attempt in 0..<6 {
                    let failed = try LoginFailed(packet: try await login(connection, "erin", "wrong password"))
                    waits.append(failed.retryAfter)
                    // Wait out each slow-down, but not the lock the sixth failure starts.
                    if attempt < 5, let wait = failed.retryAfter { center.clock.advance(seconds: (wait + 999) / 1000) }
                }
                #expect(waits == [nil, nil, nil, 1000, 2000, 60_000])

                // Locked: even the right password is refused, and the reply says when to retry.
                let locked = try LoginFailed(packet: try await login(connection, "erin"))
                #expect(locked.errorCode == .rateLimited)
                #expect(locked.retryAfter == 60_000)
                center.clock.advance(seconds: 30)
                let stillLocked = try LoginFailed(packet: try await login(connection, "erin"))
                #expect(stillLocked.retryAfter == 30_000)

                center.clock.advance(seconds: 30)
                _ = try LoginOK(packet: try await login(connection, "erin"))
            }
        }
    }

    @Test func manyAddressesFromOneSourceAreThrottledTogether() async throws {
        try await withCenter { center in
            try await center.withConnection { connection in
                // Guessing across accounts: the source's allowance (4 × 3 free, then slow-downs) runs out.
                var replies: [LoginFailed] = []
                for index in 0..<14 {
                    replies.append(try LoginFailed(packet: try await login(connection, "user\(index)", "wrong password")))
                }
                #expect(replies.prefix(12).allSatisfy { $0.retryAfter == nil && $0.errorCode == .invalidCredentials })
                #expect(replies[12].errorCode == .invalidCredentials && replies[12].retryAfter == 1000)
                // The next account from that source is refused before its password is even checked.
                #expect(replies[13].errorCode == .rateLimited && replies[13].retryAfter == 1000)
            }
        }
    }

    @Test func aNewDeviceIsReportedAndRecorded() async throws {
        try await withCenter { center in
            try await center.withConnection { connection in
                let account = try RegisterOK(packet: try await register(connection, "frank"))
                let first = try LoginOK(packet: try await login(connection, "frank", device: testDevice("laptop")))
                let again = try LoginOK(packet: try await login(connection, "frank", device: testDevice("laptop")))
                let phone = try LoginOK(packet: try await login(connection, "frank", device: testDevice("phone")))
                #expect(first.newDevice && !again.newDevice && phone.newDevice)
                #expect(try await center.store.devices(accountID: account.userID) == [testDevice("laptop"), testDevice("phone")])
                let audit = try await center.store.auditLog()
                #expect(audit.map(\.outcome) == [.registered, .newDevice, .loggedIn, .newDevice])
                // Each login's entry names the account, the address and the device it came from.
                #expect(audit.dropFirst().map(\.userID) == [account.userID, account.userID, account.userID])
                #expect(audit.dropFirst().map(\.username) == Array(repeating: account.username, count: 3))
                #expect(audit.dropFirst().map(\.device) == [testDevice("laptop"), testDevice("laptop"), testDevice("phone")])
            }
        }
    }

    @Test func loginWithoutADeviceFingerprintIsRefused() async throws {
        try await withCenter { center in
            try await center.withConnection { connection in
                _ = try RegisterOK(packet: try await register(connection, "gina"))
                let missing = try LoginFailed(packet: try await connection.request(Login(username: "gina", password: Self.password)))
                #expect(missing.errorCode == .invalidDevice)
                let raw = try LoginFailed(packet: try await login(connection, "gina", device: "my-mac-address"))
                #expect(raw.errorCode == .invalidDevice)
            }
        }
    }

    @Test func tokensVerifyOfflineAndExpire() async throws {
        try await withCenter { center in
            let (account, ok) = try await center.withConnection { connection in
                let account = try RegisterOK(packet: try await register(connection, "hank"))
                return (account, try LoginOK(packet: try await login(connection, "hank")))
            }

            let verifier = await TokenVerifier(publicKey: TestLoginCenter.tokenKey.publicKey, issuer: TestLoginCenter.issuer, leeway: 0)
            let claims = try await verifier.verify(ok.token, now: center.clock.date)
            #expect(claims.address == "hank@alpha.example")
            #expect(claims.userID == account.userID)
            #expect(claims.sessionID == ok.sessionID)
            #expect(claims.deviceHash == TokenClaims.deviceHash(of: testDevice("laptop")))

            center.clock.advance(seconds: 24 * 3600 - 1)
            _ = try await verifier.verify(ok.token, now: center.clock.date)
            center.clock.advance(seconds: 1)
            let expired = center.clock.date
            await expectCode(.tokenExpired) { try await verifier.verify(ok.token, now: expired) }
        }
    }

    @Test func tamperedForeignAndMalformedTokensAreRefusedEachWithItsCode() async throws {
        try await withCenter { center in
            let token = try await center.withConnection { connection in
                _ = try RegisterOK(packet: try await register(connection, "ivan"))
                return try LoginOK(packet: try await login(connection, "ivan")).token
            }
            let now = center.clock.date
            let verifier = await TokenVerifier(publicKey: TestLoginCenter.tokenKey.publicKey, issuer: TestLoginCenter.issuer)

            // Another payload under the original signature.
            var parts = token.split(separator: ".").map(String.init)
            let forgedClaims = #"{"iss":"myim:test","sub":"root@alpha.example","uid":1,"sid":"x","dev":"y","iat":1800000000,"exp":1800003600}"#
            parts[1] = Data(forgedClaims.utf8).base64EncodedString()
                .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
            await expectCode(.tokenBadSignature) { try await verifier.verify(parts.joined(separator: "."), now: now) }

            // Signed by another key.
            let foreign = await TokenIssuer(signingKey: Curve25519.Signing.PrivateKey(), issuer: TestLoginCenter.issuer)
            let foreignToken = try await foreign.issue(address: "ivan@alpha.example", userID: 1, sessionID: "s", device: "d", now: now).token
            await expectCode(.tokenBadSignature) { try await verifier.verify(foreignToken, now: now) }

            // Right key, wrong issuer.
            let otherCluster = await TokenIssuer(signingKey: TestLoginCenter.tokenKey, issuer: "myim:other")
            let otherToken = try await otherCluster.issue(address: "ivan@alpha.example", userID: 1, sessionID: "s", device: "d", now: now).token
            await expectCode(.tokenWrongIssuer) { try await verifier.verify(otherToken, now: now) }

            await expectCode(.tokenMalformed) { try await verifier.verify("not-a-token", now: now) }
            await expectCode(.tokenMalformed) { try await verifier.verify("a.b.c", now: now) }
            await expectCode(.tokenTooLong) { try await verifier.verify(String(repeating: "a", count: 5000), now: now) }
        }
    }

    @Test func aTokenIsVerifiedOnceButItsTimesOnEveryUse() async throws {
        let issued = Date(timeIntervalSince1970: 1_800_000_000)
        let issuer = await TokenIssuer(signingKey: TestLoginCenter.tokenKey, issuer: TestLoginCenter.issuer, lifetime: 3600)
        let token = try await issuer.issue(address: "jo@alpha.example", userID: 7, sessionID: "s-jo", device: "d", now: issued).token
        let verifier = await TokenVerifier(publicKey: TestLoginCenter.tokenKey.publicKey, issuer: TestLoginCenter.issuer, leeway: 0)

        let first = try await verifier.verify(token, now: issued)
        let again = try await verifier.verify(token, now: issued.addingTimeInterval(60))
        #expect(again == first)
        #expect(verifier.signatureVerifications == 1, "a token verified once is remembered")

        // The remembered token is still refused before it was issued and once it has expired.
        await expectCode(.tokenNotYetValid) { try await verifier.verify(token, now: issued.addingTimeInterval(-5)) }
        await expectCode(.tokenExpired) { try await verifier.verify(token, now: issued.addingTimeInterval(3600)) }
        #expect(verifier.signatureVerifications == 1)

        // One byte changed in the remembered token's signature: verified, and refused.
        var tampered = Array(token.utf8)
        tampered[tampered.count - 2] = tampered[tampered.count - 2] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        await expectCode(.tokenBadSignature) { try await verifier.verify(String(decoding: tampered, as: UTF8.self), now: issued) }
        #expect(verifier.signatureVerifications == 2)

        // A token that was refused is not remembered: refused again, by its signature.
        await expectCode(.tokenBadSignature) { try await verifier.verify(String(decoding: tampered, as: UTF8.self), now: issued) }
        #expect(verifier.signatureVerifications == 3)
    }

    @Test func theVerifiedTokensRememberedAreBounded() async throws {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let issuer = await TokenIssuer(signingKey: TestLoginCenter.tokenKey, issuer: TestLoginCenter.issuer)
        var tokens: [String] = []
        for index in 0..<10 {
            tokens.append(try await issuer.issue(address: "u\(index)@alpha.example", userID: Int64(index), sessionID: "s\(index)", device: "d", now: now).token)
        }
        let verifier = await TokenVerifier(publicKey: TestLoginCenter.tokenKey.publicKey, issuer: TestLoginCenter.issuer, memoCapacity: 4)
        for token in tokens { _ = try await verifier.verify(token, now: now) }
        #expect(verifier.signatureVerifications == 10)

        // The last two are remembered; the first, seen eight tokens ago, was forgotten.
        _ = try await verifier.verify(tokens[9], now: now)
        _ = try await verifier.verify(tokens[8], now: now)
        #expect(verifier.signatureVerifications == 10)
        let claims = try await verifier.verify(tokens[0], now: now)
        #expect(claims.address == "u0@alpha.example")
        #expect(verifier.signatureVerifications == 11)

        // A token in use stays: token 9, used between four newer tokens, outlives them.
        let before = verifier.signatureVerifications
        _ = try await verifier.verify(tokens[9], now: now)
        for token in tokens[1...2] { _ = try await verifier.verify(token, now: now) }
        _ = try await verifier.verify(tokens[9], now: now)
        for token in tokens[3...4] { _ = try await verifier.verify(token, now: now) }
        _ = try await verifier.verify(tokens[9], now: now)
        #expect(verifier.signatureVerifications == before + 4)

        // Capacity 0 remembers nothing.
        let forgetful = await TokenVerifier(publicKey: TestLoginCenter.tokenKey.publicKey, issuer: TestLoginCenter.issuer, memoCapacity: 0)
        _ = try await forgetful.verify(tokens[0], now: now)
        _ = try await forgetful.verify(tokens[0], now: now)
        #expect(forgetful.signatureVerifications == 2)
    }

    private func expectCode(_ code: ErrorCode, _ body: () async throws -> TokenClaims, sourceLocation: SourceLocation = #_sourceLocation) async {
        do {
            _ = try await body()
            Issue.record("expected token error \(code), the token was accepted", sourceLocation: sourceLocation)
        } catch let error as TokenError {
            #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("expected token error \(code), got \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func otherRequestsGetCodedErrorsAndTheConnectionStaysUsable() async throws {
        try await withCenter { center in
            try await center.withConnection { connection in
                let list = try ErrorMessage(packet: try await connection.request(ServerListQuery()))
                #expect(list.code == .notLoggedIn)
                let chat = try ErrorMessage(packet: try await connection.request(
                    Chat(target: .user("bob@alpha.example"), content: .text("hi"), clientMessageID: "1")))
                #expect(chat.code == .notSupportedHere)
                // A login missing its password: the decoder names the key.
                let broken = try ErrorMessage(packet: try await connection.send(Packet(type: 1, body: ["username": .string("x")])))
                #expect(broken.code == .missingKey && broken.data.contains("password"))
                let pong = try Pong(packet: try await connection.request(Ping(time: 42)))
                #expect(pong.time == 42)
            }
        }
    }

    @Test func thePasswordIsNeverStoredNorSentInClear() async throws {
        let secret = "Unmistakable-Secret-Phrase-7731"
        let logs = LogSink()
        try await withCenter(logger: Logger(label: "test") { _ in CapturingLogHandler(sink: logs) }) { center in
            let recorder = ByteRecorder()
            try await withRecordingConnection(port: center.port, fingerprint: center.fingerprint, recorder: recorder) { connection in
                _ = try RegisterOK(packet: try await register(connection, "judy", secret))
                _ = try LoginOK(packet: try await login(connection, "judy", secret))
            }

            let wire = recorder.bytes
            #expect(wire.count > 500)
            #expect(!contains(wire, Array(secret.utf8)), "the password travelled in clear")
            #expect(!contains(wire, Array("judy".utf8)), "the user name travelled in clear")

            // The SQLite file, its WAL and everything else in the directory.
            for file in try FileManager.default.contentsOfDirectory(atPath: center.directory.path) {
                let data = try Data(contentsOf: center.directory.appendingPathComponent(file))
                #expect(!contains(Array(data), Array(secret.utf8)), "the password is in \(file)")
            }
            // Everything the login center logged, at trace level.
            #expect(logs.text.contains("judy@alpha.example"), "the capture saw the login center's lines")
            #expect(!logs.text.contains(secret), "the password is in the logs")
            let stored = try #require(try await center.store.account(name: "judy", domain: "alpha.example"))
            #expect(stored.credential.hash.count == 32 && stored.credential.salt.count == 16)
        }
    }

    private func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard haystack.count >= needle.count else { return false }
        return (0...(haystack.count - needle.count)).contains { haystack[$0..<($0 + needle.count)].elementsEqual(needle) }
    }

    /// A client connection with a handler below the secure channel that keeps every byte.
    private func withRecordingConnection(
        port: Int, fingerprint: KeyFingerprint, recorder: ByteRecorder, _ body: (RawConnection) async throws -> Void
    ) async throws {
        let connection = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let secure = SecureChannelHandler(client: ClientChannelStateMachine(policy: .pinned(fingerprint)))
                    try channel.pipeline.syncOperations.addHandlers(RecordingHandler(recorder: recorder), secure)
                    return SecureConnection(
                        channel: try NIOAsyncChannel<Packet, Packet>(wrappingChannelSynchronously: channel), session: secure.established)
                }
            }
        _ = try await connection.session.get()
        try await RawConnection.with(connection, body)
    }
}

/// Every byte that crossed a connection, both ways.
final class ByteRecorder: Sendable {
    private let storage = Mutex<[UInt8]>([])
    var bytes: [UInt8] { storage.withLock { $0 } }
    func append(_ buffer: ByteBuffer) { storage.withLock { $0.append(contentsOf: buffer.readableBytesView) } }
}

private final class RecordingHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let recorder: ByteRecorder

    init(recorder: ByteRecorder) { self.recorder = recorder }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        recorder.append(unwrapInboundIn(data))
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        recorder.append(unwrapOutboundIn(data))
        context.write(data, promise: promise)
    }
}
