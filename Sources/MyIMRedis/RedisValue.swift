/// A RESP2 reply from Redis.
///
/// hiredis decodes both a null bulk string (`$-1`) and a null array (`*-1`) as `REDIS_REPLY_NIL`;
/// ``RESPReader`` tells them apart, so `*-1` arrives as `.array(nil)` and `$-1` as `.bulk(nil)`.
public enum RedisValue: Sendable, Hashable {
    /// A simple string (`+OK`).
    case simple(String)
    /// An error reply (`-ERR ...`), without the leading `-`.
    case error(String)
    /// An integer reply (`:42`).
    case integer(Int64)
    /// A bulk string; `nil` is the null bulk string (`$-1`).
    case bulk([UInt8]?)
    /// An array; `nil` is the null array (`*-1`, e.g. EXEC after a failed WATCH).
    case array([RedisValue]?)
}

extension RedisValue {
    /// The value as text: simple strings and UTF-8 bulk strings, and integers in decimal.
    /// `nil` for nulls, arrays, errors, and bulk strings that are not valid UTF-8.
    public var string: String? {
        switch self {
        case .simple(let text):
            return text
        case .bulk(let bytes?):
            return String(validating: bytes, as: UTF8.self)
        case .integer(let value):
            return String(value)
        case .error, .bulk(nil), .array:
            return nil
        }
    }

    /// The value as an integer: integer replies, and simple or bulk strings holding a decimal integer
    /// (Redis returns numbers stored in hashes and strings as bulk strings).
    public var int: Int64? {
        switch self {
        case .integer(let value):
            return value
        case .simple, .bulk:
            return self.string.flatMap { Int64($0) }
        case .error, .array:
            return nil
        }
    }

    /// The raw bytes of a bulk or simple string.
    public var bytes: [UInt8]? {
        switch self {
        case .bulk(let bytes):
            return bytes
        case .simple(let text):
            return Array(text.utf8)
        case .error, .integer, .array:
            return nil
        }
    }

    /// `true` for the null bulk string and the null array.
    public var isNull: Bool {
        switch self {
        case .bulk(nil), .array(nil):
            return true
        default:
            return false
        }
    }

    /// The elements of a non-null array.
    public var array: [RedisValue]? {
        if case .array(let elements?) = self {
            return elements
        }
        return nil
    }

    /// The message of an error reply.
    public var errorMessage: String? {
        if case .error(let message) = self {
            return message
        }
        return nil
    }
}

extension RedisValue: CustomStringConvertible {
    /// A redis-cli-like rendering, for logs and test failures.
    public var description: String {
        switch self {
        case .simple(let text):
            return text
        case .error(let message):
            return "(error) \(message)"
        case .integer(let value):
            return "(integer) \(value)"
        case .bulk(nil), .array(nil):
            return "(nil)"
        case .bulk(let bytes?):
            if let text = String(validating: bytes, as: UTF8.self) {
                return "\"\(text)\""
            }
            return "<\(bytes.count) bytes>"
        case .array(let elements?):
            return "[" + elements.map(\.description).joined(separator: ", ") + "]"
        }
    }
}
