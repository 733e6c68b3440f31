import Crypto
import Foundation

/// The SHA-256 of a public key's DER SubjectPublicKeyInfo, written `sha256:<64 lower-case hex>`.
///
/// This is what clients pin: configured with `--pin`, or recorded on first use.
public struct KeyFingerprint: Hashable, Sendable, CustomStringConvertible, LosslessStringConvertible {
    public let digest: [UInt8]

    public init<D: DataProtocol>(publicKeyDER: D) {
        digest = Array(SHA256.hash(data: publicKeyDER))
    }

    /// Parses `sha256:` followed by 64 hex digits (either case).
    public init?(_ text: String) {
        guard text.hasPrefix("sha256:") else { return nil }
        let hex = Array(text.utf8.dropFirst(7))
        guard hex.count == 64 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(32)
        for index in stride(from: 0, to: 64, by: 2) {
            guard let high = Self.nibble(hex[index]), let low = Self.nibble(hex[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
        }
        digest = bytes
    }

    public var description: String { "sha256:" + digest.hexString }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

extension Sequence<UInt8> {
    /// Lower-case hex, two digits a byte.
    public var hexString: String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for byte in self {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
