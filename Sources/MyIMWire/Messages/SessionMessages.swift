// The session: kicks, errors, keep-alive, presence, security alerts, the server list,
// endpoint authentication and quitting (19–22, 24, 38–44), as docs/PROTOCOL.md (section 7) describes.

/// 19, server → client: a newer login of the same user took over; the server closes. Empty body.
public struct Kicked: WireMessage {
    public static let messageType = MessageType.kicked

    public init() {}
    public init(body: WireDict) {}
    public var body: WireDict { WireDict() }
}

/// 20, server → client: a request failed.
public struct ErrorMessage: WireMessage {
    public static let messageType = MessageType.error
    public var code: ErrorCode
    /// The message for a person (seed 000's `data`).
    public var data: String
    /// The `client_msg_id` of the chat (6) refused, when a chat is what failed: a QoS 0 chat
    /// gets no other answer, so this is how its sender learns which one.
    public var clientMessageID: String?

    public init(code: ErrorCode, data: String, clientMessageID: String? = nil) {
        self.code = code
        self.data = data
        self.clientMessageID = clientMessageID
    }

    public init(body: WireDict) throws(WireError) {
        code = ErrorCode(wire: try body.int("code"))
        data = try body.string("data")
        clientMessageID = try body.optionalString("client_msg_id")
    }

    public var body: WireDict {
        var body: WireDict = ["code": code.wire, "data": .string(data)]
        body["client_msg_id"] = clientMessageID.map(WireValue.string)
        return body
    }

    /// The same error, naming the chat it refuses when `packet` is a chat (6) with a valid
    /// `client_msg_id` (``Chat/clientMessageID(of:)``).
    public func answering(_ packet: Packet) -> ErrorMessage {
        guard let id = Chat.clientMessageID(of: packet) else { return self }
        var error = self
        error.clientMessageID = id
        return error
    }
}

/// 21, both ways: the peer answers with 22.
public struct Ping: WireMessage {
    public static let messageType = MessageType.ping
    /// The sender's time.
    public var time: Int64?

    public init(time: Int64? = nil) { self.time = time }

    public init(body: WireDict) throws(WireError) {
        time = try body.optionalInt("time")
    }

    public var body: WireDict {
        var body = WireDict()
        body["time"] = time.map(WireValue.int)
        return body
    }
}

/// 22, both ways: the answer to 21.
public struct Pong: WireMessage {
    public static let messageType = MessageType.pong
    /// The ping's `time`, echoed.
    public var time: Int64?

    public init(time: Int64? = nil) { self.time = time }

    public init(body: WireDict) throws(WireError) {
        time = try body.optionalInt("time")
    }

    public var body: WireDict {
        var body = WireDict()
        body["time"] = time.map(WireValue.int)
        return body
    }
}

/// 24, client → server: set the client's presence.
public struct PresenceSet: WireMessage {
    public static let messageType = MessageType.presenceSet
    public var status: PresenceStatus
    /// Free status text.
    public var text: String?

    public init(status: PresenceStatus, text: String? = nil) {
        self.status = status
        self.text = text
    }

    public init(body: WireDict) throws(WireError) {
        status = try body.stringEnum("status")
        text = try body.optionalString("text")
    }

    public var body: WireDict {
        var body: WireDict = ["status": .string(status.rawValue)]
        body["text"] = text.map(WireValue.string)
        return body
    }
}

/// 38, server → client: something about the account needs the user's attention.
public struct SecurityAlert: WireMessage {
    public static let messageType = MessageType.securityAlert
    /// E.g. `new_device`.
    public var kind: String
    public var time: Int64
    /// For a person.
    public var message: String
    /// The device fingerprint involved.
    public var device: String?
    /// The network address involved.
    public var address: String?

    public init(kind: String, time: Int64, message: String, device: String? = nil, address: String? = nil) {
        self.kind = kind
        self.time = time
        self.message = message
        self.device = device
        self.address = address
    }

    public init(body: WireDict) throws(WireError) {
        kind = try body.string("kind")
        time = try body.int("time")
        message = try body.string("message")
        device = try body.optionalString("device")
        address = try body.optionalString("address")
    }

    public var body: WireDict {
        var body: WireDict = ["kind": .string(kind), "time": .int(time), "message": .string(message)]
        body["device"] = device.map(WireValue.string)
        body["address"] = address.map(WireValue.string)
        return body
    }
}

/// 39, client → server: ask for the server list; the server answers with 40. Empty body.
public struct ServerListQuery: WireMessage {
    public static let messageType = MessageType.serverListQuery

    public init() {}
    public init(body: WireDict) {}
    public var body: WireDict { WireDict() }
}

/// One element of 40's `servers`.
public struct ServerEntry: Hashable, Sendable {
    public var name: String
    public var host: String
    public var port: Int64
    /// Lower is tried first.
    public var priority: Int64
    public var fingerprint: String

    public init(name: String, host: String, port: Int64, priority: Int64, fingerprint: String) {
        self.name = name
        self.host = host
        self.port = port
        self.priority = priority
        self.fingerprint = fingerprint
    }

