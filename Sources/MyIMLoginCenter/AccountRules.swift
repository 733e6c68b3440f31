import MyIMWire

/// A refusal the login center sends back: a code, a message a person can act on and, for
/// rate limits and overload, how long to wait.
public struct LoginRefusal: Error, Hashable, Sendable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String
    /// Milliseconds.
    public var retryAfter: Int64?

    public init(_ code: ErrorCode, _ message: String, retryAfter: Int64? = nil) {
        self.code = code
        self.message = message
        self.retryAfter = retryAfter
    }

    public var description: String { "\(code): \(message)" }
}

/// The rules for user names and passwords.
public enum AccountRules {
    public static let nameLength = 3...32
    public static let passwordLength = 8...1024
    /// Names nobody may register: they impersonate the service or its operators.
    public static let reservedNames: Set<String> = [
        "admin", "administrator", "root", "system", "myim", "support", "help", "security", "postmaster",
        "hostmaster", "webmaster", "abuse", "noreply", "no-reply", "server", "login", "official", "staff",
    ]

    /// Splits `user` or `user@domain` into a lower-cased name and domain and checks both.
    ///
    /// A bare name belongs to `defaultDomain`; the domain must be one of `domains`.
    public static func address(_ input: String, defaultDomain: String, domains: Set<String>) throws(LoginRefusal) -> (name: String, domain: String) {
        let lowered = input.lowercased()
        let parts = lowered.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count <= 2 else {
            throw LoginRefusal(.invalidName, "an address is name@domain with one '@'")
        }
        let name = String(parts[0])
        let domain = parts.count == 2 ? String(parts[1]) : defaultDomain
        guard domains.contains(domain) else {
            throw LoginRefusal(.unknownDomain, "domain '\(domain)' is not served here; served: \(domains.sorted().joined(separator: ", "))")
        }
        try checkName(name)
        return (name, domain)
    }

    /// 3–32 characters from a–z, 0–9, '.', '_' and '-', starting with a letter, not reserved.
    public static func checkName(_ name: String) throws(LoginRefusal) {
        let bytes = Array(name.utf8)
        guard nameLength.contains(bytes.count) else {
            throw LoginRefusal(.invalidName, "a user name is \(nameLength.lowerBound)–\(nameLength.upperBound) characters, '\(name.prefix(40))' has \(name.count)")
        }
        guard let first = bytes.first, (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(first) else {
            throw LoginRefusal(.invalidName, "a user name starts with a letter a–z")
        }
        let allowed = { (byte: UInt8) -> Bool in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
        }
        guard bytes.allSatisfy(allowed) else {
            throw LoginRefusal(.invalidName, "a user name uses only a–z, 0–9, '.', '_' and '-'")
        }
        guard !reservedNames.contains(name) else {
            throw LoginRefusal(.invalidName, "'\(name)' is reserved; choose another name")
        }
    }

    /// 8–1024 bytes, not the user name, not one character repeated.
    public static func checkPassword(_ password: String, name: String) throws(LoginRefusal) {
        let length = password.utf8.count
        guard passwordLength.contains(length) else {
            throw LoginRefusal(.weakPassword, "a password is \(passwordLength.lowerBound)–\(passwordLength.upperBound) bytes long, this one is \(length)")
        }
        guard password.lowercased() != name, !password.lowercased().hasPrefix(name + "@") else {
            throw LoginRefusal(.weakPassword, "the password must not be the user name")
        }
        guard Set(password).count > 1 else {
            throw LoginRefusal(.weakPassword, "the password must not be one character repeated")
        }
    }

    /// A device fingerprint is `sha256:` and 64 lower-case hex digits.
    public static func checkDevice(_ device: String) throws(LoginRefusal) {
        let hex = device.utf8.dropFirst(7)
        guard device.hasPrefix("sha256:"), hex.count == 64,
              hex.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) })
        else {
            throw LoginRefusal(.invalidDevice, "a device fingerprint is 'sha256:' and 64 lower-case hex digits")
        }
    }
}
