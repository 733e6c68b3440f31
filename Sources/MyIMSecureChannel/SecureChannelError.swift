import MyIMWire

/// Why a secure channel was refused or closed.
///
/// Each failure has its own ``ErrorCode`` (2xx, or the 1xx wire code of a malformed
/// packet inside the channel) and a message that says what to do about it.
public struct SecureChannelError: Error, Hashable, Sendable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String

    public init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public init(_ wireError: WireError) {
        self.init(wireError.code, wireError.message)
    }

    public var description: String { "secure channel error \(code): \(message)" }
}
