/// A server's `host:port`, as the client is given it (`--server`) and records it
/// (`known_servers`, the saved session).
///
/// Accepted forms: `host:port`, `[v6-address]:port`, and a bare `host` or `[v6-address]`,
/// which takes ``defaultPort``. Host names are compared in lower case, so `Example.org:7000`
/// and `example.org:7000` are one server; `localhost` and `127.0.0.1` stay two, as in SSH's
/// `known_hosts`.
public struct ServerAddress: Hashable, Sendable, CustomStringConvertible {
    /// The login center's default address.
    public static let defaultLoginCenter = ServerAddress(host: "127.0.0.1", port: 7000)
    /// The port of an address given without one.
    public static let defaultPort = 7000

    /// Host name or IP address, without brackets.
    public let host: String
    /// TCP port.
    public let port: Int

    /// `host` (lower-cased, without brackets) and `port`.
    public init(host: String, port: Int) {
        self.host = host.lowercased()
        self.port = port
    }

    /// Parses `text`; throws a ``ClientError`` that says what is wrong with it.
    public init(parsing text: String) throws(ClientError) {
        let text = text.trimmingWhitespace()
        let hostPart: Substring
        let portPart: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw Self.invalid(text, "an IPv6 address needs a closing ']'") }
            hostPart = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            if rest.isEmpty {
                portPart = nil
            } else if rest.hasPrefix(":") {
                portPart = rest.dropFirst()
            } else {
                throw Self.invalid(text, "expected ':' and a port after ']'")
            }
        } else if let colon = text.lastIndex(of: ":") {
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
            if hostPart.contains(":") { throw Self.invalid(text, "write an IPv6 address in brackets, e.g. [::1]:7000") }
        } else {
            hostPart = Substring(text)
            portPart = nil
        }
        guard !hostPart.isEmpty, !hostPart.contains(where: { $0 == " " || $0 == "/" }) else {
            throw Self.invalid(text, "the host is missing or has a space or '/' in it")
        }
        var port = Self.defaultPort
        if let portPart {
            guard let value = Int(portPart), (1...65535).contains(value) else {
                throw Self.invalid(text, "the port must be a number from 1 to 65535")
            }
            port = value
        }
        self.init(host: String(hostPart), port: port)
    }

    /// `host:port`, with brackets around an IPv6 address: the form `known_servers` records.
    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    private static func invalid(_ text: String, _ why: String) -> ClientError {
        ClientError(.invalidField, "'\(text)' is not a server address (host:port): \(why)")
    }
}

extension String {
    /// The string without leading and trailing spaces, tabs and line breaks.
    func trimmingWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[first...last])
    }
}
