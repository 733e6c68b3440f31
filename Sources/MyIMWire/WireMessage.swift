/// A typed layer-2 message: a fixed ``MessageType`` and a body dict with known fields.
///
/// Decoding ignores keys it does not know (forward compatibility) and throws a
/// ``WireError`` naming the key when a required one is missing or has the wrong type.
public protocol WireMessage: Hashable, Sendable {
    static var messageType: MessageType { get }
    init(body: WireDict) throws(WireError)
    var body: WireDict { get }
}

extension WireMessage {
    /// The message as a packet.
    public var packet: Packet { Packet(type: Self.messageType.rawValue, body: body) }

    /// Decodes a packet that must be of this message's type.
    public init(packet: Packet) throws(WireError) {
        guard packet.type == Self.messageType.rawValue else {
            throw WireError(.unexpectedMessage, "expected message \(Self.messageType.rawValue) (\(Self.messageType)), got \(packet.type)")
        }
        try self.init(body: packet.parsedBody())
    }
}

extension Packet {
    /// Decodes the packet into its typed message.
    ///
    /// Throws ``ErrorCode/unknownMessageType`` for a type this build does not know; a
    /// server answers that with message 20 and keeps the connection.
    public func message() throws(WireError) -> any WireMessage {
        guard let type = MessageType(rawValue: type) else {
            throw WireError(.unknownMessageType, "message type \(type) is unknown")
        }
        return try type.payloadType.init(body: body)
    }
}
