import Foundation

/// What a successful login leaves on disk (`session.json` in the ``ClientHome``): the token,
/// who it is for, and the verified server list of the user's domain.
///
/// The password is not part of it. JSON keys are snake_case (`user_id`, `session_id`, …).
public struct SavedSession: Codable, Sendable, Equatable {
    /// The full address, e.g. `alice@alpha.example`, as the login center wrote it.
    public var address: String
    /// The login center's id of the user.
    public var userID: Int64
    /// The bearer token for the endpoints (message 41).
    public var token: String
    /// The session id the token carries.
    public var sessionID: String
    /// When the token expires, in milliseconds since 1970.
    public var expires: Int64
    /// The device fingerprint sent with the login (``ClientHome/deviceFingerprint(for:)``).
    public var device: String
    /// The login center saw this device for the first time on this login.
    public var newDevice: Bool
    /// The login center logged in to, `host:port`.
    public var loginServer: String
    /// The login center's identity-key fingerprint, which signed ``servers``.
    public var loginServerFingerprint: String
    /// The user's domain, which ``servers`` is for.
    public var domain: String
    /// The endpoints of ``domain``, lowest priority first.
    public var servers: [SavedServer]
    /// When the login center signed the server list, in milliseconds since 1970.
    public var serverListIssued: Int64

    /// A session; `servers` is sorted by priority (then name).
    public init(
        address: String, userID: Int64, token: String, sessionID: String, expires: Int64, device: String, newDevice: Bool,
        loginServer: String, loginServerFingerprint: String, domain: String, servers: [SavedServer], serverListIssued: Int64
    ) {
        self.address = address
        self.userID = userID
        self.token = token
        self.sessionID = sessionID
        self.expires = expires
        self.device = device
        self.newDevice = newDevice
        self.loginServer = loginServer
        self.loginServerFingerprint = loginServerFingerprint
        self.domain = domain
        self.servers = servers.sorted { ($0.priority, $0.name) < ($1.priority, $1.name) }
        self.serverListIssued = serverListIssued
    }

    /// The token's expiry as a date.
    public var expiryDate: Date { Date(timeIntervalSince1970: Double(expires) / 1000) }

    /// Whether the token has expired at `now` (milliseconds since 1970).
    public func isExpired(now: Int64 = Int64(Date().timeIntervalSince1970 * 1000)) -> Bool {
        expires <= now
    }

    enum CodingKeys: String, CodingKey {
        case address, token, device, domain, servers, expires
        case userID = "user_id"
        case sessionID = "session_id"
        case newDevice = "new_device"
        case loginServer = "login_server"
        case loginServerFingerprint = "login_server_fingerprint"
        case serverListIssued = "server_list_issued"
    }
}

/// One endpoint of the saved server list (an element of 40's `servers`, after checking).
public struct SavedServer: Codable, Sendable, Equatable, Hashable {
    /// The endpoint's name in the topology.
    public var name: String
    /// Host name or IP address to connect to.
    public var host: String
    /// TCP port.
    public var port: Int
    /// Lower is tried first.
    public var priority: Int64
    /// The endpoint's identity-key fingerprint, `sha256:<64 hex>`, to pin when connecting to it.
    public var fingerprint: String

    /// An endpoint entry.
    public init(name: String, host: String, port: Int, priority: Int64, fingerprint: String) {
        self.name = name
        self.host = host
        self.port = port
        self.priority = priority
        self.fingerprint = fingerprint
    }
}
