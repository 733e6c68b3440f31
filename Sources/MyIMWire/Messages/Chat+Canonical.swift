import NIOCore

// A chat (6) of the usual shape read in one pass over its bytes, without a `WireDict`: the
// path every chat takes through the endpoint and the center. Anything else goes to the
// general parser, which reads it or refuses it with the error that names what is wrong.

extension Chat {
    /// The chat in `body` (an encoded 6 body) when it has the usual shape: the keys `type`,
    /// `target_id`, `message` (with `type`, `data` and optionally `mime`), `client_msg_id` and
    /// optionally `qos`, in any order, each once, each of the type its place requires and
    /// within `limits`. Nil for anything else (an unknown key, a repeated one, a value of
    /// another type, a value out of range, bytes that do not parse), which the caller then
    /// reads with ``WireParser`` and ``init(body:)``.
    ///
    /// Whatever this returns, `Chat(body: WireParser.parseBody(body, limits: limits))` returns
    /// too; it is only faster.
    public init?(canonical body: ByteBuffer, limits: WireLimits = .default) {
        guard let chat = body.withUnsafeReadableBytes({ CanonicalChat(scanning: $0, limits: limits)?.chat }) else { return nil }
        self = chat
    }

    /// Whether `body` holds a chat that ``init(canonical:limits:)`` reads, checked without
    /// building one: a body that passes may be passed on still encoded.
    public static func isCanonical(_ body: ByteBuffer, limits: WireLimits = .default) -> Bool {
        body.withUnsafeReadableBytes { CanonicalChat(scanning: $0, limits: limits) != nil }
    }
}

/// The fields of a canonical chat body, as views of its bytes (valid while they are).
private struct CanonicalChat {
    var target: ChatTarget.Scanned
    var content: UnsafeRawBufferPointer
    var isImage: Bool
    var mime: UnsafeRawBufferPointer?
    var clientMessageID: UnsafeRawBufferPointer
    var qos: QoS

    init?(scanning bytes: UnsafeRawBufferPointer, limits: WireLimits) {
        // The general parser's limits, for the most this shape can hold: two levels, five
        // entries in a dict, nine values, keys of at most 13 bytes.
        guard limits.maxDepth >= 2, limits.maxContainerCount >= 5, limits.maxValueCount >= 9, limits.maxKeyLength >= 13
        else { return nil }
        var kind: Int64?, targetID: WireEntry?, message: UnsafeRawBufferPointer?, clientMessageID: UnsafeRawBufferPointer?
        var qos = QoS.atLeastOnce
        var seen: UInt8 = 0
        var entries = WireEntryScanner(bytes, limits: limits)
        while let entry = entries.next() {
            let key: ChatKey
            switch entry.key.count {
            case 3: key = .qos
            case 4: key = .type
            case 7: key = .message
            case 9: key = .targetID
            case 13: key = .clientMessageID
            default: return nil
            }
            guard entry.hasKey(key.name), seen & key.bit == 0 else { return nil }
            seen |= key.bit
            switch key {
            case .type:
                guard let value = entry.int, ChatKind(rawValue: value) != nil else { return nil }
                kind = value
            case .targetID:
                targetID = entry
            case .message:
                guard entry.kind == .dict else { return nil }
                message = entry.value
            case .clientMessageID:
                guard let string = entry.string, (1...64).contains(string.count) else { return nil }
                clientMessageID = string
            case .qos:
                guard let value = entry.int, let level = QoS(rawValue: value) else { return nil }
                qos = level
            }
        }
        guard entries.isAtEnd, let kind, let targetID, let message, let clientMessageID else { return nil }
        switch ChatKind(rawValue: kind)! {
        case .user:
            guard let address = targetID.string else { return nil }
            target = .user(address)
        case .group:
            guard let id = targetID.int else { return nil }
            target = .group(id)
        }
        // The content, one level down.
        var contentType: Int64?, data: WireEntry?, mime: UnsafeRawBufferPointer?
        var contentSeen: UInt8 = 0
        var fields = WireEntryScanner(message, limits: limits)
        while let entry = fields.next() {
            let bit: UInt8
            if entry.hasKey("type") {
                guard let value = entry.int else { return nil }
                contentType = value
                bit = 1
            } else if entry.hasKey("data") {
                data = entry
                bit = 2
            } else if entry.hasKey("mime") {
                guard let string = entry.string else { return nil }
                mime = string
                bit = 4
            } else {
                return nil
            }
            guard contentSeen & bit == 0 else { return nil }
            contentSeen |= bit
        }
        guard fields.isAtEnd, let contentType, let data else { return nil }
        switch contentType {
        case 0:
            // A text has no `mime`: the general reader ignores one, and this one leaves it to it.
            guard mime == nil, let text = data.string else { return nil }
            content = text
            isImage = false
        case 1:
            guard let image = data.bytes else { return nil }
            content = image
            isImage = true
        default:
            return nil
        }
        self.mime = mime
        self.clientMessageID = clientMessageID
        self.qos = qos
    }

    var chat: Chat {
        let content: ChatContent = isImage
            ? .image(bytes: Array(content), mime: mime.map { String(decoding: $0, as: UTF8.self) })
            : .text(String(decoding: content, as: UTF8.self))
        return Chat(
            target: target.target, content: content, clientMessageID: String(decoding: clientMessageID, as: UTF8.self), qos: qos)
    }

    private enum ChatKey {
        case type, targetID, message, clientMessageID, qos

        var name: StaticString {
            switch self {
            case .type: "type"
            case .targetID: "target_id"
            case .message: "message"
            case .clientMessageID: "client_msg_id"
            case .qos: "qos"
            }
        }

        var bit: UInt8 {
            switch self {
            case .type: 1
            case .targetID: 2
            case .message: 4
            case .clientMessageID: 8
            case .qos: 16
            }
        }
    }
}

extension ChatTarget {
    /// A target read in place: the address's bytes (valid UTF-8) or the group id.
    fileprivate enum Scanned {
        case user(UnsafeRawBufferPointer)
        case group(Int64)

        var target: ChatTarget {
            switch self {
            case .user(let address): .user(String(decoding: address, as: UTF8.self))
            case .group(let id): .group(id)
            }
        }
    }
}
