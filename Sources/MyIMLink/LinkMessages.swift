import MyIMWire
import NIOCore

/// The messages of the server-to-server link between an endpoint and its domain's center.
///
/// They are layer-2 packets like the client protocol's, numbered from 2001 so that they can
/// never be mistaken for a client message: an endpoint never forwards a client packet whose
/// type is not in ``MessageType``, and the center never accepts a client type on a link
/// except inside ``FromClient``. See `docs/ARCHITECTURE.md` (the link).
public enum LinkMessageType: UInt32, CaseIterable, Sendable {
    case hello = 2001
    case welcome = 2002
    case sessionOpen = 2003
    case sessionReady = 2004
    case sessionClose = 2005
    case fromClient = 2006
    case toClient = 2007
    case kickSession = 2008
    case ping = 2009
    case pong = 2010
    case refused = 2011
    case directoryLookup = 2012
    case directoryAnswer = 2013
    case accountNotice = 2014
}

/// A typed link message: a fixed type and a body dict.
public protocol LinkMessage: Hashable, Sendable {
    static var linkType: LinkMessageType { get }
    init(body: WireDict) throws(WireError)
    var body: WireDict { get }
    /// The link packet carrying this message.
    var packet: Packet { get }
}

extension LinkMessage {
    public var packet: Packet { Packet(type: Self.linkType.rawValue, body: body) }

    public init(packet: Packet) throws(WireError) {
        guard packet.type == Self.linkType.rawValue else {
            throw WireError(.unexpectedMessage, "expected link message \(Self.linkType.rawValue) (\(Self.linkType)), got \(packet.type)")
        }
        try self.init(body: packet.parsedBody())
    }
}

/// 2001, endpoint → center: the first message on a link.
public struct LinkHello: LinkMessage {
    public static let linkType = LinkMessageType.hello
    /// The endpoint's node name in the topology.
    public var node: String
    public var domain: String
    /// Sessions the endpoint still holds (after a reconnect): the center binds them again.
    public var sessions: [SessionInfo]

    public init(node: String, domain: String, sessions: [SessionInfo] = []) {
        self.node = node
        self.domain = domain
        self.sessions = sessions
    }

    public init(body: WireDict) throws(WireError) {
        node = try body.string("node")
        domain = try body.string("domain")
        sessions = try body.dictList("sessions").map { (dict) throws(WireError) in try SessionInfo(dict: dict) }
    }

    public var body: WireDict {
        ["node": .string(node), "domain": .string(domain), "sessions": .list(sessions.map { .dict($0.dict) })]
    }
}

/// 2002, center → endpoint: the link is accepted.
public struct LinkWelcome: LinkMessage {
    public static let linkType = LinkMessageType.welcome
    public var node: String
    public var time: Int64

    public init(node: String, time: Int64) {
        self.node = node
        self.time = time
    }

    public init(body: WireDict) throws(WireError) {
        node = try body.string("node")
        time = try body.int("time")
    }

    public var body: WireDict { ["node": .string(node), "time": .int(time)] }
}

/// 2011, center → endpoint: the link is refused (wrong domain, unknown node); then closed.
public struct LinkRefused: LinkMessage {
    public static let linkType = LinkMessageType.refused
    public var code: ErrorCode
    public var message: String

    public init(code: ErrorCode, message: String) {
        self.code = code
        self.message = message
    }

    public init(body: WireDict) throws(WireError) {
        code = ErrorCode(Int(truncatingIfNeeded: try body.int("code")))
        message = try body.string("message")
    }

    public var body: WireDict { ["code": .int(Int64(code.rawValue)), "message": .string(message)] }
}

/// Who is behind one client session, as the endpoint verified from the token.
public struct SessionInfo: Hashable, Sendable {
    /// Unique per connection: `<endpoint>:<counter>`.
    public var session: String
    /// The user's address, from the token.
    public var user: String
    /// The user's id, from the token.
    public var userID: Int64
    /// The token's session id (one login may reconnect many times).
    public var login: String
    /// The token's device hash.
    public var device: String
    /// When the session authenticated, ms since 1970.
    public var since: Int64
    /// The client's 41 `sender_copies`: whether it is sent a copy (18) of each 1:1 message it
    /// sends to another user.
    public var senderCopies: Bool

