/// One entry of an encoded dict, read in place by ``WireEntryScanner``: its key and its
/// value's type and bytes, as views of the bytes being scanned (valid while they are).
///
/// The accessors check a value as ``WireParser`` does (its type, its length, UTF-8, the
/// limits) and return nil for a value the parser would refuse or that is of another type.
public struct WireEntry {
    public var key: UnsafeRawBufferPointer
    /// Nil for a type byte that is not one of ``WireValue/Kind``.
    public var kind: WireValue.Kind?
    public var value: UnsafeRawBufferPointer
    let limits: WireLimits

    /// Whether the key is `name`'s bytes.
    public func hasKey(_ name: StaticString) -> Bool {
        guard key.count == name.utf8CodeUnitCount else { return false }
        let expected = name.utf8Start
        for index in 0..<key.count where key[index] != expected[index] { return false }
        return true
    }

    /// The value if it is an int (8 bytes, big-endian).
    public var int: Int64? {
        guard kind == .int, value.count == 8 else { return nil }
        return Int64(bigEndian: value.loadUnaligned(as: Int64.self))
    }

    /// The value's bytes if it is a string of valid UTF-8 within the limits.
    public var string: UnsafeRawBufferPointer? {
        guard kind == .string, value.count <= limits.maxStringLength, Self.isValidUTF8(value) else { return nil }
        return value
    }

    /// The value's bytes if it is a bytes value within the limits.
    public var bytes: UnsafeRawBufferPointer? {
        guard kind == .bytes, value.count <= limits.maxBytesLength else { return nil }
        return value
    }

    /// The value if it is a list whose elements are all strings (valid UTF-8, within the
    /// limits, as many as `maxContainerCount`).
    public var strings: [String]? {
        guard kind == .list else { return nil }
        var strings: [String] = []
        var offset = 0
        while offset < value.count {
            guard strings.count < limits.maxContainerCount, value.count - offset >= 5,
                  value[offset] == WireValue.Kind.string.rawValue
            else { return nil }
            let length = Int(UInt32(bigEndian: value.loadUnaligned(fromByteOffset: offset + 1, as: UInt32.self)))
            guard length <= value.count - offset - 5, length <= limits.maxStringLength else { return nil }
            let string = UnsafeRawBufferPointer(rebasing: value[(offset + 5)..<(offset + 5 + length)])
            guard Self.isValidUTF8(string) else { return nil }
            strings.append(String(decoding: string, as: UTF8.self))
            offset += 5 + length
        }
        return strings
    }

    /// ASCII by a plain scan; anything else by the standard library's validation, as
    /// `String(validating:)` does it, without making a string.
    static func isValidUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.contains(where: { $0 >= 0x80 }) else { return true }
        return (try? UTF8Span(validating: bytes.assumingMemoryBound(to: UInt8.self).span)) != nil
    }
}

/// Walks the entries of an encoded dict (`key-len u8 | key | value-type u8 | value-len u32 |
/// value`, repeated), checking each header as ``WireParser`` does (a key of 1 to
/// `maxKeyLength` bytes, every length within the bytes present) without reading a value:
/// for a reader of one message's usual shape that leaves anything else to the parser.
public struct WireEntryScanner {
    private let bytes: UnsafeRawBufferPointer
    private let limits: WireLimits
    private var offset = 0
    /// False once an entry was malformed: ``next()`` then returns nil before the end.
    private var intact = true

    /// Scans `bytes`, which must stay valid while the entries read are used.
    public init(_ bytes: UnsafeRawBufferPointer, limits: WireLimits) {
        self.bytes = bytes
        self.limits = limits
    }

    /// Every entry was read and none was malformed.
    public var isAtEnd: Bool { intact && offset == bytes.count }

    /// The next entry; nil at the end or at a malformed one (``isAtEnd`` tells which).
    public mutating func next() -> WireEntry? {
        guard intact, offset < bytes.count else { return nil }
        let keyLength = Int(bytes[offset])
        let valueStart = offset + 1 + keyLength + 5
        guard keyLength > 0, keyLength <= limits.maxKeyLength, valueStart <= bytes.count,
              WireEntry.isValidUTF8(UnsafeRawBufferPointer(rebasing: bytes[(offset + 1)..<(valueStart - 5)]))
        else {
            intact = false
            return nil
        }
        let kind = WireValue.Kind(rawValue: bytes[valueStart - 5])
        let length = Int(UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: valueStart - 4, as: UInt32.self)))
        guard length <= bytes.count - valueStart else {
            intact = false
            return nil
        }
        offset = valueStart + length
        return WireEntry(
            key: UnsafeRawBufferPointer(rebasing: bytes[(valueStart - 5 - keyLength)..<(valueStart - 5)]),
            kind: kind, value: UnsafeRawBufferPointer(rebasing: bytes[valueStart..<offset]), limits: limits)
    }
}
