import NIOCore

extension ByteBuffer {
    /// Writes a dict's entries (`key-len u8 | key | value-type u8 | value-len u32 | value`, repeated)
    /// and returns the number of bytes written. Keys longer than 255 bytes are a programming error.
    ///
    /// The size is computed first and reserved once; the bytes are then stored through one
    /// pointer, not with a capacity and exclusivity check per field.
    @discardableResult
    public mutating func writeWireDict(_ dict: WireDict) -> Int {
        writeEncoded(size: dict.encodedSize) { $0.write(dict) }
    }

    /// Writes one typed value: `value-type u8 | value-len u32 | value`.
    @discardableResult
    public mutating func writeWireValue(_ value: WireValue) -> Int {
        writeEncoded(size: value.encodedSize) { $0.write(value) }
    }

    /// Reserves `size` bytes and lets `write` store exactly that many through one pointer.
    private mutating func writeEncoded(size: Int, _ write: (inout RawWireWriter) -> Void) -> Int {
        guard size > 0 else { return 0 }
        return writeWithUnsafeMutableBytes(minimumWritableBytes: size) { bytes in
            var writer = RawWireWriter(bytes.baseAddress!)
            write(&writer)
            assert(writer.offset == size, "wrote \(writer.offset) bytes where \(size) were computed")
            return size
        }
    }

    /// Writes one dict entry whose value is an int, without building a ``WireDict``.
    @discardableResult
    public mutating func writeWireEntry(_ key: StaticString, int: Int64) -> Int {
        writeEncoded(size: RawWireWriter.entrySize(key, contentSize: 8)) { $0.entry(key, int: int) }
    }

    /// Writes one dict entry whose value is a string, without building a ``WireDict``.
    @discardableResult
    public mutating func writeWireEntry(_ key: StaticString, string: String) -> Int {
        writeEncoded(size: RawWireWriter.entrySize(key, contentSize: string.utf8.count)) { $0.entry(key, string: string) }
    }

    /// Writes one dict entry whose value is a list of strings, without building a ``WireDict``.
    @discardableResult
    public mutating func writeWireEntry(_ key: StaticString, strings: [String]) -> Int {
        let contentSize = strings.reduce(0) { $0 + 5 + $1.utf8.count }
        return writeEncoded(size: RawWireWriter.entrySize(key, contentSize: contentSize)) { writer in
            writer.entry(key, listOfSize: contentSize) { writer in
                for string in strings { writer.write(.string(string)) }
            }
        }
    }

    /// Writes one dict entry whose value is a dict already encoded (`encoded`'s readable
    /// bytes, written as they are): how a body passed on unparsed goes inside another.
    @discardableResult
    public mutating func writeWireEntry(_ key: String, encodedDict encoded: ByteBuffer) -> Int {
        let keyLength = key.utf8.count
        precondition(keyLength > 0 && keyLength <= Int(UInt8.max), "wire keys are 1...255 bytes")
        precondition(encoded.readableBytes <= Int(UInt32.max), "a wire value is at most 4 GiB")
        let size = 1 + keyLength + 5 + encoded.readableBytes
        return writeWithUnsafeMutableBytes(minimumWritableBytes: size) { bytes in
            var writer = RawWireWriter(bytes.baseAddress!)
            writer.key(key, length: keyLength)
            writer.byte(WireValue.Kind.dict.rawValue)
            writer.uint32(UInt32(encoded.readableBytes))
            encoded.withUnsafeReadableBytes { writer.bytes($0) }
            return size
        }
    }
}

extension WireDict {
    /// The number of bytes ``NIOCore/ByteBuffer/writeWireDict(_:)`` writes for this dict.
    public var encodedSize: Int {
        var size = 0
        for entry in entries { size += 1 + entry.key.utf8.count + entry.value.encodedSize }
        return size
    }
}

extension WireValue {
    /// The number of bytes ``NIOCore/ByteBuffer/writeWireValue(_:)`` writes for this value,
    /// its 5-byte header included.
    public var encodedSize: Int { 5 + contentSize }

    var contentSize: Int {
        switch self {
        case .int: 8
        case .string(let string): string.utf8.count
        case .bool: 1
        case .bytes(let bytes): bytes.count
        case .dict(let dict): dict.encodedSize
        case .list(let elements):
            elements.reduce(0) { $0 + $1.encodedSize }
        }
    }
}