    public init(
        session: String, user: String, login: String, device: String, since: Int64, userID: Int64 = 0, senderCopies: Bool = true
    ) {
        self.session = session
        self.user = user
        self.userID = userID
        self.login = login
        self.device = device
        self.since = since
        self.senderCopies = senderCopies
    }

    public init(dict: WireDict) throws(WireError) {
        session = try dict.string("session")
        user = try dict.string("user")
        userID = try dict.optionalInt("user_id") ?? 0
        login = try dict.string("login")
        device = try dict.string("device")
        since = try dict.int("since")
        senderCopies = try dict.optionalBool("sender_copies") ?? true
    }

    public var dict: WireDict {
        var dict: WireDict = [
            "session": .string(session), "user": .string(user), "user_id": .int(userID), "login": .string(login),
            "device": .string(device), "since": .int(since),
        ]
        if !senderCopies { dict["sender_copies"] = .bool(false) }
        return dict
    }
}

/// 2003, endpoint → center: a client authenticated; the center binds the session.
public struct SessionOpen: LinkMessage {
    public static let linkType = LinkMessageType.sessionOpen
    public var info: SessionInfo

    public init(info: SessionInfo) { self.info = info }
    public init(body: WireDict) throws(WireError) { info = try SessionInfo(dict: body) }
    public var body: WireDict { info.dict }
}

/// 2004, center → endpoint: the session is bound; `initial` is the body of message 10 that
/// the endpoint sends first. Queued deliveries follow as ``ToClient``.
public struct SessionReady: LinkMessage {
    public static let linkType = LinkMessageType.sessionReady
    public var session: String
    public var initial: WireDict

    public init(session: String, initial: WireDict) {
        self.session = session
        self.initial = initial
    }

    public init(body: WireDict) throws(WireError) {
        session = try body.string("session")
        initial = try body.dict("initial")
    }

    public var body: WireDict { ["session": .string(session), "initial": .dict(initial)] }
}

/// 2005, endpoint → center: the client went away (quit, closed, timed out).
public struct SessionClose: LinkMessage {
    public static let linkType = LinkMessageType.sessionClose
    public var session: String
    public var reason: String

    public init(session: String, reason: String) {
        self.session = session
        self.reason = reason
    }

    public init(body: WireDict) throws(WireError) {
        session = try body.string("session")
        reason = try body.string("reason")
    }

    public var body: WireDict { ["session": .string(session), "reason": .string(reason)] }
}

/// 2006, endpoint → center: a client's request, as the client sent it.
public struct FromClient: LinkMessage {
    public static let linkType = LinkMessageType.fromClient
    public var session: String
    /// The client packet carried (named so as not to shadow ``LinkMessage/packet``, the link packet).
    public var payload: Packet

    public init(session: String, payload: Packet) {
        self.session = session
        self.payload = payload
    }

    public init(body: WireDict) throws(WireError) {
        session = try body.string("session")
        payload = Packet(type: UInt32(truncatingIfNeeded: try body.int("type")), body: try body.dict("body"))
    }

    public var body: WireDict {
        ["session": .string(session), "type": .int(Int64(payload.type)), "body": .dict(payloadBody)]
    }

    /// The payload's body as a dict: an encoded one (a chat the endpoint checked and passes
    /// on, ``MyIMWire/Packet/read(from:maxSize:limits:leavingChatsEncoded:)``) parsed.
    private var payloadBody: WireDict { (try? payload.parsedBody()) ?? WireDict() }

