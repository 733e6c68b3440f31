/// A layer 2 or layer 3 decoding failure: what was wrong and where.
///
/// Every rejection of peer input has a code (see ``ErrorCode``) and a message a person can
/// act on; `path` names the dictionary keys and list indices leading to the bad value.
public struct WireError: Error, Hashable, Sendable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String

    public init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "wire error \(code): \(message)" }
}

extension WireError {
    static func at(_ path: [String], _ code: ErrorCode, _ message: String) -> WireError {
        path.isEmpty ? WireError(code, message) : WireError(code, "\(message) (at \(path.joined(separator: ".")))")
    }

    public static func missingKey(_ key: String) -> WireError {
        WireError(.missingKey, "required key '\(key)' is missing")
    }

    public static func wrongType(_ key: String, expected: WireValue.Kind, found: WireValue.Kind) -> WireError {
        WireError(.wrongValueType, "key '\(key)' must be \(expected), found \(found)")
    }

    public static func invalidField(_ key: String, _ reason: String) -> WireError {
        WireError(.invalidField, "key '\(key)': \(reason)")
    }
}