    public init(dict: WireDict) throws(WireError) {
        name = try dict.string("name")
        host = try dict.string("host")
        port = try dict.int("port")
        priority = try dict.int("priority")
        fingerprint = try dict.string("fingerprint")
    }

    public var dict: WireDict {
        [
            "name": .string(name), "host": .string(host), "port": .int(port),
            "priority": .int(priority), "fingerprint": .string(fingerprint),
        ]
    }
}

/// 40, server → client: the login center's signed list of servers; also 9's `servers`.
public struct ServerList: WireMessage {
    public static let messageType = MessageType.serverList
    public var domain: String
    /// Time the list was signed.
    public var issued: Int64
    /// Lower priority first.
    public var servers: [ServerEntry]
    /// The login center's signature.
    public var signature: [UInt8]

    public init(domain: String, issued: Int64, servers: [ServerEntry], signature: [UInt8]) {
        self.domain = domain
        self.issued = issued
        self.servers = servers
        self.signature = signature
    }

    public init(body: WireDict) throws(WireError) {
        domain = try body.string("domain")
        issued = try body.int("issued")
        servers = try body.nestedList("servers", ServerEntry.init(dict:))
        signature = try body.bytes("signature")
    }

    public var body: WireDict {
        [
            "domain": .string(domain), "issued": .int(issued),
            "servers": .list(servers.map { .dict($0.dict) }), "signature": .bytes(signature),
        ]
    }
}

/// 41, client → server: the first message on an endpoint, authenticating with 9's token.
public struct TokenAuth: WireMessage {
    public static let messageType = MessageType.tokenAuth
    public var token: String
    /// The device fingerprint.
    public var device: String?
    /// Whether the server sends this session a copy (18) of each 1:1 message it sends to
    /// another user, as seed 000 has it (the default). A client that records its own messages
    /// from their 8 and what it sent says `false`, and the server sends it none.
    public var senderCopies: Bool

    public init(token: String, device: String? = nil, senderCopies: Bool = true) {
        self.token = token
        self.device = device
        self.senderCopies = senderCopies
    }

    public init(body: WireDict) throws(WireError) {
        token = try body.string("token")
        device = try body.optionalString("device")
        senderCopies = try body.optionalBool("sender_copies") ?? true
    }

    public var body: WireDict {
        var body: WireDict = ["token": .string(token)]
        body["device"] = device.map(WireValue.string)
        if !senderCopies { body["sender_copies"] = .bool(false) }
        return body
    }
}

/// 42, server → client: the token (41) was accepted.
public struct AuthOK: WireMessage {
    public static let messageType = MessageType.authOK
    /// The user's address.
    public var username: String
    public var sessionID: String
    public var serverTime: Int64
    /// The endpoint's name.
    public var node: String?

    public init(username: String, sessionID: String, serverTime: Int64, node: String? = nil) {
        self.username = username
        self.sessionID = sessionID
        self.serverTime = serverTime
        self.node = node
    }

    public init(body: WireDict) throws(WireError) {
        username = try body.string("username")
        sessionID = try body.string("session_id")
        serverTime = try body.int("server_time")
        node = try body.optionalString("node")
    }

    public var body: WireDict {
        var body: WireDict = [
            "username": .string(username), "session_id": .string(sessionID), "server_time": .int(serverTime),
        ]
        body["node"] = node.map(WireValue.string)
        return body
    }
}

/// 43, client → server: the client is leaving; the server answers with 44. Empty body.
public struct Quit: WireMessage {
    public static let messageType = MessageType.quit

    public init() {}
    public init(body: WireDict) {}
    public var body: WireDict { WireDict() }
}

/// 44, server → client: the answer to 43; the server then closes.
public struct QuitAck: WireMessage {
    public static let messageType = MessageType.quitAck
    /// The time recorded as last seen.
    public var lastSeen: Int64

    public init(lastSeen: Int64) { self.lastSeen = lastSeen }

    public init(body: WireDict) throws(WireError) {
        lastSeen = try body.int("last_seen")
    }

    public var body: WireDict { ["last_seen": .int(lastSeen)] }
}

/// 48, server → client: this endpoint is going away (a graceful shutdown); the connection
/// closes after this message. Reconnect to another endpoint of the server list, `next` if
/// given, with the same token, and send again what was not acknowledged, with the same
/// client message ids.
public struct Reconnect: WireMessage {
    public static let messageType = MessageType.reconnect
    /// For a person, e.g. "alpha-ep1 is shutting down".
    public var reason: String
    /// The node name of the endpoint to try first, from the signed server list.
    public var next: String?

    public init(reason: String, next: String? = nil) {
        self.reason = reason
        self.next = next
    }

    public init(body: WireDict) throws(WireError) {
        reason = try body.string("reason")
        next = try body.optionalString("next")
    }

    public var body: WireDict {
        var body: WireDict = ["reason": .string(reason)]
        body["next"] = next.map(WireValue.string)
        return body
    }
}
