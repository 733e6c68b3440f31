// Logging in and registering (1, 2, 9, 11, 12, 13), as docs/PROTOCOL.md (section 7) describes.

/// 1, client → server: log in with a user name and password.
public struct Login: WireMessage {
    public static let messageType = MessageType.login
    /// An address, or a bare user name in the login center's default domain.
    public var username: String
    /// The password, in clear inside the channel.
    public var password: String
    /// Device fingerprint `sha256:<64 hex>`, derived locally.
    public var device: String?
    /// Client name and version, e.g. `myim-cli/0.1.0`.
    public var client: String?

    public init(username: String, password: String, device: String? = nil, client: String? = nil) {
        self.username = username
        self.password = password
        self.device = device
        self.client = client
    }

    public init(body: WireDict) throws(WireError) {
        username = try body.string("username")
        password = try body.string("password")
        device = try body.optionalString("device")
        client = try body.optionalString("client")
    }

    public var body: WireDict {
        var body: WireDict = ["username": .string(username), "password": .string(password)]
        body["device"] = device.map(WireValue.string)
        body["client"] = client.map(WireValue.string)
        return body
    }
}

/// 2, client → server: create an account.
public struct Register: WireMessage {
    public static let messageType = MessageType.register
    /// An address or a bare user name.
    public var username: String
    public var password: String

    public init(username: String, password: String) {
        self.username = username
        self.password = password
    }

    public init(body: WireDict) throws(WireError) {
        username = try body.string("username")
        password = try body.string("password")
    }

    public var body: WireDict { ["username": .string(username), "password": .string(password)] }
}

/// 9, server → client: the login succeeded.
public struct LoginOK: WireMessage {
    public static let messageType = MessageType.loginOK
    public var userID: Int64
    /// The full address.
    public var username: String
    /// Bearer token for the endpoints (message 41).
    public var token: String
    public var sessionID: String
    /// Time the token expires, in milliseconds since 1970.
    public var expires: Int64
    /// This login came from a device the account never used. Absent on the wire means false.
    public var newDevice: Bool
    /// The signed server list, when the login center sends one.
    public var servers: ServerList?

    public init(
        userID: Int64, username: String, token: String, sessionID: String, expires: Int64,
        newDevice: Bool = false, servers: ServerList? = nil
    ) {
        self.userID = userID
        self.username = username
        self.token = token
        self.sessionID = sessionID
        self.expires = expires
        self.newDevice = newDevice
        self.servers = servers
    }

    public init(body: WireDict) throws(WireError) {
        userID = try body.int("user_id")
        username = try body.string("username")
        token = try body.string("token")
        sessionID = try body.string("session_id")
        expires = try body.int("expires")
        newDevice = try body.optionalBool("new_device") ?? false
        servers = try body.optionalNested("servers", ServerList.init(body:))
    }

    public var body: WireDict {
        var body: WireDict = [
            "user_id": .int(userID), "username": .string(username), "token": .string(token),
            "session_id": .string(sessionID), "expires": .int(expires), "new_device": .bool(newDevice),
        ]
        body["servers"] = servers.map { .dict($0.body) }
        return body
    }
}

/// 11, server → client: the login failed.
public struct LoginFailed: WireMessage {
    public static let messageType = MessageType.loginFailed
    /// Wire key `errorcode`.
    public var errorCode: ErrorCode
    /// What went wrong, for a person.
    public var message: String
    /// Milliseconds to wait before trying again (rate limit).
    public var retryAfter: Int64?

    public init(errorCode: ErrorCode, message: String, retryAfter: Int64? = nil) {
        self.errorCode = errorCode
        self.message = message
        self.retryAfter = retryAfter
    }

    public init(body: WireDict) throws(WireError) {
        errorCode = ErrorCode(wire: try body.int("errorcode"))
        message = try body.string("message")
        retryAfter = try body.optionalInt("retry_after")
    }

    public var body: WireDict {
        var body: WireDict = ["errorcode": errorCode.wire, "message": .string(message)]
        body["retry_after"] = retryAfter.map(WireValue.int)
        return body
    }
}

/// 12, server → client: the account was created.
public struct RegisterOK: WireMessage {
    public static let messageType = MessageType.registerOK
    public var userID: Int64
    /// The full address.
    public var username: String

    public init(userID: Int64, username: String) {
        self.userID = userID
        self.username = username
    }

    public init(body: WireDict) throws(WireError) {
        userID = try body.int("user_id")
        username = try body.string("username")
    }

    public var body: WireDict { ["user_id": .int(userID), "username": .string(username)] }
}

/// 13, server → client: the account was not created.
public struct RegisterFailed: WireMessage {
    public static let messageType = MessageType.registerFailed
    /// Wire key `errorcode`.
    public var errorCode: ErrorCode
    public var message: String

    public init(errorCode: ErrorCode, message: String) {
        self.errorCode = errorCode
        self.message = message
    }

    public init(body: WireDict) throws(WireError) {
        errorCode = ErrorCode(wire: try body.int("errorcode"))
        message = try body.string("message")
    }

    public var body: WireDict { ["errorcode": errorCode.wire, "message": .string(message)] }
}
