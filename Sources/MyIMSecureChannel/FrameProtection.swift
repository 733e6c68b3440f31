import Crypto
import Foundation
import MyIMWire
import NIOCore
import NIOFoundationCompat

/// Layer 1: `len u32 | pad-len u8 | IV 12 | tag 16 | ciphertext` around one padded packet.
///
/// `len` is the ciphertext's length, which equals the padded plaintext's; the 5 header
/// bytes are the AEAD's additional data. The IV is the direction's 4-byte salt followed by
/// a 64-bit big-endian counter that starts at 0 and goes up by one a frame; a receiver
/// accepts only the exact next counter, so replayed, dropped or reordered frames fail.
public enum FrameProtection {
    public static let headerSize = 5
    public static let saltSize = 4
    public static let ivSize = 12
    public static let tagSize = 16
    /// Bytes a frame adds to its padded plaintext.
    public static let overhead = headerSize + ivSize + tagSize

    /// The padded size of a plaintext of `length` bytes: the next power of two from 32 up to
    /// 256, then the next multiple of 256. The padding is therefore always 0...255 bytes.
    public static func paddedLength(for length: Int) -> Int {
        if length <= 256 {
            var bucket = 32
            while bucket < length { bucket <<= 1 }
            return bucket
        }
        return (length + 255) / 256 * 256
    }

    /// Whether `length` is a size ``paddedLength(for:)`` can produce.
    public static func isPaddedLength(_ length: Int) -> Bool {
        if length <= 256 { return length >= 32 && length & (length - 1) == 0 }
        return length % 256 == 0
    }
}

/// Seals outgoing packets for one direction.
public struct FrameSealer: Sendable {
    /// The direction's key and salt, not its ``TrafficKeys`` (whose salt is an array).
    private let key: SymmetricKey
    private let salt: UInt32
    private let maxFrameSize: Int
    public private(set) var counter: UInt64 = 0

    public init(keys: TrafficKeys, limits: WireLimits = .default) {
        key = keys.key
        salt = keys.salt.reduce(0) { $0 << 8 | UInt32($1) }
        self.maxFrameSize = limits.maxFrameSize
    }

    /// Appends the frame carrying `packet` to `output`.
    ///
    /// The packet and its padding are written where the ciphertext goes and sealed from there,
    /// so a frame costs `output`'s bytes and the AEAD's own result, nothing more.
    public mutating func seal(_ packet: Packet, into output: inout ByteBuffer) throws(SecureChannelError) {
        guard counter < UInt64.max else {
            throw SecureChannelError(.sequenceExhausted, "this direction has sent 2^64-1 frames; reconnect for new keys")
        }
        let start = output.writerIndex
        let tagIndex = start + FrameProtection.headerSize + FrameProtection.ivSize
        let plaintextIndex = tagIndex + FrameProtection.tagSize
        // The header's length fields are set once the packet is written and its size known.
        output.reserveCapacity(minimumWritableBytes: FrameProtection.overhead + 256)
        output.moveWriterIndex(to: plaintextIndex)  // Header, IV and tag are set below.
        let length = output.writePacket(packet)
        let padded = FrameProtection.paddedLength(for: length)
        guard padded <= maxFrameSize else {
            output.moveWriterIndex(to: start)
            throw SecureChannelError(.frameTooLarge, "a \(length)-byte packet exceeds the \(maxFrameSize)-byte frame limit")
        }
        output.writeRepeatingByte(0, count: padded - length)
        output.setMultipleIntegers(UInt32(padded), UInt8(padded - length), salt, counter, at: start, as: (UInt32, UInt8, UInt32, UInt64).self)

        let sealed: AES.GCM.SealedBox
        do {
            sealed = try output.withUnsafeReadableBytes { bytes throws in
                let frame = UnsafeRawBufferPointer(rebasing: bytes[(start - output.readerIndex)...])
                let header = UnsafeRawBufferPointer(rebasing: frame[..<FrameProtection.headerSize])
                let iv = UnsafeRawBufferPointer(rebasing: frame[FrameProtection.headerSize..<(FrameProtection.headerSize + FrameProtection.ivSize)])
                let plaintext = UnsafeRawBufferPointer(rebasing: frame[(plaintextIndex - start)...])
                return try AES.GCM.seal(plaintext, using: key, nonce: AES.GCM.Nonce(data: iv), authenticating: header)
            }
        } catch {
            output.moveWriterIndex(to: start)
            throw SecureChannelError(.decryptionFailed, "AES-GCM refused to seal: \(error)")
        }
        output.setBytes(sealed.tag, at: tagIndex)
        output.setBytes(sealed.ciphertext, at: plaintextIndex)
        counter += 1
    }
}

