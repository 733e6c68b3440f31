#if canImport(CMyIMAEAD) && os(Linux)
import CMyIMAEAD
#endif
import MyIMWire
import NIOCore

/// What a channel state machine asks its owner to do, in order.
public enum SecureChannelAction: Sendable {
    /// Send these bytes to the peer.
    case write(ByteBuffer)
    /// The handshake is complete; packets may now be sealed and will be delivered.
    case established(SecureChannelSession)
    /// A packet arrived over the established channel.
    case deliver(Packet)
    /// Close the connection (after performing the writes before this action).
    case close(SecureChannelError)
}

/// What both sides know once the channel is up.
public struct SecureChannelSession: Sendable, Hashable {
    /// The server's identity key.
    public let serverKey: ServerPublicKey
    /// SHA-256 of ClientHello and ServerHello: unique to this connection, usable as a channel binding.
    public let transcriptHash: [UInt8]
    /// On the client: the key was accepted on first use and should now be recorded.
    public let serverKeyFirstSeen: Bool
}

/// How a client decides whether to trust the key a server presents.
public enum ServerKeyPolicy: Sendable, Hashable {
    /// Only this key is accepted.
    case pinned(KeyFingerprint)
    /// The key recorded for this server earlier, if any, must match; with none recorded, any
    /// key is accepted and reported as first seen so that the owner records it.
    case trustOnFirstUse(recorded: KeyFingerprint?)
}

extension ByteBuffer {
    /// The message type of a plain packet at the reader index, if 4 bytes are there.
    func peekPacketType() -> UInt32? {
        getInteger(at: readerIndex, as: UInt32.self)
    }
}

/// `count` bytes from the system's CSPRNG: on Linux in one `getrandom` call
/// (`myim_random_bytes`), elsewhere from `SystemRandomNumberGenerator` (`arc4random` on Apple
/// platforms). The standard library's generator makes one `getrandom` call per eight bytes on
/// Linux, four for a handshake's 32-byte random.
public func randomBytes(_ count: Int) -> [UInt8] {
    guard count > 0 else { return [] }
    #if canImport(CMyIMAEAD) && os(Linux)
    let drawn = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        initialized = myim_random_bytes(buffer.baseAddress, count) == 1 ? count : 0
    }
    if drawn.count == count { return drawn }
    #endif
    var generator = SystemRandomNumberGenerator()
    var bytes: [UInt8] = []
    bytes.reserveCapacity(count + 7)
    while bytes.count < count {
        withUnsafeBytes(of: generator.next()) { bytes.append(contentsOf: $0) }
    }
    bytes.removeLast(bytes.count - count)
    return bytes
}
