import Crypto
import Foundation
import Logging
import Metrics
import MyIMAuth
import MyIMLink
import MyIMSecureChannel
import MyIMTransport
import MyIMWire
import NIOCore
import Synchronization

/// What the login center needs to run; ``LoginCenterConfiguration/init(topology:keys:)``
/// builds it from `topology.yaml`.
public struct LoginCenterConfiguration: Sendable {
    /// The login center's node name (said in the directory's `LinkWelcome`).
    public var name = "login"
    public var host: String
    public var port: Int
    public var identity: ServerIdentityKey
    /// Each served domain and its endpoints (unsigned; the login center signs them).
    public var servers: [String: [ServerEntry]]
    /// The domain of a bare user name: the first one in the topology.
    public var defaultDomain: String
    public var databasePath: String
    public var tokenSigningKey: Curve25519.Signing.PrivateKey
    /// The token issuer, e.g. `myim:myim-local`.
    public var issuer: String
    /// Seconds, at most 24 h.
    public var tokenLifetime: TimeInterval = maximumTokenLifetime
    public var scrypt: ScryptParameters = .standard
    /// Hashes run at once; nil: one per event loop of NIO's singleton group, read when the
    /// login center starts, that is one per CPU the process may use (`myim` matches its loops to
    /// a `taskset` affinity, and `NIO_SINGLETON_GROUP_LOOP_COUNT` sets both). Two hashes
    /// time-sliced on one CPU hold twice the memory (16 MiB each) and, measured, finish 2–4 %
    /// later than one after the other.
    public var hashingThreads: Int?
    public var rateLimit = LoginRateLimiter.Policy()
    public var handshakeTimeout: TimeAmount = .seconds(10)
    /// Where centers link to the directory; nil: no directory served.
    public var directory: DirectoryListenConfiguration?
    /// Milliseconds since 1970; injectable so that tests can move time.
    public var clock: @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) }

    public init(
        host: String, port: Int, identity: ServerIdentityKey, servers: [String: [ServerEntry]], defaultDomain: String,
        databasePath: String, tokenSigningKey: Curve25519.Signing.PrivateKey, issuer: String
    ) {
        self.host = host
        self.port = port
        self.identity = identity
        self.servers = servers
        self.defaultDomain = defaultDomain
        self.databasePath = databasePath
        self.tokenSigningKey = tokenSigningKey
        self.issuer = issuer
    }
}

/// The login center: registers and authenticates users over the secure channel and hands
/// out tokens and signed server lists (seed 004's separate login interface).
///
/// Each connection is served in order, one request at a time; a failed login leaves the
/// connection open so that the client can try again (seed 000's NCK loop).
public final class LoginCenter: Sendable {
    public let configuration: LoginCenterConfiguration
    public let store: any AccountStore
    private let hasher: PasswordHasher
    private let limiter: LoginRateLimiter
    private let issuer: TokenIssuer
    private let serverLists = Mutex<[String: ServerList]>([:])
    /// Who hears account notices, per domain: the centers' directory links.
    private let noticeSubscribers = Mutex<(next: Int, byDomain: [String: [Int: @Sendable (AccountNotice) async -> Void]])>((0, [:]))
    let logger: Logger
    /// Requests being answered now, and whether a graceful shutdown has begun.
    private let work = Mutex<(inFlight: Int, draining: Bool)>((0, false))

    public init(configuration: LoginCenterConfiguration, store: any AccountStore, logger: Logger = Logger(label: "myim.login-center")) async {
        self.configuration = configuration
        self.store = store
        self.logger = logger
        hasher = PasswordHasher(
            parameters: configuration.scrypt, threads: configuration.hashingThreads ?? NIOSingletons.groupLoopCountSuggestion)
        limiter = LoginRateLimiter(policy: configuration.rateLimit)
        issuer = await TokenIssuer(
            signingKey: configuration.tokenSigningKey, issuer: configuration.issuer, lifetime: configuration.tokenLifetime)
    }

