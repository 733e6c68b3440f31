import NIOCore

/// Decodes layer-3 bodies under ``WireLimits``.
///
/// Every length read from the input is compared with the bytes actually present and with
/// the limits before anything is allocated, so no input can make the parser hold more than
/// the limits allow, recurse deeper than `maxDepth`, or loop longer than the input is long.
public struct WireParser {
    public let limits: WireLimits
    private var valueCount = 0
    /// A top-level key whose dict value is kept as its bytes (``parseBody(_:keepingEncoded:limits:)``).
    private var keptKey: String?
    private var kept: ByteBuffer?

    public init(limits: WireLimits = .default) {
        self.limits = limits
    }

    /// Parses a whole buffer as one body dict (the buffer holds exactly the body).
    public static func parseBody(_ body: ByteBuffer, limits: WireLimits = .default) throws(WireError) -> WireDict {
        var parser = WireParser(limits: limits)
        var body = body
        return try parser.parseDict(&body, depth: 1, path: [])
    }

    /// Parses a body dict except the dict value under the top-level `key`, which is returned as
    /// its bytes, unparsed (nil when the key is absent): for a body that carries another
    /// packet's body to pass on as it is. Everything else is checked as ``parseBody(_:limits:)``
    /// checks it; the kept bytes only for their length.
    public static func parseBody(
        _ body: ByteBuffer, keepingEncoded key: String, limits: WireLimits = .default
    ) throws(WireError) -> (body: WireDict, kept: ByteBuffer?) {
        var parser = WireParser(limits: limits)
        parser.keptKey = key
        var body = body
        let dict = try parser.parseDict(&body, depth: 1, path: [])
        return (dict, parser.kept)
    }

    /// The int under the top-level `key` of an encoded body, read by skipping the other entries
    /// (nothing is allocated); nil when absent, not an int, or the bytes are malformed.
    public static func topLevelInt(_ key: String, in body: ByteBuffer) -> Int64? {
        topLevel(key, in: body) { $0.int }
    }

    /// The string under the top-level `key` of an encoded body, found by skipping the other
    /// entries; nil when absent, not a string of valid UTF-8, or the bytes are malformed.
    public static func topLevelString(_ key: String, in body: ByteBuffer) -> String? {
        topLevel(key, in: body) { entry in entry.string.map { String(decoding: $0, as: UTF8.self) } }
    }

    /// `read` applied to the first top-level entry under `key`, found by skipping the others.
    private static func topLevel<Value>(_ key: String, in body: ByteBuffer, _ read: (WireEntry) -> Value?) -> Value? {
        body.withUnsafeReadableBytes { bytes -> Value? in
            var entries = WireEntryScanner(bytes, limits: .lookup)
            while let entry = entries.next() {
                guard entry.key.elementsEqual(key.utf8) else { continue }
                return read(entry)
            }
            return nil
        }
    }

