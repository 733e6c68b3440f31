import Crypto
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

    static func iv(salt: [UInt8], counter: UInt64) -> [UInt8] {
        var iv = salt
        iv.reserveCapacity(ivSize)
        withUnsafeBytes(of: counter.bigEndian) { iv.append(contentsOf: $0) }
        return iv
    }
}

/// Seals outgoing packets for one direction.
public struct FrameSealer: Sendable {
    private let keys: TrafficKeys
    private let maxFrameSize: Int
    public private(set) var counter: UInt64 = 0

    public init(keys: TrafficKeys, limits: WireLimits = .default) {
        self.keys = keys
        self.maxFrameSize = limits.maxFrameSize
    }

    /// Appends the frame carrying `packet` to `output`.
    public mutating func seal(_ packet: Packet, into output: inout ByteBuffer) throws(SecureChannelError) {
        var plaintext = ByteBuffer()
        let length = plaintext.writePacket(packet)
        let padded = FrameProtection.paddedLength(for: length)
        guard padded <= maxFrameSize else {
            throw SecureChannelError(.frameTooLarge, "a \(length)-byte packet exceeds the \(maxFrameSize)-byte frame limit")
        }
        guard counter < UInt64.max else {
            throw SecureChannelError(.sequenceExhausted, "this direction has sent 2^64-1 frames; reconnect for new keys")
        }
        plaintext.writeRepeatingByte(0, count: padded - length)

        var header: [UInt8] = []
        header.reserveCapacity(FrameProtection.headerSize)
        withUnsafeBytes(of: UInt32(padded).bigEndian) { header.append(contentsOf: $0) }
        header.append(UInt8(padded - length))
        let iv = FrameProtection.iv(salt: keys.salt, counter: counter)
        let sealed: AES.GCM.SealedBox
        do {
            sealed = try plaintext.withUnsafeReadableBytes { bytes in
                try AES.GCM.seal(bytes, using: keys.key, nonce: AES.GCM.Nonce(data: iv), authenticating: header)
            }
        } catch {
            throw SecureChannelError(.decryptionFailed, "AES-GCM refused to seal: \(error)")
        }
        output.reserveCapacity(minimumWritableBytes: FrameProtection.overhead + padded)
        output.writeBytes(header)
        output.writeBytes(iv)
        output.writeBytes(sealed.tag)
        output.writeBytes(sealed.ciphertext)
        counter += 1
    }
}

/// Opens incoming frames for one direction.
public struct FrameOpener: Sendable {
    private let keys: TrafficKeys
    private let limits: WireLimits
    public private(set) var counter: UInt64 = 0

    public init(keys: TrafficKeys, limits: WireLimits = .default) {
        self.keys = keys
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

        let header = buffer.readSlice(length: FrameProtection.headerSize)!
        let iv = buffer.readBytes(length: FrameProtection.ivSize)!
        let tag = buffer.readSlice(length: FrameProtection.tagSize)!
        let ciphertext = buffer.readSlice(length: length)!

        let expected = FrameProtection.iv(salt: keys.salt, counter: counter)
        guard iv == expected else {
            guard iv.starts(with: keys.salt) else {
                throw SecureChannelError(.unexpectedSequence, "a frame's IV does not start with this direction's salt")
            }
            let got = iv.dropFirst(FrameProtection.saltSize).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            throw SecureChannelError(.unexpectedSequence, "a frame carries sequence \(got) where \(counter) was expected (replayed, lost or reordered)")
        }
        let plaintext: [UInt8]
        do {
            let box = try AES.GCM.SealedBox(nonce: AES.GCM.Nonce(data: iv), ciphertext: ciphertext.readableBytesView, tag: tag.readableBytesView)
            plaintext = Array(try AES.GCM.open(box, using: keys.key, authenticating: header.readableBytesView))
        } catch {
            throw SecureChannelError(.decryptionFailed, "frame \(counter) failed authentication (tampered, or the keys differ)")
        }
        let packetLength = length - Int(padLength)
        guard plaintext[packetLength...].allSatisfy({ $0 == 0 }) else {
            throw SecureChannelError(.badPadding, "frame \(counter) has non-zero padding")
        }
        var packetBytes = ByteBuffer()
        packetBytes.writeBytes(plaintext[..<packetLength])
        let packet: Packet
        do { packet = try Packet(decoding: packetBytes, limits: limits) } catch { throw SecureChannelError(error) }
        counter += 1
        return packet
    }
}