    /// A payload with an encoded body goes into the link packet as its bytes.
    public var packet: Packet {
        guard let encoded = payload.encodedBody else { return Packet(type: Self.linkType.rawValue, body: body) }
        return Envelope.packet(Self.linkType, addressSize: session.utf8.count, type: payload.type, body: encoded) {
            $0.writeWireEntry("session", string: session)
        }
    }

    /// Reads a `FromClient` whose payload is to be read apart: from a packet with an encoded
    /// body (``PacketFrameDecoder/leftEncoded``) the payload keeps its bytes
    /// (``MyIMWire/Packet/encodedBody``), checked only for their length; from a parsed one, as
    /// ``init(packet:)``.
    public init(forwarding packet: Packet, limits: WireLimits = .default) throws(WireError) {
        guard let encoded = packet.encodedBody else {
            try self.init(packet: packet)
            return
        }
        let envelope = try Envelope.forwarding(packet.type, encoded, as: Self.linkType, addressKey: "session", list: false, limits: limits) {
            (dict) throws(WireError) in [try dict.string("session")]
        }
        self.init(session: envelope.addresses[0], payload: Packet(type: envelope.type, encodedBody: envelope.body))
    }
}

/// 2007, center → endpoint: one packet for one or more of the endpoint's sessions (a group
/// message to many members on one endpoint crosses the link once).
public struct ToClient: LinkMessage {
    public static let linkType = LinkMessageType.toClient
    public var sessions: [String]
    /// The client packet carried (named so as not to shadow ``LinkMessage/packet``, the link packet).
    public var payload: Packet

    public init(sessions: [String], payload: Packet) {
        self.sessions = sessions
        self.payload = payload
    }

    public init(body: WireDict) throws(WireError) {
        sessions = try body.stringList("sessions")
        payload = Packet(type: UInt32(truncatingIfNeeded: try body.int("type")), body: try body.dict("body"))
    }

    public var body: WireDict {
        ["sessions": .list(sessions.map(WireValue.string)), "type": .int(Int64(payload.type)), "body": .dict(payloadBody)]
    }

    /// The payload's body as a dict. An encoded one came from ``Packet/encodingBody()`` here or
    /// from the center over the authenticated link, so it parses; an empty dict if it did not.
    private var payloadBody: WireDict { (try? payload.parsedBody()) ?? WireDict() }

    /// A payload with an encoded body (``Packet/encodingBody()``: one delivery going to
    /// several endpoints) goes into the link packet as its bytes, not parsed and encoded again.
    public var packet: Packet {
        guard let encoded = payload.encodedBody else { return Packet(type: Self.linkType.rawValue, body: body) }
        return Envelope.packet(Self.linkType, addressSize: sessions.reduce(0) { $0 + 5 + $1.utf8.count }, type: payload.type, body: encoded) {
            $0.writeWireEntry("sessions", strings: sessions)
        }
    }

    /// Reads a `ToClient` whose payload is to be passed on as it is: from a packet with an
    /// encoded body (``PacketFrameDecoder/leftEncoded``) the payload keeps the bytes it came in
    /// (``Packet/encodedBody``), parsed by the client only; from a parsed one, as ``init(packet:)``.
    public init(forwarding packet: Packet, limits: WireLimits = .default) throws(WireError) {
        guard let encoded = packet.encodedBody else {
            try self.init(packet: packet)
            return
        }
        let envelope = try Envelope.forwarding(packet.type, encoded, as: Self.linkType, addressKey: "sessions", list: true, limits: limits) {
            (dict) throws(WireError) in try dict.stringList("sessions")
        }
        self.init(sessions: envelope.addresses, payload: Packet(type: envelope.type, encodedBody: envelope.body))
    }
}

/// 2008, center → endpoint: close this session (a newer login of the same user took over):
/// the endpoint sends message 19 and closes the connection.
public struct KickSession: LinkMessage {
    public static let linkType = LinkMessageType.kickSession
    public var session: String
    public var reason: String

    public init(session: String, reason: String) {
        self.session = session
        self.reason = reason
    }

