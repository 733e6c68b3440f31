/// An error from the Redis client: a kind a program can switch on, and a message a person can act on.
public struct RedisError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong. A struct rather than an enum so that kinds can be added without breaking callers.
    public struct Kind: Sendable, Hashable, CustomStringConvertible {
        public let name: String
        private init(_ name: String) { self.name = name }

        /// The URL is not `redis://[[user]:password@]host[:port][/db]`.
        public static let invalidURL = Kind("invalidURL")
        /// The TCP connection could not be established.
        public static let connectionFailed = Kind("connectionFailed")
        /// The connection closed or failed; every command in flight fails with this.
        public static let connectionLost = Kind("connectionLost")
        /// The connection was closed by ``RedisConnection/close()``.
        public static let connectionClosed = Kind("connectionClosed")
        /// The server answered with an error reply (`-ERR ...`).
        public static let server = Kind("server")
        /// The bytes from the server are not valid RESP2, or a reply arrived that nobody asked for.
        public static let protocolViolation = Kind("protocolViolation")
        /// A reply exceeded ``RESPReader/Limits``.
        public static let replyTooLarge = Kind("replyTooLarge")
        /// No reply within the configured command timeout; the connection is closed.
        public static let timeout = Kind("timeout")
        /// A reply had an unexpected shape for the command that was sent.
        public static let unexpectedReply = Kind("unexpectedReply")
        /// A command could not be encoded (for example, no arguments).
        public static let invalidCommand = Kind("invalidCommand")

        public var description: String { self.name }
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { "Redis \(self.kind): \(self.message)" }
}
