import Foundation

/// What `myim login` and `myim whoami` show about a ``SavedSession``: as one JSON object
/// (``json()``) or as lines for a person (``lines``). The token itself is left out: it is a
/// credential, and stays in `session.json`.
public struct SessionSummary: Encodable, Sendable, Equatable {
    /// The full address.
    public var address: String
    /// The login center's id of the user.
    public var userID: Int64
    /// The session id the token carries.
    public var sessionID: String
    /// Token expiry, ISO-8601 in UTC.
    public var expires: String
    /// Token expiry in milliseconds since 1970.
    public var expiresMilliseconds: Int64
    /// Whether the token had expired at the time of the summary.
    public var expired: Bool
    /// The device fingerprint sent at login.
    public var device: String
    /// The login center saw this device for the first time at that login.
    public var newDevice: Bool
    /// The login center, `host:port`.
    public var loginServer: String
    /// The login center's identity-key fingerprint.
    public var loginServerFingerprint: String
    /// The user's domain, which the server list is for.
    public var domain: String
    /// When the server list was signed, ISO-8601 in UTC.
    public var serverListIssued: String
    /// The endpoints, lowest priority first.
    public var servers: [SavedServer]

    /// Summarises `session` as of `now` (milliseconds since 1970).
    public init(_ session: SavedSession, now: Int64 = Int64(Date().timeIntervalSince1970 * 1000)) {
        address = session.address
        userID = session.userID
        sessionID = session.sessionID
        expires = Self.iso8601(session.expires)
        expiresMilliseconds = session.expires
        expired = session.isExpired(now: now)
        device = session.device
        newDevice = session.newDevice
        loginServer = session.loginServer
        loginServerFingerprint = session.loginServerFingerprint
        domain = session.domain
        serverListIssued = Self.iso8601(session.serverListIssued)
        servers = session.servers.sorted { ($0.priority, $0.name) < ($1.priority, $1.name) }
    }

    /// One line of JSON, keys sorted.
    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(self) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    /// Lines for a person.
    public var lines: [String] {
        var lines = [
            "address:      \(address) (user \(userID))",
            "token:        expires \(expires)" + (expired ? " (EXPIRED: log in again)" : " (valid)"),
            "device:       \(device)" + (newDevice ? " (new device at this login)" : ""),
            "login center: \(loginServer) \(loginServerFingerprint)",
            "servers:      \(domain), list signed \(serverListIssued)",
        ]
        if servers.isEmpty { lines.append("  (none)") }
        for server in servers {
            let address = server.host.contains(":") ? "[\(server.host)]:\(server.port)" : "\(server.host):\(server.port)"
            lines.append("  \(server.priority)  \(server.name)  \(address)  \(server.fingerprint)")
        }
        return lines
    }

    /// `milliseconds` since 1970 as ISO-8601 in UTC, e.g. `2027-01-15T08:00:00Z`.
    public static func iso8601(_ milliseconds: Int64) -> String {
        Date(timeIntervalSince1970: Double(milliseconds) / 1000).formatted(.iso8601)
    }

    enum CodingKeys: String, CodingKey {
        case address, device, domain, servers, expires, expired
        case userID = "user_id"
        case sessionID = "session_id"
        case expiresMilliseconds = "expires_ms"
        case newDevice = "new_device"
        case loginServer = "login_server"
        case loginServerFingerprint = "login_server_fingerprint"
        case serverListIssued = "server_list_issued"
    }
}