    public init(body: WireDict) throws(WireError) {
        session = try body.string("session")
        reason = try body.string("reason")
    }

    public var body: WireDict { ["session": .string(session), "reason": .string(reason)] }
}

/// 2009 / 2010: link keepalive.
public struct LinkPing: LinkMessage {
    public static let linkType = LinkMessageType.ping
    public var time: Int64
    public init(time: Int64) { self.time = time }
    public init(body: WireDict) throws(WireError) { time = try body.int("time") }
    public var body: WireDict { ["time": .int(time)] }
}

public struct LinkPong: LinkMessage {
    public static let linkType = LinkMessageType.pong
    public var time: Int64
    public init(time: Int64) { self.time = time }
    public init(body: WireDict) throws(WireError) { time = try body.int("time") }
    public var body: WireDict { ["time": .int(time)] }
}

// MARK: - The directory link (center → login center)

/// 2012, center → login center: which of these addresses have an account? A center asks
/// before it queues a message for, or befriends, a user who has never signed in to it.
public struct DirectoryLookup: LinkMessage {
    public static let linkType = LinkMessageType.directoryLookup
    /// At most this many addresses per lookup.
    public static let maximumUsers = 1000
    /// Matches the answer to the lookup.
    public var id: Int64
    /// Lower-case `name@domain` addresses of the asking center's domain.
    public var users: [String]

    public init(id: Int64, users: [String]) {
        self.id = id
        self.users = users
    }

    public init(body: WireDict) throws(WireError) {
        id = try body.int("id")
        users = try body.stringList("users")
        guard users.count <= Self.maximumUsers else {
            throw WireError.invalidField("users", "at most \(Self.maximumUsers) addresses per lookup, not \(users.count)")
        }
    }

    public var body: WireDict { ["id": .int(id), "users": .list(users.map(WireValue.string))] }
}

/// 2013, login center → center: the addresses of a lookup that have an account, with their
/// user ids; an address left out has none.
public struct DirectoryAnswer: LinkMessage {
    public static let linkType = LinkMessageType.directoryAnswer
    public var id: Int64
    public var found: [String: Int64]

    public init(id: Int64, found: [String: Int64]) {
        self.id = id
        self.found = found
    }

    public init(body: WireDict) throws(WireError) {
        id = try body.int("id")
        var found: [String: Int64] = [:]
        for entry in try body.dictList("found") {
            found[try entry.string("user")] = try entry.int("user_id")
        }
        self.found = found
    }

    public var body: WireDict {
        let entries = found.sorted { $0.key < $1.key }.map { WireValue.dict(["user": .string($0.key), "user_id": .int($0.value)]) }
        return ["id": .int(id), "found": .list(entries)]
    }
}

/// 2014, login center → center: something happened to an account that its online sessions
/// should hear about; the center passes it on as message 38 (security alert).
public struct AccountNotice: LinkMessage {
    public static let linkType = LinkMessageType.accountNotice
    public var user: String
    /// `new_device`: a login from a device the account had never used.
    public var kind: String
    public var time: Int64
    /// The device fingerprint of the login.
    public var device: String?
    /// The network address the login came from.
    public var source: String?

    public init(user: String, kind: String, time: Int64, device: String? = nil, source: String? = nil) {
        self.user = user
        self.kind = kind
        self.time = time
        self.device = device
        self.source = source
    }

    public init(body: WireDict) throws(WireError) {
        user = try body.string("user")
        kind = try body.string("kind")
        time = try body.int("time")
        device = try body.optionalString("device")
        source = try body.optionalString("source")
    }

    public var body: WireDict {
        var body: WireDict = ["user": .string(user), "kind": .string(kind), "time": .int(time)]
        body["device"] = device.map(WireValue.string)
        body["source"] = source.map(WireValue.string)
        return body
    }
}

/// A link body that carries a client packet's body (``FromClient``, ``ToClient``): the session
/// or sessions, the client packet's type and its body, kept encoded.
private struct Envelope {
    var addresses: [String]
    var type: UInt32
    var body: ByteBuffer