    /// Binds the configured address (port 0 picks one) and returns the listener to ``serve(_:)``.
    public func bind() async throws -> NIOAsyncChannel<SecureConnection, Never> {
        try await SecureListener.bind(
            host: configuration.host, port: configuration.port, identity: configuration.identity,
            handshakeTimeout: configuration.handshakeTimeout)
    }

    /// Serves every connection the listener accepts until it closes or the task is cancelled.
    public func serve(_ listener: NIOAsyncChannel<SecureConnection, Never>) async throws {
        try await withThrowingDiscardingTaskGroup { group in
            try await listener.executeThenClose { inbound in
                for try await connection in inbound {
                    group.addTask { await self.handle(connection) }
                }
            }
        }
    }

    /// A graceful shutdown: requests from now on are answered 306 (busy, retry); returns once
    /// the logins and registrations under way have been answered (their writes done), or after
    /// `timeout`. Then cancel ``serve(_:)`` and ``serveDirectory(_:)``.
    public func drain(timeout: Duration = .seconds(10)) async {
        let busy = work.withLock { work in
            work.draining = true
            return work.inFlight
        }
        logger.notice("draining: answering the requests under way", metadata: ["in_flight": "\(busy)"])
        let deadline = ContinuousClock.now + timeout
        while work.withLock({ $0.inFlight }) > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        logger.notice("drained", metadata: ["in_flight_left": "\(work.withLock { $0.inFlight })"])
    }

    /// Stops the hashing threads.
    public func shutdown() async throws {
        try await hasher.shutdown()
    }

    private func handle(_ connection: SecureConnection) async {
        let source = connection.channel.channel.remoteAddress?.ipAddress ?? "unknown"
        var logger = logger
        logger[metadataKey: "source"] = "\(source)"
        do {
            try await connection.channel.executeThenClose { inbound, outbound in
                do {
                    _ = try await connection.session.get()
                    Counter(label: "myim_handshakes_total", dimensions: [("role", "login-center"), ("result", "ok"), ("code", "0")]).increment()
                } catch {
                    let code = (error as? SecureChannelError).map { "\($0.code.rawValue)" } ?? "io"
                    Counter(label: "myim_handshakes_total", dimensions: [("role", "login-center"), ("result", "failed"), ("code", code)]).increment()
                    throw error
                }
                var session = LoginSession(source: source)
                for try await packet in inbound {
                    let reply = await respond(to: packet, session: &session, logger: logger)
                    Self.count(request: packet.type, reply: reply)
                    try await outbound.write(reply)
                    if session.closing { break }
                }
            }
        } catch {
            logger.debug("connection ended", metadata: ["error": "\(error)"])
        }
    }

    /// The reply to one request. Never throws: every failure is a reply with a code.
    public func respond(to packet: Packet, session: inout LoginSession, logger: Logger) async -> Packet {
        let admitted = work.withLock { work in
            guard !work.draining else { return false }
            work.inFlight += 1
            return true
        }
        guard admitted else {
            return ErrorMessage(code: .serverBusy, data: "the login center is shutting down; try again shortly").packet
        }
        defer { work.withLock { $0.inFlight -= 1 } }
        do {
            switch MessageType(rawValue: packet.type) {
            case .login:
                return try await login(Login(packet: packet), session: &session, logger: logger).packet
            case .register:
                return try await register(Register(packet: packet), session: session, logger: logger).packet
            case .ping:
                let ping = try Ping(packet: packet)
                return Pong(time: ping.time).packet
            case .serverListQuery:
                guard let domain = session.domain else {
                    return ErrorMessage(code: .notLoggedIn, data: "log in first: the server list is the one of your domain").packet
                }
                return try serverList(for: domain).packet
            case .quit:
                session.closing = true
                return QuitAck(lastSeen: configuration.clock()).packet
            default:
                return ErrorMessage(
                    code: .notSupportedHere,
                    data: "message \(packet.type) is not served by the login center; after logging in, connect to an endpoint").packet
            }
        } catch let error as WireError {
            return ErrorMessage(code: error.code, data: error.message).packet
        } catch let refusal as LoginRefusal {
            return ErrorMessage(code: refusal.code, data: refusal.message).packet
        } catch {
            logger.error("request failed", metadata: ["type": "\(packet.type)", "error": "\(error)"])
            return ErrorMessage(code: .internalError, data: "the login center failed to handle message \(packet.type); try again").packet
        }
    }

