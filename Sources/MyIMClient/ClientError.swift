import MyIMSecureChannel
import MyIMWire

/// Why a client operation failed: what the server answered (11, 13 or 20, with its code and
/// message), or a problem found on this side (a refused server key, a bad server list, an
/// unreadable state file), with a message that says what to do about it.
///
/// Messages never contain the password.
public struct ClientError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The protocol's error code (section 8 of `docs/PROTOCOL.md`); local problems reuse the
    /// code of the matching condition, e.g. 204 for a changed server key.
    public var code: ErrorCode
    /// For a person: the server's own words, or what went wrong here and how to proceed.
    public var message: String
    /// Milliseconds to wait before trying again, when the server rate-limits (11's `retry_after`).
    public var retryAfter: Int64?

    /// An error with `code` and `message`, and `retryAfter` milliseconds when the server gave one.
    public init(_ code: ErrorCode, _ message: String, retryAfter: Int64? = nil) {
        self.code = code
        self.message = message
        self.retryAfter = retryAfter
    }

    /// `error <code>: <message>`, plus when to retry if the server said so.
    public var description: String {
        var text = "error \(code): \(message)"
        if let retryAfter, !message.contains("try again") {
            text += " (try again in \((retryAfter + 999) / 1000) s)"
        }
        return text
    }
}

extension ClientError {
    /// A server answer that is not one of the replies the request allows.
    static func unexpectedReply(_ packet: Packet, to request: String) -> ClientError {
        ClientError(.unexpectedMessage, "the login center answered the \(request) with message \(packet.type), which is not a reply to it")
    }

    /// A secure-channel failure while connecting to `server`, explained for a person.
    ///
    /// - Parameters:
    ///   - recorded: the fingerprint `known_servers` holds for `server`, if any.
    ///   - pinned: the fingerprint given with `--pin`, if any.
    ///   - knownServersPath: the file to edit when the key changed.
    static func channel(
        _ error: SecureChannelError, server: ServerAddress, recorded: KeyFingerprint?, pinned: KeyFingerprint?, knownServersPath: String
    ) -> ClientError {
        let presented = presentedFingerprint(in: error.message, other: error.code == .serverKeyMismatch ? pinned : recorded)
        let presentedText = presented.map(String.init(describing:)) ?? "another key"
        switch error.code {
        case .serverKeyChanged:
            let recordedText = recorded.map(String.init(describing:)) ?? "another key"
            return ClientError(error.code, """
                the login center at \(server) presented key \(presentedText), but \(recordedText) is recorded for it in \
                \(knownServersPath). Someone may be intercepting the connection, or the server's key was replaced. \
                Check the new fingerprint with the server's operator (out of band); if it is right, remove the line for \
                \(server) from \(knownServersPath) and connect again, or pass --pin \(presentedText).
                """)
        case .serverKeyMismatch:
            let pinnedText = pinned.map(String.init(describing:)) ?? "the pinned key"
            return ClientError(error.code, """
                the login center at \(server) presented key \(presentedText), not the pinned \(pinnedText); \
                refusing it. Check the --pin value with the server's operator.
                """)
        default:
            return ClientError(error.code, "secure channel to \(server) failed: \(error.message)")
        }
    }

    /// The first `sha256:…` fingerprint in `message` that is not `other`.
    private static func presentedFingerprint(in message: String, other: KeyFingerprint?) -> KeyFingerprint? {
        let separators: Set<Character> = [" ", ",", ";", "'", "\"", "(", ")"]
        for word in message.split(whereSeparator: { separators.contains($0) }) {
            var word = String(word)
            while word.hasSuffix(".") || word.hasSuffix(":") { word.removeLast() }
            if let fingerprint = KeyFingerprint(word), fingerprint != other { return fingerprint }
        }
        return nil
    }
}
