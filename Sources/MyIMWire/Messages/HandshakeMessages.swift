// The handshake messages (1001–1006). Their meaning, and what is hashed and signed, is the
// secure channel's business (MyIMSecureChannel); here they are only shapes on the wire.

/// 1001, client → server, in clear: opens the handshake.
public struct ClientHello: WireMessage {
    public static let messageType = MessageType.clientHello
    public var version: Int64
    /// 32 random bytes.
    public var random: [UInt8]
    /// The client's ephemeral X25519 public key, 32 bytes.
    public var keyShare: [UInt8]

    public init(version: Int64, random: [UInt8], keyShare: [UInt8]) {
        self.version = version
        self.random = random
        self.keyShare = keyShare
    }

    public init(body: WireDict) throws(WireError) {
        version = try body.int("version")
        random = try body.bytes("random")
        keyShare = try body.bytes("key_share")
    }

    public var body: WireDict {
        ["version": .int(version), "random": .bytes(random), "key_share": .bytes(keyShare)]
    }
}

/// 1002, server → client, in clear: the server's share and identity key.
public struct ServerHello: WireMessage {
    public static let messageType = MessageType.serverHello
    public var version: Int64
    public var random: [UInt8]
    public var keyShare: [UInt8]
    /// `rsa-pss-sha256` or `ed25519`.
    public var keyType: String
    /// The identity public key as DER SubjectPublicKeyInfo.
    public var identityKey: [UInt8]

    public init(version: Int64, random: [UInt8], keyShare: [UInt8], keyType: String, identityKey: [UInt8]) {
        self.version = version
        self.random = random
        self.keyShare = keyShare
        self.keyType = keyType
        self.identityKey = identityKey
    }

    public init(body: WireDict) throws(WireError) {
        version = try body.int("version")
        random = try body.bytes("random")
        keyShare = try body.bytes("key_share")
        keyType = try body.string("key_type")
        identityKey = try body.bytes("identity_key")
    }

    public var body: WireDict {
        [
            "version": .int(version), "random": .bytes(random), "key_share": .bytes(keyShare),
            "key_type": .string(keyType), "identity_key": .bytes(identityKey),
        ]
    }
}

/// 1003, server → client, in clear: the identity key's signature over the transcript.
public struct ServerVerify: WireMessage {
    public static let messageType = MessageType.serverVerify
    public var signature: [UInt8]

    public init(signature: [UInt8]) { self.signature = signature }

    public init(body: WireDict) throws(WireError) {
        signature = try body.bytes("signature")
    }

    public var body: WireDict { ["signature": .bytes(signature)] }
}

/// 1004, client → server, the first encrypted frame: seed 000's "encrypted check message".
public struct ClientFinished: WireMessage {
    public static let messageType = MessageType.clientFinished
    /// HMAC-SHA256 of the transcript hash under the client's finished key.
    public var verify: [UInt8]

    public init(verify: [UInt8]) { self.verify = verify }

    public init(body: WireDict) throws(WireError) {
        verify = try body.bytes("verify")
    }

    public var body: WireDict { ["verify": .bytes(verify)] }
}

/// 1005, server → client, encrypted: seed 000's "hello done"; the channel is up.
public struct HelloDone: WireMessage {
    public static let messageType = MessageType.helloDone
    /// HMAC-SHA256 of the transcript hash under the server's finished key.
    public var verify: [UInt8]

    public init(verify: [UInt8]) { self.verify = verify }

    public init(body: WireDict) throws(WireError) {
        verify = try body.bytes("verify")
    }

    public var body: WireDict { ["verify": .bytes(verify)] }
}

/// 1006, server → client, in clear: seed 000's "hello error"; the server then closes.
public struct HelloError: WireMessage {
    public static let messageType = MessageType.helloError
    public var code: Int64
    public var message: String

    public init(code: ErrorCode, message: String) {
        self.code = Int64(code.rawValue)
        self.message = message
    }

    public init(body: WireDict) throws(WireError) {
        code = try body.int("code")
        message = try body.string("message")
    }

    public var body: WireDict { ["code": .int(code), "message": .string(message)] }
}
