import Foundation

/// A host and a TCP port: `127.0.0.1:7000`, `[::1]:7000` or `name:7000`.
public struct HostPort: Hashable, Sendable, CustomStringConvertible {
    /// An IPv4 address, an IPv6 address (without brackets) or a DNS name.
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`; IPv6 addresses go in brackets. The port must be 0–65535.
    public init?(_ text: String) {
        guard case .success(let value) = Self.parse(text) else { return nil }
        self = value
    }

    /// `host:port`, with IPv6 addresses in brackets, so that `HostPort(description)` round-trips.
    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// True for `0.0.0.0` and `::`: a listen address that means every interface, never one to dial.
    public var isUnspecified: Bool {
        host == "0.0.0.0" || host == "::" || host == "0:0:0:0:0:0:0:0"
    }

    /// Parses `host:port` and says what is wrong when it cannot.
    static func parse(_ text: String) -> Result<HostPort, ParseFailure> {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                return .failure(ParseFailure("\"\(text)\" opens an IPv6 bracket but never closes it"))
            }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else {
                return .failure(ParseFailure("\"\(text)\" has no port; write it as \"[\(host)]:PORT\""))
            }
            portText = rest.dropFirst()
            guard host.contains(":"), IPAddress.ipv6Bytes(String(host)) != nil else {
                return .failure(ParseFailure("\"\(host)\" in brackets is not an IPv6 address"))
            }
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                return .failure(ParseFailure("\"\(text)\" has no port; write it as \"HOST:PORT\""))
            }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            if host.contains(":") {
                return .failure(ParseFailure("\"\(text)\": put IPv6 addresses in brackets, as in \"[::1]:7000\""))
            }
            guard !host.isEmpty else {
                return .failure(ParseFailure("\"\(text)\" has no host; write it as \"HOST:PORT\""))
            }
            guard host.utf8.allSatisfy({ Self.isHostNameByte($0) }) else {
                return .failure(ParseFailure("\"\(host)\" is neither an IP address nor a host name"))
            }
        }
        guard !portText.isEmpty, portText.utf8.allSatisfy({ (0x30...0x39).contains($0) }), portText.count <= 5,
              let port = Int(portText), port <= 65535
        else {
            return .failure(ParseFailure("\"\(portText)\" in \"\(text)\" is not a port (1–65535)"))
        }
        return .success(HostPort(host: String(host), port: port))
    }

    private static func isHostNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"):
            true
        default:
            false
        }
    }

    struct ParseFailure: Error {
        var message: String
        init(_ message: String) { self.message = message }
    }
}

/// Literal IP addresses, as certificates carry them in subjectAltName.
enum IPAddress {
    /// The 4 or 16 bytes of a literal IPv4 or IPv6 address; nil for a host name.
    static func bytes(_ host: String) -> [UInt8]? {
        ipv4Bytes(host) ?? ipv6Bytes(host)
    }

    static func ipv4Bytes(_ host: String) -> [UInt8]? {
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var bytes: [UInt8] = []
        for part in parts {
            guard (1...3).contains(part.count), part.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
                  let value = UInt8(part)
            else { return nil }
            bytes.append(value)
        }
        return bytes
    }

    static func ipv6Bytes(_ host: String) -> [UInt8]? {
        // An embedded IPv4 tail (::ffff:1.2.3.4) counts as the last two groups.
        var text = Substring(host)
        var tail: [UInt8] = []
        if let lastColon = text.lastIndex(of: ":"), text[text.index(after: lastColon)...].contains(".") {
            guard let v4 = ipv4Bytes(String(text[text.index(after: lastColon)...])) else { return nil }
            tail = v4
            text = text[...lastColon]
            if text.hasSuffix(":") && !text.hasSuffix("::") { text = text.dropLast() }
        }
        let halves = text.components(separatedBy: "::")
        guard halves.count <= 2 else { return nil }
        func groups(_ s: String) -> [UInt16]? {
            if s.isEmpty { return [] }
            var out: [UInt16] = []
            for group in s.split(separator: ":", omittingEmptySubsequences: false) {
                guard (1...4).contains(group.count), let value = UInt16(group, radix: 16) else { return nil }
                out.append(value)
            }
            return out
        }
        guard let head = groups(halves[0]) else { return nil }
        let rest = halves.count == 2 ? groups(halves[1]) : []
        guard let rest else { return nil }
        let wanted = tail.isEmpty ? 8 : 6
        let present = head.count + rest.count
        if halves.count == 2 {
            guard present < wanted else { return nil }
        } else {
            guard present == wanted else { return nil }
        }
        let all = head + Array(repeating: 0, count: wanted - present) + rest
        var bytes: [UInt8] = []
        for group in all {
            bytes.append(UInt8(group >> 8))
            bytes.append(UInt8(group & 0xff))
        }
        return bytes + tail
    }
}