/// Opens incoming frames for one direction.
public struct FrameOpener: Sendable {
    /// The direction's key and salt, not its ``TrafficKeys`` (whose salt is an array).
    private let key: SymmetricKey
    private let salt: UInt32
    private let limits: WireLimits
    public private(set) var counter: UInt64 = 0

    public init(keys: TrafficKeys, limits: WireLimits = .default) {
        key = keys.key
        salt = keys.salt.reduce(0) { $0 << 8 | UInt32($1) }
        self.limits = limits
    }

    /// Reads one frame if it is complete and returns its packet; returns nil, consuming
    /// nothing, if more bytes are needed. A header announcing an oversized or impossible
    /// length is rejected as soon as its 5 bytes are in.
    public mutating func open(from buffer: inout ByteBuffer) throws(SecureChannelError) -> Packet? {
        guard let (length32, padLength) = buffer.getMultipleIntegers(at: buffer.readerIndex, as: (UInt32, UInt8).self) else {
            return nil
        }
        let length = Int(length32)
        guard length <= limits.maxFrameSize else {
            throw SecureChannelError(.frameTooLarge, "a frame announces \(length) bytes; at most \(limits.maxFrameSize) are allowed")
        }
        guard FrameProtection.isPaddedLength(length) else {
            throw SecureChannelError(.badPadding, "a frame's length \(length) is not a padding bucket size")
        }
        guard Int(padLength) <= length - Packet.headerSize else {
            throw SecureChannelError(.badPadding, "a frame pads \(padLength) of its \(length) bytes, leaving no room for a packet")
        }
        guard buffer.readableBytes >= FrameProtection.overhead + length else { return nil }

        let (ivSalt, ivCounter) = buffer.getMultipleIntegers(at: buffer.readerIndex + FrameProtection.headerSize, as: (UInt32, UInt64).self)!
        guard ivSalt == salt else {
            throw SecureChannelError(.unexpectedSequence, "a frame's IV does not start with this direction's salt")
        }
        guard ivCounter == counter else {
            throw SecureChannelError(.unexpectedSequence, "a frame carries sequence \(ivCounter) where \(counter) was expected (replayed, lost or reordered)")
        }
        let plaintext: Data
        do {
            // Raw pointers, not `ByteBufferView`s: swift-crypto copies contiguous bytes at once,
            // and a generic collection byte by byte.
            plaintext = try buffer.withUnsafeReadableBytes { bytes throws in
                let tagStart = FrameProtection.headerSize + FrameProtection.ivSize
                let ciphertextStart = tagStart + FrameProtection.tagSize
                let box = try AES.GCM.SealedBox(
                    nonce: AES.GCM.Nonce(data: UnsafeRawBufferPointer(rebasing: bytes[FrameProtection.headerSize..<tagStart])),
                    ciphertext: UnsafeRawBufferPointer(rebasing: bytes[ciphertextStart..<(ciphertextStart + length)]),
                    tag: UnsafeRawBufferPointer(rebasing: bytes[tagStart..<ciphertextStart]))
                return try AES.GCM.open(box, using: key, authenticating: UnsafeRawBufferPointer(rebasing: bytes[..<FrameProtection.headerSize]))
            }
        } catch {
            throw SecureChannelError(.decryptionFailed, "frame \(counter) failed authentication (tampered, or the keys differ)")
        }
        buffer.moveReaderIndex(forwardBy: FrameProtection.overhead + length)
        let packetLength = length - Int(padLength)
        let (packetBytes, paddingIsZero) = plaintext.withUnsafeBytes { bytes in
            (ByteBuffer(bytes: UnsafeRawBufferPointer(rebasing: bytes[..<packetLength])), bytes[packetLength...].allSatisfy { $0 == 0 })
        }
        guard paddingIsZero else {
            throw SecureChannelError(.badPadding, "frame \(counter) has non-zero padding")
        }
        let packet: Packet
        do { packet = try Packet(decoding: packetBytes, limits: limits) } catch { throw SecureChannelError(error) }
        counter += 1
        return packet
    }
}
