import NIOCore

extension ByteBuffer {
    /// Writes a dict's entries (`key-len u8 | key | value-type u8 | value-len u32 | value`, repeated)
    /// and returns the number of bytes written. Keys longer than 255 bytes are a programming error.
    @discardableResult
    public mutating func writeWireDict(_ dict: WireDict) -> Int {
        let start = writerIndex
        for entry in dict.entries {
            let keyLength = entry.key.utf8.count
            precondition(keyLength > 0 && keyLength <= Int(UInt8.max), "wire keys are 1...255 bytes")
            writeInteger(UInt8(keyLength))
            writeString(entry.key)
            writeWireValue(entry.value)
        }
        return writerIndex - start
    }

    /// Writes one typed value: `value-type u8 | value-len u32 | value`.
    @discardableResult
    public mutating func writeWireValue(_ value: WireValue) -> Int {
        let start = writerIndex
        writeInteger(value.kind.rawValue)
        let lengthIndex = writerIndex
        writeInteger(UInt32(0))
        let valueStart = writerIndex
        switch value {
        case .int(let int):
            writeInteger(int, endianness: .big)
        case .string(let string):
            writeString(string)
        case .bool(let bool):
            writeInteger(UInt8(bool ? 1 : 0))
        case .bytes(let bytes):
            writeBytes(bytes)
        case .dict(let dict):
            writeWireDict(dict)
        case .list(let elements):
            for element in elements { writeWireValue(element) }
        }
        let valueLength = writerIndex - valueStart
        precondition(valueLength <= Int(UInt32.max), "a wire value is at most 4 GiB")
        setInteger(UInt32(valueLength), at: lengthIndex)
        return writerIndex - start
    }
}