    // MARK: - Register (2 → 12 / 13)

    private func register(_ request: Register, session: LoginSession, logger: Logger) async throws -> any WireMessage {
        let now = configuration.clock()
        do {
            let (name, domain) = try address(request.username)
            try AccountRules.checkPassword(request.password, name: name)
            if try await store.account(name: name, domain: domain) != nil {
                throw LoginRefusal(.nameTaken, "\(name)@\(domain) is taken; choose another name")
            }
            let credential = try await hasher.makeCredential(password: request.password)
            let account: Account
            do {
                account = try await store.createAccount(name: name, domain: domain, credential: credential, now: now)
            } catch AccountStoreError.nameTaken(let address) {
                throw LoginRefusal(.nameTaken, "\(address) is taken; choose another name")
            }
            try await store.audit(LoginAuditEntry(
                time: now, userID: account.id, username: account.address, source: session.source, outcome: .registered))
            logger.info("registered", metadata: ["user": "\(account.address)"])
            return RegisterOK(userID: account.id, username: account.address)
        } catch let refusal as LoginRefusal {
            return RegisterFailed(errorCode: refusal.code, message: refusal.message)
        }
    }

    // MARK: - Login (1 → 9 / 11)

    private func login(_ request: Login, session: inout LoginSession, logger: Logger) async throws -> any WireMessage {
        let now = configuration.clock()
        let tried = request.username.lowercased()
        do {
            let (name, domain) = try address(request.username)
            let address = "\(name)@\(domain)"
            guard let device = request.device else {
                throw LoginRefusal(.invalidDevice, "send this device's fingerprint ('device') with the login")
            }
            try AccountRules.checkDevice(device)
            if let wait = limiter.retryAfter(account: address, source: session.source, now: now) {
                try await store.audit(LoginAuditEntry(
                    time: now, username: address, source: session.source, device: device, outcome: .rateLimited,
                    code: ErrorCode.rateLimited.rawValue))
                throw LoginRefusal(.rateLimited, "too many failed logins; try again in \(Self.seconds(wait)) s", retryAfter: wait)
            }
            guard let account = try await store.account(name: name, domain: domain),
                  try await hasher.verify(password: request.password, against: account.credential)
            else {
                return try await failedLogin(address: address, device: device, session: session, now: now, logger: logger)
            }
            limiter.recordSuccess(account: address)
            let newDevice = try await store.recordLogin(
                accountID: account.id, username: address, device: device, source: session.source, now: now)
            let sessionID = randomBytes(16).hexString
            let (token, claims) = try await issuer.issue(
                address: address, userID: account.id, sessionID: sessionID, device: device,
                now: Date(timeIntervalSince1970: Double(now) / 1000))
            session.domain = domain
            session.address = address
            if newDevice {
                await publish(AccountNotice(user: address, kind: "new_device", time: now, device: device, source: session.source), domain: domain)
            }
            logger.info("logged in", metadata: ["user": "\(address)", "session": "\(sessionID)", "new_device": "\(newDevice)"])
            return LoginOK(
                userID: account.id, username: address, token: token, sessionID: sessionID,
                expires: Int64(claims.expiration.value.timeIntervalSince1970 * 1000), newDevice: newDevice,
                servers: try serverList(for: domain))
        } catch let refusal as LoginRefusal {
            if refusal.code != .rateLimited {
                try await store.audit(LoginAuditEntry(
                    time: now, username: tried, source: session.source, device: request.device, outcome: .refused, code: refusal.code.rawValue))
            }
            return LoginFailed(errorCode: refusal.code, message: refusal.message, retryAfter: refusal.retryAfter)
        }
    }

