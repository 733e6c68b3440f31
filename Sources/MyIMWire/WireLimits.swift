/// Hard limits on what a peer may make us hold, checked before anything is allocated.
///
/// The defaults admit every legitimate MyIM message (a 1,000-member list, an 8 MiB image)
/// while bounding the memory one frame can cost to a small multiple of its size.
///
/// Each is kept in 32 bits (a limit of 4 GiB or more is taken as 4 GiB − 1): every frame opener
/// holds a copy, one per connection.
public struct WireLimits: Sendable, Hashable {
    private var frame: UInt32 = 16 * 1024 * 1024
    private var handshakePacket: UInt32 = 16 * 1024
    private var depth: UInt32 = 16
    private var containerCount: UInt32 = 65_536
    private var valueCount: UInt32 = 262_144
    private var keyLength: UInt32 = 64
    private var stringLength: UInt32 = 1024 * 1024
    private var bytesLength: UInt32 = 8 * 1024 * 1024

    /// Largest layer-1 ciphertext, and largest layer-2 packet (header + body), in bytes.
    public var maxFrameSize: Int {
        get { Int(frame) }
        set { frame = UInt32(clamping: newValue) }
    }
    /// Largest packet accepted before the channel is encrypted (the handshake is small).
    public var maxHandshakePacketSize: Int {
        get { Int(handshakePacket) }
        set { handshakePacket = UInt32(clamping: newValue) }
    }
    /// Deepest nesting of dicts and lists; the body dict itself is depth 1.
    public var maxDepth: Int {
        get { Int(depth) }
        set { depth = UInt32(clamping: newValue) }
    }
    /// Most entries in one dict or elements in one list.
    public var maxContainerCount: Int {
        get { Int(containerCount) }
        set { containerCount = UInt32(clamping: newValue) }
    }
    /// Most values (of any type, at any depth) in one body.
    public var maxValueCount: Int {
        get { Int(valueCount) }
        set { valueCount = UInt32(clamping: newValue) }
    }
    /// Longest key, in bytes of UTF-8.
    public var maxKeyLength: Int {
        get { Int(keyLength) }
        set { keyLength = UInt32(clamping: newValue) }
    }
    /// Longest string value, in bytes of UTF-8.
    public var maxStringLength: Int {
        get { Int(stringLength) }
        set { stringLength = UInt32(clamping: newValue) }
    }
    /// Longest bytes value.
    public var maxBytesLength: Int {
        get { Int(bytesLength) }
        set { bytesLength = UInt32(clamping: newValue) }
    }

    public init() {}

    public static let `default` = WireLimits()
}
