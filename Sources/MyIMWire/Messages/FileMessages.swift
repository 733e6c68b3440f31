// File transfer (35–37), as docs/PROTOCOL.md (section 7) describes. Each message goes both ways:
// from the sending client to the server, and from the server to the receiving client.

/// 35, both ways: offers a file.
public struct FileOffer: WireMessage {
    public static let messageType = MessageType.fileOffer
    /// 1–64 bytes of UTF-8, chosen by the sender.
    public var transferID: String
    /// The recipient's address (client → server) or the sender's (server → client).
    public var target: String
    /// The file name, without a path.
    public var name: String
    /// Size in bytes.
    public var size: Int64
    /// SHA-256 digest of the whole file, 32 bytes.
    public var sha256: [UInt8]
    public var mime: String?

    public init(transferID: String, target: String, name: String, size: Int64, sha256: [UInt8], mime: String? = nil) {
        self.transferID = transferID
        self.target = target
        self.name = name
        self.size = size
        self.sha256 = sha256
        self.mime = mime
    }

    public init(body: WireDict) throws(WireError) {
        transferID = try body.identifier("transfer_id")
        target = try body.string("target")
        name = try body.string("name")
        size = try body.int("size")
        sha256 = try body.bytes("sha256")
        guard sha256.count == 32 else {
            throw .invalidField("sha256", "a SHA-256 digest is 32 bytes, found \(sha256.count)")
        }
        mime = try body.optionalString("mime")
    }

    public var body: WireDict {
        var body: WireDict = [
            "transfer_id": .string(transferID), "target": .string(target), "name": .string(name),
            "size": .int(size), "sha256": .bytes(sha256),
        ]
        body["mime"] = mime.map(WireValue.string)
        return body
    }
}

/// 36, both ways: a piece of an offered file.
public struct FileChunk: WireMessage {
    public static let messageType = MessageType.fileChunk
    public var transferID: String
    /// Byte offset of `data` in the file.
    public var offset: Int64
    public var data: [UInt8]

    public init(transferID: String, offset: Int64, data: [UInt8]) {
        self.transferID = transferID
        self.offset = offset
        self.data = data
    }

    public init(body: WireDict) throws(WireError) {
        transferID = try body.identifier("transfer_id")
        offset = try body.int("offset")
        data = try body.bytes("data")
    }

    public var body: WireDict {
        ["transfer_id": .string(transferID), "offset": .int(offset), "data": .bytes(data)]
    }
}

/// 37, both ways: a transfer ended.
public struct FileDone: WireMessage {
    public static let messageType = MessageType.fileDone

    public enum Status: Int64, CaseIterable, Hashable, Sendable {
        case complete = 0
        case cancelled = 1
        case rejected = 2
        case failed = 3
    }

    public var transferID: String
    public var status: Status
    public var message: String?

    public init(transferID: String, status: Status, message: String? = nil) {
        self.transferID = transferID
        self.status = status
        self.message = message
    }

    public init(body: WireDict) throws(WireError) {
        transferID = try body.identifier("transfer_id")
        status = try body.intEnum("status")
        message = try body.optionalString("message")
    }

    public var body: WireDict {
        var body: WireDict = ["transfer_id": .string(transferID), "status": .int(status.rawValue)]
        body["message"] = message.map(WireValue.string)
        return body
    }
}
