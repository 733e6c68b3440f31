import MyIMWire

/// Why the endpoint refused or ended something, with the wire code a client sees in message 20.
public struct EndpointError: Error, Hashable, Sendable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String

    public init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "endpoint error \(code): \(message)" }

    /// The link to the center is down; the client may retry the same request (same
    /// `client_msg_id`), so nothing acknowledged is lost.
    static let centerUnavailable = EndpointError(.centerUnavailable, "the center is unreachable; retry")

    /// The message 20 that tells a client about this error.
    var packet: Packet { ErrorMessage(code: code, data: message).packet }

    /// The message 20 that refuses `request`, naming it when it is a chat (its `client_msg_id`).
    func packet(answering request: Packet) -> Packet { ErrorMessage(code: code, data: message).answering(request).packet }
}