    private func failedLogin(address: String, device: String, session: LoginSession, now: Int64, logger: Logger) async throws -> LoginFailed {
        let wait = limiter.recordFailure(account: address, source: session.source, now: now)
        try await store.audit(LoginAuditEntry(
            time: now, username: address, source: session.source, device: device, outcome: .wrongPassword,
            code: ErrorCode.invalidCredentials.rawValue))
        logger.notice("login failed", metadata: ["user": "\(address)"])
        var message = "wrong user name or password"
        if let wait { message += "; try again in \(Self.seconds(wait)) s" }
        return LoginFailed(errorCode: .invalidCredentials, message: message, retryAfter: wait)
    }

    // MARK: - Helpers

    private func address(_ input: String) throws(LoginRefusal) -> (name: String, domain: String) {
        try AccountRules.address(input, defaultDomain: configuration.defaultDomain, domains: Set(configuration.servers.keys))
    }

    /// The signed server list of `domain`, re-signed when an hour old.
    func serverList(for domain: String) throws -> ServerList {
        let now = configuration.clock()
        if let cached = serverLists.withLock({ $0[domain] }), now - cached.issued < 3_600_000, cached.issued <= now {
            return cached
        }
        let servers = (configuration.servers[domain] ?? []).sorted { ($0.priority, $0.name) < ($1.priority, $1.name) }
        let list = try ServerListSignature.sign(domain: domain, servers: servers, issued: now, with: configuration.identity)
        serverLists.withLock { $0[domain] = list }
        return list
    }

    /// `myim_logins_total{result, code}` and `myim_registrations_total{result, code}`.
    private static func count(request: UInt32, reply: Packet) {
        let label: String
        switch MessageType(rawValue: request) {
        case .login: label = "myim_logins_total"
        case .register: label = "myim_registrations_total"
        default: return
        }
        let ok = reply.type == MessageType.loginOK.rawValue || reply.type == MessageType.registerOK.rawValue
        let code: Int64 = if case .int(let value)? = reply.body["errorcode"] { value } else if case .int(let value)? = reply.body["code"] { value } else { 0 }
        Counter(label: label, dimensions: [("result", ok ? "ok" : "failed"), ("code", "\(code)")]).increment()
    }

    // MARK: - Account notices

    /// Registers a consumer of `domain`'s account notices; returns what ``unsubscribe(_:)`` takes.
    func subscribe(domain: String, _ sink: @escaping @Sendable (AccountNotice) async -> Void) -> Int {
        noticeSubscribers.withLock { state in
            state.next += 1
            state.byDomain[domain, default: [:]][state.next] = sink
            return state.next
        }
    }

    func unsubscribe(_ id: Int) {
        noticeSubscribers.withLock { state in
            for domain in state.byDomain.keys { state.byDomain[domain]?[id] = nil }
        }
    }

    /// Tells the centers of the notice's domain (best effort: a center that is not linked
    /// now does not hear it; the client that logged in was told in message 9's `new_device`).
    /// The login waits for it (so that the alert reaches the user's session before the new
    /// session can kick it) but at most half a second: a stuck link delays no login.
    private func publish(_ notice: AccountNotice, domain: String) async {
        let sinks = noticeSubscribers.withLock { Array(($0.byDomain[domain] ?? [:]).values) }
        guard !sinks.isEmpty else { return }
        let done = DeliveredCount()
        for sink in sinks {
            Task {
                await sink(notice)
                done.count.withLock { $0 += 1 }
            }
        }
        let deadline = ContinuousClock.now + .milliseconds(500)
        while done.count.withLock({ $0 }) < sinks.count, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(1))
        }
    }

    private static func seconds(_ milliseconds: Int64) -> Int64 { (milliseconds + 999) / 1000 }
}

/// What the login center knows about one connection.
public struct LoginSession: Sendable {
    /// The client's IP address, for rate limits and the audit.
    public var source: String
    /// Set by a successful login on this connection.
    public var address: String?
    public var domain: String?
    /// The client quit: the reply is the last message.
    public var closing = false

    public init(source: String) { self.source = source }
}

/// How many notice sinks have finished, shared with their tasks.
private final class DeliveredCount: Sendable {
    let count = Mutex(0)
}