    private mutating func parseDict(_ buffer: inout ByteBuffer, depth: Int, path: [String]) throws(WireError) -> WireDict {
        guard depth <= limits.maxDepth else {
            throw .at(path, .nestingTooDeep, "nesting is deeper than \(limits.maxDepth) levels")
        }
        var dict = WireDict()
        dict.reserveCapacity(Self.entryCount(in: buffer, keyed: true))
        // Duplicate keys are found by a linear scan while the dict is small, by a set after.
        var seen: Set<String>? = nil
        while buffer.readableBytes > 0 {
            guard dict.count < limits.maxContainerCount else {
                throw .at(path, .containerTooLong, "a dict has more than \(limits.maxContainerCount) entries")
            }
            let key = try readKey(&buffer, path: path)
            if seen != nil {
                // Insert in place: binding the set to a local would copy it on every insert.
                guard seen!.insert(key).inserted else { throw .at(path, .duplicateKey, "key '\(key)' appears twice") }
            } else {
                guard !dict.entries.contains(where: { $0.key == key }) else {
                    throw .at(path, .duplicateKey, "key '\(key)' appears twice")
                }
                if dict.count == 16 { seen = Set(dict.entries.map(\.key) + [key]) }
            }
            if depth == 1, key == keptKey, kept != nil { throw .at(path, .duplicateKey, "key '\(key)' appears twice") }
            if depth == 1, key == keptKey, buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) == WireValue.Kind.dict.rawValue {
                kept = try readEncodedValue(&buffer, path: path, key: key)
                continue
            }
            let value = try readTypedValue(&buffer, depth: depth, path: path, label: .key(key))
            dict.appendUnchecked(key, value)
        }
        return dict
    }

    /// How many entries (`keyed`: a dict's) or elements the container's bytes hold, counted
    /// from their headers without reading a value, to size the container once: at most 32
    /// (a larger one grows as it is read), and only those whose bytes are all there, so that
    /// no input makes the parser reserve more than its bytes could fill.
    private static func entryCount(in buffer: ByteBuffer, keyed: Bool) -> Int {
        var offset = buffer.readerIndex
        let end = buffer.writerIndex
        var count = 0
        while offset < end, count < 32 {
            if keyed {
                guard let keyLength = buffer.getInteger(at: offset, as: UInt8.self) else { break }
                offset += 1 + Int(keyLength)
            }
            guard offset + 5 <= end, let length = buffer.getInteger(at: offset + 1, as: UInt32.self),
                  UInt64(length) <= UInt64(end - offset - 5)
            else { break }
            offset += 5 + Int(length)
            count += 1
        }
        return count
    }

    /// The first `length` readable bytes of `buffer` (the caller has checked that they are
    /// there) as a string if they are valid UTF-8. ASCII (every key, most values) is recognised
    /// by a plain scan and decoded without a second check; anything else goes through the
    /// standard library's validation.
    static func utf8String(_ buffer: ByteBuffer, length: Int) -> String? {
        buffer.withUnsafeReadableBytes { bytes in
            let raw = UnsafeRawBufferPointer(rebasing: bytes.prefix(length))
            if !raw.contains(where: { $0 >= 0x80 }) { return String(decoding: raw, as: UTF8.self) }
            return String(validating: raw, as: UTF8.self)
        }
    }

    private func readKey(_ buffer: inout ByteBuffer, path: [String]) throws(WireError) -> String {
        guard let keyLength = buffer.readInteger(as: UInt8.self) else {
            throw .at(path, .truncated, "input ends inside a key length")
        }
        guard keyLength > 0 else { throw .at(path, .emptyKey, "a key is empty") }
        guard keyLength <= limits.maxKeyLength else {
            throw .at(path, .keyTooLong, "a key is \(keyLength) bytes, more than \(limits.maxKeyLength)")
        }
        guard buffer.readableBytes >= Int(keyLength) else {
            throw .at(path, .truncated, "input ends inside a key")
        }
        guard let key = Self.utf8String(buffer, length: Int(keyLength)) else {
            throw .at(path, .invalidUTF8, "a key is not valid UTF-8")
        }
        buffer.moveReaderIndex(forwardBy: Int(keyLength))
        return key
    }

    /// Where a value sits in its container. The full path (an array) is built only for an
    /// error or a nested container, not for every value read.
    private enum Label {
        case key(String)
        case index(Int)

        func appended(to path: [String]) -> [String] {
            switch self {
            case .key(let key): path + [key]
            case .index(let index): path + ["[\(index)]"]
            }
        }
    }

    /// Reads a value's header and returns its bytes, unparsed.
    private mutating func readEncodedValue(_ buffer: inout ByteBuffer, path: [String], key: String) throws(WireError) -> ByteBuffer {
        guard let (_, length) = buffer.readMultipleIntegers(as: (UInt8, UInt32).self),
              let length = Int(exactly: length), length <= buffer.readableBytes
        else {
            throw .at(path + [key], .truncated, "the value claims more bytes than remain")
        }
        valueCount += 1
        guard valueCount <= limits.maxValueCount else {
            throw .at(path + [key], .tooManyValues, "the body holds more than \(limits.maxValueCount) values")
        }
        return buffer.readSlice(length: length)!
    }

    /// Reads `value-type u8 | value-len u32 | value` from `buffer`.
    private mutating func readTypedValue(_ buffer: inout ByteBuffer, depth: Int, path: [String], label: Label) throws(WireError) -> WireValue {
        guard let (typeByte, length) = buffer.readMultipleIntegers(as: (UInt8, UInt32).self) else {
            throw .at(label.appended(to: path), .truncated, "input ends inside a value header")
        }
        guard let kind = WireValue.Kind(rawValue: typeByte) else {
            throw .at(label.appended(to: path), .unknownValueType, "value type \(typeByte) is not one of 1...6")
        }
        guard let length = Int(exactly: length), length <= buffer.readableBytes else {
            throw .at(label.appended(to: path), .truncated, "a \(kind) value claims \(length) bytes but \(buffer.readableBytes) remain")
        }
        valueCount += 1
        guard valueCount <= limits.maxValueCount else {
            throw .at(label.appended(to: path), .tooManyValues, "the body holds more than \(limits.maxValueCount) values")
        }
        let value = try parseValue(kind, buffer, length: length, depth: depth, path: path, label: label)
        buffer.moveReaderIndex(forwardBy: length)
        return value
    }

    /// The value of `kind` in the first `length` readable bytes of `buffer` (all present), read
    /// in place: only a container gets a slice of its own to parse.
    private mutating func parseValue(
        _ kind: WireValue.Kind, _ buffer: ByteBuffer, length: Int, depth: Int, path: [String], label: Label
    ) throws(WireError) -> WireValue {
        let start = buffer.readerIndex
        switch kind {
        case .int:
            guard length == 8, let int = buffer.getInteger(at: start, endianness: .big, as: Int64.self) else {
                throw .at(label.appended(to: path), .badScalarLength, "an int is 8 bytes, found \(length)")
            }
            return .int(int)
        case .bool:
            guard length == 1, let byte = buffer.getInteger(at: start, as: UInt8.self) else {
                throw .at(label.appended(to: path), .badScalarLength, "a bool is 1 byte, found \(length)")
            }
            guard byte <= 1 else { throw .at(label.appended(to: path), .badBoolValue, "a bool is 0 or 1, found \(byte)") }
            return .bool(byte == 1)
        case .string:
            guard length <= limits.maxStringLength else {
                throw .at(label.appended(to: path), .stringTooLong, "a string is \(length) bytes, more than \(limits.maxStringLength)")
            }
            guard let string = Self.utf8String(buffer, length: length) else {
                throw .at(label.appended(to: path), .invalidUTF8, "a string is not valid UTF-8")
            }
            return .string(string)
        case .bytes:
            guard length <= limits.maxBytesLength else {
                throw .at(label.appended(to: path), .bytesTooLong, "a bytes value is \(length) bytes, more than \(limits.maxBytesLength)")
            }
            return .bytes(buffer.getBytes(at: start, length: length)!)
        case .dict:
            var slice = buffer.getSlice(at: start, length: length)!
            return .dict(try parseDict(&slice, depth: depth + 1, path: label.appended(to: path)))
        case .list:
            var slice = buffer.getSlice(at: start, length: length)!
            return .list(try parseList(&slice, depth: depth + 1, path: label.appended(to: path)))
        }
    }

    private mutating func parseList(_ buffer: inout ByteBuffer, depth: Int, path: [String]) throws(WireError) -> [WireValue] {
        guard depth <= limits.maxDepth else {
            throw .at(path, .nestingTooDeep, "nesting is deeper than \(limits.maxDepth) levels")
        }
        var elements: [WireValue] = []
        elements.reserveCapacity(Self.entryCount(in: buffer, keyed: false))
        while buffer.readableBytes > 0 {
            guard elements.count < limits.maxContainerCount else {
                throw .at(path, .containerTooLong, "a list has more than \(limits.maxContainerCount) elements")
            }
            elements.append(try readTypedValue(&buffer, depth: depth, path: path, label: .index(elements.count)))
        }
        return elements
    }
}
