/// One typed value of layer 3.
///
/// On the wire each value is `value-type u8 | value-len u32 | value`; see
/// ``WireValue/Kind`` for the type bytes.
public enum WireValue: Hashable, Sendable {
    case int(Int64)
    case string(String)
    case bool(Bool)
    case list([WireValue])
    case dict(WireDict)
    case bytes([UInt8])

    /// The value-type byte of each kind.
    public enum Kind: UInt8, Sendable, CustomStringConvertible {
        case int = 1
        case string = 2
        case bool = 3
        case list = 4
        case dict = 5
        case bytes = 6

        public var description: String {
            switch self {
            case .int: "int"
            case .string: "string"
            case .bool: "bool"
            case .list: "list"
            case .dict: "dict"
            case .bytes: "bytes"
            }
        }
    }

    public var kind: Kind {
        switch self {
        case .int: .int
        case .string: .string
        case .bool: .bool
        case .list: .list
        case .dict: .dict
        case .bytes: .bytes
        }
    }
}

/// A layer-3 dictionary: string keys, typed values, in the order they were written.
///
/// Order is kept so that encoding is deterministic (the handshake transcript and the test
/// vectors depend on it). Keys are unique.
public struct WireDict: Hashable, Sendable, ExpressibleByDictionaryLiteral {
    public struct Entry: Hashable, Sendable {
        public var key: String
        public var value: WireValue
    }

    public private(set) var entries: [Entry] = []

    public init() {}

    /// A literal's keys are appended in order without a search each (messages build their
    /// bodies this way); like `Dictionary`, a literal that repeats a key is a programming error,
    /// caught by an assertion in debug builds (the tests).
    public init(dictionaryLiteral elements: (String, WireValue)...) {
        entries.reserveCapacity(elements.count)
        for (key, value) in elements {
            assert(!entries.contains { $0.key == key }, "key '\(key)' repeated in a WireDict literal")
            entries.append(Entry(key: key, value: value))
        }
    }

    public var count: Int { entries.count }
    public var isEmpty: Bool { entries.isEmpty }

    /// Reads or replaces a key's value; assigning `nil` removes the key. A new key goes last.
    public subscript(key: String) -> WireValue? {
        get { entries.first { $0.key == key }?.value }
        set {
            if let index = entries.firstIndex(where: { $0.key == key }) {
                if let newValue { entries[index].value = newValue } else { entries.remove(at: index) }
            } else if let newValue {
                entries.append(Entry(key: key, value: newValue))
            }
        }
    }

    /// Room for `count` entries, so that appending them allocates once.
    mutating func reserveCapacity(_ count: Int) {
        entries.reserveCapacity(count)
    }

    /// Appends without looking for the key: the parser has already checked uniqueness.
    mutating func appendUnchecked(_ key: String, _ value: WireValue) {
        entries.append(Entry(key: key, value: value))
    }
}
