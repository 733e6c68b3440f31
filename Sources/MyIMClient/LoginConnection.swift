import MyIMAuth
import MyIMSecureChannel
import MyIMTransport
import MyIMWire
import NIOCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One secure connection to the login center: register (2 → 12 / 13) and log in
/// (1 → 9 / 11), one request at a time.
///
/// A failed login (11) leaves the connection open, so the same connection can try again
/// (seed 000's NCK loop). Call ``close()`` when done.
public actor LoginConnection {
    /// The login center's address.
    public nonisolated let server: ServerAddress
    /// What the handshake agreed, including the login center's identity key.
    public nonisolated let session: SecureChannelSession
    /// Where the device key and the session are kept.
    public nonisolated let home: ClientHome
    /// Sent as 1's `client`, e.g. `myim-cli/0.1.0`.
    public nonisolated let client: String

    private let requests: AsyncStream<Request>.Continuation
    private let worker: Task<Void, Never>

    /// One request and who waits for its reply.
    private struct Request: Sendable {
        var packet: Packet
        var reply: CheckedContinuation<Packet, any Error>
    }

    /// Connects to the login center at `server` and completes the handshake.
    ///
    /// - Parameters:
    ///   - server: `host:port`; the default is `127.0.0.1:7000`.
    ///   - pin: the login center's fingerprint (`--pin`): only that key is accepted. When
    ///     `home`'s `known_servers` has no key for `server` yet, the pinned one is recorded.
    ///     Without a pin: trust on first use through `known_servers`: a server with a
    ///     recorded key must present that key (else 204, with what to do), and a server
    ///     seen for the first time has its key recorded.
    ///   - home: the client directory.
    ///   - client: the client name and version sent at login.
    /// - Throws: ``ClientError``.
    public static func open(
        server: String = ServerAddress.defaultLoginCenter.description, pin: KeyFingerprint? = nil, home: ClientHome,
        client: String = "myim-cli"
    ) async throws(ClientError) -> LoginConnection {
        let address = try ServerAddress(parsing: server)
        var known = try home.knownServers()
        let recorded = known.entries[address.description]
        let policy: ServerKeyPolicy = pin.map { .pinned($0) } ?? known.policy(for: address.description)
        let connection: SecureConnection
        let session: SecureChannelSession
        do {
            (connection, session) = try await SecureClient.connect(host: address.host, port: address.port, policy: policy)
        } catch let error as SecureChannelError {
            throw ClientError.channel(error, server: address, recorded: recorded, pinned: pin, knownServersPath: home.knownServersPath)
        } catch {
            throw ClientError(.notEstablished, "cannot connect to the login center at \(address): \(connectionFailure(error))")
        }
        if recorded == nil, pin != nil || session.serverKeyFirstSeen {
            do {
                try home.prepare()
                try known.record(session.serverKey.fingerprint, for: address.description)
            } catch let error as ClientError {
                try? await connection.channel.channel.close()
                throw error
            } catch {
                try? await connection.channel.channel.close()
                throw ClientError(.internalError, "\(error)")
            }
        }
        return LoginConnection(connection: connection, session: session, server: address, home: home, client: client)
    }

    /// Why a TCP connection failed, in a few words.
    private static func connectionFailure(_ error: any Error) -> String {
        var error = error
        if let failure = error as? NIOConnectionError, let first = failure.connectionErrors.first { error = first.error }
        if let io = error as? IOError { return String(cString: strerror(io.errnoCode)).lowercased() }
        if case ChannelError.connectTimeout = error { return "timed out" }
        return "\(error)"
    }

    private init(connection: SecureConnection, session: SecureChannelSession, server: ServerAddress, home: ClientHome, client: String) {
        self.server = server
        self.session = session
        self.home = home
        self.client = client
        let (stream, continuation) = AsyncStream<Request>.makeStream()
        requests = continuation
        worker = Task { await Self.serve(connection, requests: stream, continuation: continuation) }
    }

    /// Sends each request and hands it the next packet the server sends, in order, until
    /// the requests end or the connection does; then fails whatever is still waiting.
    private static func serve(_ connection: SecureConnection, requests: AsyncStream<Request>, continuation: AsyncStream<Request>.Continuation) async {
        var failure: ClientError = closedError
        do {
            try await connection.channel.executeThenClose { inbound, outbound in
                var replies = inbound.makeAsyncIterator()
                for await request in requests {
                    do {
                        try await outbound.write(request.packet)
                        guard let reply = try await replies.next() else { throw closedError }
                        request.reply.resume(returning: reply)
                    } catch {
                        request.reply.resume(throwing: Self.clientError(error))
                        throw error
                    }
                }
            }
        } catch {
            failure = clientError(error)
        }
        continuation.finish()
        for await request in requests { request.reply.resume(throwing: failure) }
    }

    private static let closedError = ClientError(.notEstablished, "the login center closed the connection")

    private static func clientError(_ error: any Error) -> ClientError {
        switch error {
        case let error as ClientError: error
        case let error as SecureChannelError: ClientError(error.code, "the connection to the login center failed: \(error.message)")
        default: ClientError(.notEstablished, "the connection to the login center failed: \(error)")
        }
    }

    /// Sends `message` and returns the server's reply.
    private func request(_ message: some WireMessage) async throws(ClientError) -> Packet {
        let packet = message.packet
        do {
            return try await withCheckedThrowingContinuation { reply in
                if case .terminated = requests.yield(Request(packet: packet, reply: reply)) {
                    reply.resume(throwing: Self.closedError)
                }
            }
        } catch {
            throw Self.clientError(error)
        }
    }

    /// Decodes `packet` as `T`; a malformed reply is a ``ClientError`` with the wire code.
    private func decode<T: WireMessage>(_ packet: Packet, as _: T.Type) throws(ClientError) -> T {
        do { return try T(packet: packet) } catch { throw ClientError(error.code, "the login center sent a malformed \(T.self): \(error.message)") }
    }

    // MARK: - Requests

    /// Creates the account `address` (or a bare name in the login center's default domain).
    ///
    /// - Throws: ``ClientError`` with the server's code and message on 13 (e.g. 301, the
    ///   name is taken) or 20.
    public func register(address: String, password: String) async throws(ClientError) -> RegisterOK {
        let reply = try await request(Register(username: address.trimmingWhitespace(), password: password))
        switch MessageType(rawValue: reply.type) {
        case .registerOK:
            return try decode(reply, as: RegisterOK.self)
        case .registerFailed:
            let failed = try decode(reply, as: RegisterFailed.self)
            throw ClientError(failed.errorCode, failed.message)
        case .error:
            let error = try decode(reply, as: ErrorMessage.self)
            throw ClientError(error.code, error.data)
        default:
            throw ClientError.unexpectedReply(reply, to: "register request")
        }
    }

    /// Logs in as `address` from this device, checks the server list and saves the session
    /// into ``home``.
    ///
    /// Sends this home's ``ClientHome/deviceFingerprint(for:)`` and ``client``. The server
    /// list in the reply must be signed by the login center's identity key (the one this
    /// connection's handshake verified) and be for the user's domain; otherwise the login is
    /// refused here and nothing is saved. Endpoints whose fingerprint cannot be parsed are
    /// left out of the saved list (the protocol forbids connecting to them).
    ///
    /// - Throws: ``ClientError``: the server's code and message on 11 (with ``ClientError/retryAfter``
    ///   when rate-limited; the connection stays usable for another try) or 20; 202 for a
    ///   missing or badly signed server list; 305 for a list of another domain.
    public func login(address: String, password: String) async throws(ClientError) -> SavedSession {
        let username = address.trimmingWhitespace()
        let device = try home.deviceFingerprint(for: username)
        let reply = try await request(Login(username: username, password: password, device: device, client: client))
        switch MessageType(rawValue: reply.type) {
        case .loginOK:
            let session = try checkedSession(try decode(reply, as: LoginOK.self), requested: username, device: device)
            try home.saveSession(session)
            return session
        case .loginFailed:
            let failed = try decode(reply, as: LoginFailed.self)
            throw ClientError(failed.errorCode, failed.message, retryAfter: failed.retryAfter)
        case .error:
            let error = try decode(reply, as: ErrorMessage.self)
            throw ClientError(error.code, error.data)
        default:
            throw ClientError.unexpectedReply(reply, to: "login request")
        }
    }

    /// The session to save from 9, once its server list checks out.
    private func checkedSession(_ ok: LoginOK, requested: String, device: String) throws(ClientError) -> SavedSession {
        let address = ok.username.lowercased()
        guard let at = address.lastIndex(of: "@"), address.index(after: at) < address.endIndex else {
            throw ClientError(.invalidField, "the login center answered with '\(ok.username)', which is not a full address")
        }
        if requested.contains("@"), requested.lowercased() != address {
            throw ClientError(.invalidField, "the login center logged in '\(ok.username)' instead of '\(requested)'; refusing the session")
        }
        let domain = String(address[address.index(after: at)...])
        let fingerprint = session.serverKey.fingerprint
        guard let list = ok.servers else {
            throw ClientError(.badSignature, "the login center at \(server) sent no server list with the login; refusing the session")
        }
        guard !list.signature.isEmpty, ServerListSignature.isValid(list, signedBy: session.serverKey) else {
            throw ClientError(.badSignature, """
                the server list for \(list.domain) is not signed by the login center's key \(fingerprint); \
                refusing it (the list may have been tampered with)
                """)
        }
        guard list.domain.lowercased() == domain else {
            throw ClientError(.unknownDomain, "the login center sent the server list of \(list.domain), not of \(domain); refusing it")
        }
        let servers = list.servers.compactMap { entry -> SavedServer? in
            guard let fingerprint = KeyFingerprint(entry.fingerprint), (1...65535).contains(entry.port) else { return nil }
            return SavedServer(name: entry.name, host: entry.host, port: Int(entry.port), priority: entry.priority, fingerprint: fingerprint.description)
        }
        return SavedSession(
            address: address, userID: ok.userID, token: ok.token, sessionID: ok.sessionID, expires: ok.expires, device: device,
            newDevice: ok.newDevice, loginServer: server.description, loginServerFingerprint: fingerprint.description,
            domain: domain, servers: servers, serverListIssued: list.issued)
    }

    /// Closes the connection; requests still waiting fail.
    public func close() async {
        requests.finish()
        await worker.value
    }

    deinit {
        requests.finish()
    }
}