/// Stores wire values into memory reserved for exactly their encoded size.
struct RawWireWriter {
    let base: UnsafeMutableRawPointer
    var offset = 0

    init(_ base: UnsafeMutableRawPointer) { self.base = base }

    mutating func byte(_ value: UInt8) {
        base.storeBytes(of: value, toByteOffset: offset, as: UInt8.self)
        offset += 1
    }

    mutating func uint32(_ value: UInt32) {
        base.storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt32.self)
        offset += 4
    }

    mutating func bytes(_ source: UnsafeRawBufferPointer) {
        guard let address = source.baseAddress, !source.isEmpty else { return }
        (base + offset).copyMemory(from: address, byteCount: source.count)
        offset += source.count
    }

    mutating func string(_ string: String) {
        let copied: Void? = string.utf8.withContiguousStorageIfAvailable { self.bytes(UnsafeRawBufferPointer($0)) }
        if copied == nil {
            for unit in string.utf8 { byte(unit) }
        }
    }

    mutating func key(_ key: String, length: Int) {
        byte(UInt8(length))
        string(key)
    }

    // Entries written straight from typed fields, for a message that encodes its body
    // without building a ``WireDict`` (``ChatDelivery/encodedPacket``): the same bytes.

    /// The encoded size of an entry under `key` whose value's content is `contentSize` bytes.
    static func entrySize(_ key: StaticString, contentSize: Int) -> Int {
        1 + key.utf8CodeUnitCount + 5 + contentSize
    }

    private mutating func header(_ key: StaticString, _ kind: WireValue.Kind, contentSize: Int) {
        byte(UInt8(key.utf8CodeUnitCount))
        bytes(UnsafeRawBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount))
        byte(kind.rawValue)
        precondition(contentSize <= Int(UInt32.max), "a wire value is at most 4 GiB")
        uint32(UInt32(contentSize))
    }

    mutating func entry(_ key: StaticString, int: Int64) {
        header(key, .int, contentSize: 8)
        base.storeBytes(of: int.bigEndian, toByteOffset: offset, as: Int64.self)
        offset += 8
    }

    mutating func entry(_ key: StaticString, string: String) {
        header(key, .string, contentSize: string.utf8.count)
        self.string(string)
    }

    mutating func entry(_ key: StaticString, bytes: [UInt8]) {
        header(key, .bytes, contentSize: bytes.count)
        bytes.withUnsafeBytes { self.bytes($0) }
    }

    /// A dict entry whose entries `write` stores: exactly `contentSize` bytes.
    mutating func entry(_ key: StaticString, dictOfSize contentSize: Int, _ write: (inout RawWireWriter) -> Void) {
        header(key, .dict, contentSize: contentSize)
        let start = offset
        write(&self)
        assert(offset - start == contentSize, "a dict wrote \(offset - start) bytes where \(contentSize) were computed")
    }

    /// A list entry whose elements `write` stores: exactly `contentSize` bytes.
    mutating func entry(_ key: StaticString, listOfSize contentSize: Int, _ write: (inout RawWireWriter) -> Void) {
        header(key, .list, contentSize: contentSize)
        let start = offset
        write(&self)
        assert(offset - start == contentSize, "a list wrote \(offset - start) bytes where \(contentSize) were computed")
    }

    mutating func write(_ dict: WireDict) {
        for entry in dict.entries {
            let keyLength = entry.key.utf8.count
            precondition(keyLength > 0 && keyLength <= Int(UInt8.max), "wire keys are 1...255 bytes")
            key(entry.key, length: keyLength)
            write(entry.value)
        }
    }

    mutating func write(_ value: WireValue) {
        byte(value.kind.rawValue)
        let lengthOffset = offset
        offset += 4
        let contentStart = offset
        switch value {
        case .int(let int):
            base.storeBytes(of: int.bigEndian, toByteOffset: offset, as: Int64.self)
            offset += 8
        case .string(let string):
            self.string(string)
        case .bool(let bool):
            byte(bool ? 1 : 0)
        case .bytes(let bytes):
            bytes.withUnsafeBytes { self.bytes($0) }
        case .dict(let dict):
            write(dict)
        case .list(let elements):
            for element in elements { write(element) }
        }
        let contentLength = offset - contentStart
        precondition(contentLength <= Int(UInt32.max), "a wire value is at most 4 GiB")
        base.storeBytes(of: UInt32(contentLength).bigEndian, toByteOffset: lengthOffset, as: UInt32.self)
    }
}
