import MyIMWire

/// What the endpoint does with one packet from an authenticated client.
///
/// Pure: it looks at the type only. Bodies are relayed as they arrived (already parsed within
/// ``WireLimits``); the center validates them, since it is the one that knows what they mean.
enum ClientPacketRoute: Equatable, Sendable {
    /// 21: answered here with 22, so that keepalives never cross the link.
    case ping
    /// Dropped without an answer: a 22 (the endpoint never pings, but a pong is harmless).
    case ignore
    /// A client request: sent to the center as `FromClient` with the endpoint's session id.
    case relay
    /// Refused here with message 20; the connection stays open.
    case refuse(ErrorCode, String)

    /// Client → server types of `docs/PROTOCOL.md` section 7 (both-way types included),
    /// except 41: token auth is only valid as the first message.
    static let relayed: Set<MessageType> = [
        .login, .register, .addFriend, .createGroup, .inviteToGroup, .chat, .groupMembersQuery,
        .deliveryAck, .presenceSet, .fetchOffline, .profileQuery, .profileSet, .friendListQuery,
        .friendPresenceQuery, .fileOffer, .fileChunk, .fileDone, .serverListQuery, .quit, .leaveGroup, .removeFromGroup,
    ]

    init(type: UInt32) {
        guard let known = MessageType(rawValue: type), type < MessageType.clientHello.rawValue else {
            // Unknown numbers, handshake types (1001+) and link types (2001+): a client never
            // gets to put a link message on the link.
            self = .refuse(.unknownMessageType, "message type \(type) is unknown to this endpoint")
            return
        }
        switch known {
        case .ping:
            self = .ping
        case .pong:
            self = .ignore
        case .tokenAuth:
            self = .refuse(.notSupportedHere, "this connection is already authenticated; token auth (41) is only valid first")
        default:
            if Self.relayed.contains(known) {
                self = .relay
            } else {
                self = .refuse(.notSupportedHere, "message \(type) (\(known)) is sent by servers, not by clients")
            }
        }
    }
}
