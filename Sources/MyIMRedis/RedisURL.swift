/// Where a Redis server is and how to log in: `redis://[[user]:password@]host[:port][/db]`.
///
/// The port defaults to 6379 and the database to 0. The password (and user) may be
/// percent-encoded, so that a password can hold `@`, `:` or `/`. IPv6 hosts go in brackets
/// (`redis://[::1]:6380`). Anything else — another scheme (`rediss://` for TLS is not supported),
/// a query, a fragment, a non-numeric port or database — is rejected with a ``RedisError`` of kind
/// ``RedisError/Kind/invalidURL`` that names the offending part.
public struct RedisURL: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var database: Int
    /// The ACL user for `AUTH user password` (Redis 6+); `nil` for the classic `AUTH password`.
    public var user: String?
    public var password: String?

    public init(host: String, port: Int = 6379, database: Int = 0, user: String? = nil, password: String? = nil) {
        self.host = host
        self.port = port
        self.database = database
        self.user = user
        self.password = password
    }

    /// Parses `redis://[[user]:password@]host[:port][/db]`.
    public init(_ text: String) throws(RedisError) {
        func invalid(_ why: String) -> RedisError {
            RedisError(.invalidURL, "\(why) in Redis URL \"\(RedisURL.redacted(text))\"; expected redis://[:password@]host[:port][/db]")
        }
        let scheme = "redis://"
        guard text.lowercased().hasPrefix(scheme) else {
            throw invalid(text.contains("://") ? "unsupported scheme (only redis:// is supported)" : "missing redis:// scheme")
        }
        var rest = Substring(text.dropFirst(scheme.count))
        if rest.contains("?") || rest.contains("#") {
            throw invalid("query or fragment not supported")
        }

        // Credentials: everything before the last "@" (a raw "@" in a password must be percent-encoded,
        // but taking the last one is the forgiving reading).
        var user: String?
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            guard let colon = credentials.firstIndex(of: ":") else {
                throw invalid("credentials without ':' (write redis://:password@host)")
            }
            let rawUser = credentials[..<colon]
            let rawPassword = credentials[credentials.index(after: colon)...]
            guard let decodedPassword = RedisURL.percentDecoded(rawPassword),
                  let decodedUser = RedisURL.percentDecoded(rawUser) else {
                throw invalid("bad percent-encoding in credentials")
            }
            user = decodedUser.isEmpty ? nil : decodedUser
            password = decodedPassword
        }

        // Path: "" or "/" or "/<db>".
        var database = 0
        if let slash = rest.firstIndex(of: "/") {
            let path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
            if !path.isEmpty {
                guard let number = Int(path), number >= 0 else {
                    throw invalid("database \"\(path)\" is not a non-negative integer")
                }
                database = number
            }
        }

        // Host and port; IPv6 literals in brackets.
        var host: Substring
        var portText: Substring?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw invalid("unterminated IPv6 address") }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw invalid("unexpected text after IPv6 address") }
                portText = after.dropFirst()
            }
        } else if let colon = rest.firstIndex(of: ":") {
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        } else {
            host = rest
        }
        guard !host.isEmpty else { throw invalid("missing host") }
        var port = 6379
        if let portText {
            guard let number = Int(portText), (1...65535).contains(number) else {
                throw invalid("port \"\(portText)\" is not in 1...65535")
            }
            port = number
        }
        self.init(host: String(host), port: port, database: database, user: user, password: password)
    }

    /// The URL with the password replaced by `***`.
    public var description: String {
        var text = "redis://"
        if self.user != nil || self.password != nil {
            text += "\(self.user ?? ""):***@"
        }
        text += self.host.contains(":") ? "[\(self.host)]" : self.host
        text += ":\(self.port)"
        if self.database != 0 {
            text += "/\(self.database)"
        }
        return text
    }

    private static func redacted(_ text: String) -> String {
        guard let at = text.lastIndex(of: "@"), let schemeEnd = text.firstRange(of: "://")?.upperBound, schemeEnd <= at else {
            return text
        }
        return String(text[..<schemeEnd]) + "***" + String(text[at...])
    }

    private static func percentDecoded(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                return nil
            }
            bytes.append(high << 4 | low)
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