    /// A link packet around `body`, the entries written straight from the fields:
    /// `writeAddresses` writes the session or sessions (`addressSize` bytes of content).
    static func packet(
        _ linkType: LinkMessageType, addressSize: Int, type: UInt32, body encoded: ByteBuffer, writeAddresses: (inout ByteBuffer) -> Void
    ) -> Packet {
        var linkBody = ByteBufferAllocator().buffer(capacity: addressSize + encoded.readableBytes + 64)
        writeAddresses(&linkBody)
        linkBody.writeWireEntry("type", int: Int64(type))
        linkBody.writeWireEntry("body", encodedDict: encoded)
        return Packet(type: linkType.rawValue, encodedBody: linkBody)
    }

    /// The envelope of an encoded link packet of `linkType`: read in one pass when it has the
    /// usual shape (``init(_:addressKey:list:limits:)``), else parsed with the body kept
    /// encoded, `addresses` reading the parsed dict, so that what is wrong is named.
    static func forwarding(
        _ packetType: UInt32, _ encoded: ByteBuffer, as linkType: LinkMessageType, addressKey: StaticString, list: Bool, limits: WireLimits,
        addresses: (WireDict) throws(WireError) -> [String]
    ) throws(WireError) -> Envelope {
        guard packetType == linkType.rawValue else {
            throw WireError(.unexpectedMessage, "expected link message \(linkType.rawValue) (\(linkType)), got \(packetType)")
        }
        if let envelope = Envelope(encoded, addressKey: addressKey, list: list, limits: limits) { return envelope }
        let (dict, body) = try WireParser.parseBody(encoded, keepingEncoded: "body", limits: limits)
        let addresses = try addresses(dict)
        let type = UInt32(truncatingIfNeeded: try dict.int("type"))
        guard let body else {
            _ = try dict.dict("body")  // Names what is wrong: absent, or not a dict.
            throw .missingKey("body")
        }
        return Envelope(addresses: addresses, type: type, body: body)
    }

    init(addresses: [String], type: UInt32, body: ByteBuffer) {
        self.addresses = addresses
        self.type = type
        self.body = body
    }

    /// The usual shape read in one pass without a dict: the address (a string, or with `list`
    /// a list of strings), `type` and `body`, each once and nothing else. Anything else is nil.
    init?(_ encoded: ByteBuffer, addressKey: StaticString, list: Bool, limits: WireLimits) {
        let found = encoded.withUnsafeReadableBytes { bytes -> ([String], Int64, Range<Int>)? in
            var addresses: [String]?, type: Int64?, body: Range<Int>?
            var entries = WireEntryScanner(bytes, limits: limits)
            while let entry = entries.next() {
                if entry.hasKey(addressKey), addresses == nil {
                    if list {
                        guard let strings = entry.strings else { return nil }
                        addresses = strings
                    } else {
                        guard let string = entry.string else { return nil }
                        addresses = [String(decoding: string, as: UTF8.self)]
                    }
                } else if entry.hasKey("type"), type == nil, let value = entry.int {
                    type = value
                } else if entry.hasKey("body"), body == nil, entry.kind == .dict {
                    let start = entry.value.baseAddress! - bytes.baseAddress!
                    body = start..<start + entry.value.count
                } else {
                    return nil
                }
            }
            guard entries.isAtEnd, let addresses, let type, let body else { return nil }
            // The parser's limits on what it would have read: a list is one level down, and
            // each of its strings is a value.
            let values = list ? 3 + addresses.count : 3
            guard limits.maxDepth >= 2, values <= limits.maxValueCount else { return nil }
            return (addresses, type, body)
        }
        guard let (addresses, type, range) = found else { return nil }
        self.init(
            addresses: addresses, type: UInt32(truncatingIfNeeded: type),
            body: encoded.getSlice(at: encoded.readerIndex + range.lowerBound, length: range.count)!)
    }
}
