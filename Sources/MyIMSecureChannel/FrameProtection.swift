#if canImport(CMyIMAEAD) && os(Linux)
import CMyIMAEAD
#endif
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

    /// What seals and opens frames: `libcrypto` (Linux) or `swift-crypto`.
    public static var backend: String {
        #if canImport(CMyIMAEAD) && os(Linux)
        "libcrypto"
        #else
        "swift-crypto"
        #endif
    }

    /// Loads what sealing and opening frames need (on Linux, libcrypto's AES-GCM: about 2 MB,
    /// once per process), so that a server pays for it when it starts, not with its first
    /// connection, and fails there if libcrypto cannot do AES-256-GCM (a provider missing, a
    /// policy that forbids it) rather than on every frame. Idempotent.
    public static func prepare() throws(SecureChannelError) {
        #if canImport(CMyIMAEAD) && os(Linux)
        guard myim_aes256gcm_prepare() == 1 else {
            throw SecureChannelError(.internalError, "libcrypto cannot do AES-256-GCM here; check the OpenSSL installation and its configuration")
        }
        #endif
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

        let frameOffset = start - output.readerIndex
        let key = key
        let sealed = output.withUnsafeMutableReadableBytes { bytes in
            FrameAEAD.seal(UnsafeMutableRawBufferPointer(rebasing: bytes[frameOffset...]), key: key)
        }
        guard sealed else {
            output.moveWriterIndex(to: start)
            throw SecureChannelError(.internalError, "AES-GCM refused to seal frame \(counter)")
        }
        counter += 1
    }
}

/// Opens incoming frames for one direction.
public struct FrameOpener: Sendable {
    /// The direction's key and salt, not its ``TrafficKeys`` (whose salt is an array).
    private let key: SymmetricKey
    private let salt: UInt32
    private let limits: WireLimits
    /// A chat of the usual shape comes out with its body checked but still encoded
    /// (``MyIMWire/Packet/read(from:maxSize:limits:leavingChatsEncoded:)``): the server's side,
    /// which passes chats on.
    private let leavesChatsEncoded: Bool
    public private(set) var counter: UInt64 = 0

    public init(keys: TrafficKeys, limits: WireLimits = .default, leavesChatsEncoded: Bool = false) {
        key = keys.key
        salt = keys.salt.reduce(0) { $0 << 8 | UInt32($1) }
        self.limits = limits
        self.leavesChatsEncoded = leavesChatsEncoded
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
        // The plaintext goes into a buffer of its own, which the packet then owns: values read
        // from it (an image's bytes) do not keep the connection's receive buffer alive.
        var packetBytes = ByteBufferAllocator().buffer(capacity: length)
        let key = key
        let opened = buffer.withUnsafeReadableBytes { frame in
            packetBytes.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { plaintext in
                FrameAEAD.open(UnsafeRawBufferPointer(rebasing: frame[..<(FrameProtection.overhead + length)]), key: key, into: plaintext) ? length : 0
            }
        } == length
        guard opened else {
            throw SecureChannelError(.decryptionFailed, "frame \(counter) failed authentication (tampered, or the keys differ)")
        }
        buffer.moveReaderIndex(forwardBy: FrameProtection.overhead + length)
        let packetLength = length - Int(padLength)
        let paddingIsZero = packetBytes.withUnsafeReadableBytes { bytes in bytes[packetLength...].allSatisfy { $0 == 0 } }
        guard paddingIsZero else {
            throw SecureChannelError(.badPadding, "frame \(counter) has non-zero padding")
        }
        packetBytes.moveWriterIndex(to: packetLength)
        let packet: Packet
        do { packet = try Packet(decoding: packetBytes, limits: limits, leavingChatsEncoded: leavesChatsEncoded) } catch { throw SecureChannelError(error) }
        counter += 1
        return packet
    }
}

/// AES-256-GCM over one frame, `header 5 | IV 12 | tag 16 | ciphertext`: the header is the
/// additional data. On Linux through libcrypto in place, with a cipher context per thread
/// (`CMyIMAEAD`); elsewhere through swift-crypto.
enum FrameAEAD {
    private static let ivStart = FrameProtection.headerSize
    private static let tagStart = ivStart + FrameProtection.ivSize
    private static let bodyStart = tagStart + FrameProtection.tagSize

    /// Encrypts the frame's plaintext (after the tag) in place and sets its tag; header and IV
    /// are set already. False when the AEAD fails.
    static func seal(_ frame: UnsafeMutableRawBufferPointer, key: SymmetricKey) -> Bool {
        let length = frame.count - bodyStart
        #if canImport(CMyIMAEAD) && os(Linux)
        return key.withUnsafeBytes { key in
            guard key.count == 32 else { return false }  // AES-256 only.
            let base = frame.baseAddress!.assumingMemoryBound(to: UInt8.self)
            return myim_aes256gcm_seal(
                key.baseAddress!.assumingMemoryBound(to: UInt8.self), base + ivStart, base, FrameProtection.headerSize,
                base + bodyStart, length, base + tagStart) == 1
        }
        #else
        let readOnly = UnsafeRawBufferPointer(frame)
        guard let sealed = try? AES.GCM.seal(
            UnsafeRawBufferPointer(rebasing: readOnly[bodyStart...]), using: key,
            nonce: AES.GCM.Nonce(data: UnsafeRawBufferPointer(rebasing: readOnly[ivStart..<tagStart])),
            authenticating: UnsafeRawBufferPointer(rebasing: readOnly[..<ivStart]))
        else { return false }
        UnsafeMutableRawBufferPointer(rebasing: frame[tagStart..<bodyStart]).copyBytes(from: sealed.tag)
        UnsafeMutableRawBufferPointer(rebasing: frame[bodyStart...]).copyBytes(from: sealed.ciphertext)
        return true
        #endif
    }

    /// Decrypts a whole frame into `plaintext` (at least the ciphertext's length). False when
    /// the tag does not verify; `plaintext` is then not to be used.
    static func open(_ frame: UnsafeRawBufferPointer, key: SymmetricKey, into plaintext: UnsafeMutableRawBufferPointer) -> Bool {
        let length = frame.count - bodyStart
        #if canImport(CMyIMAEAD) && os(Linux)
        UnsafeMutableRawBufferPointer(rebasing: plaintext[..<length]).copyMemory(from: UnsafeRawBufferPointer(rebasing: frame[bodyStart...]))
        return key.withUnsafeBytes { key in
            guard key.count == 32 else { return false }  // AES-256 only.
            let base = frame.baseAddress!.assumingMemoryBound(to: UInt8.self)
            return myim_aes256gcm_open(
                key.baseAddress!.assumingMemoryBound(to: UInt8.self), base + ivStart, base, FrameProtection.headerSize,
                plaintext.baseAddress!.assumingMemoryBound(to: UInt8.self), length, base + tagStart) == 1
        }
        #else
        guard let box = try? AES.GCM.SealedBox(
            nonce: AES.GCM.Nonce(data: UnsafeRawBufferPointer(rebasing: frame[ivStart..<tagStart])),
            ciphertext: UnsafeRawBufferPointer(rebasing: frame[bodyStart...]),
            tag: UnsafeRawBufferPointer(rebasing: frame[tagStart..<bodyStart])),
            let opened = try? AES.GCM.open(box, using: key, authenticating: UnsafeRawBufferPointer(rebasing: frame[..<ivStart]))
        else { return false }
        plaintext.copyBytes(from: opened)
        return true
        #endif
    }
}
