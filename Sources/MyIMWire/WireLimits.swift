/// Hard limits on what a peer may make us hold, checked before anything is allocated.
///
/// The defaults admit every legitimate MyIM message (a 1,000-member list, an 8 MiB image)
/// while bounding the memory one frame can cost to a small multiple of its size.
public struct WireLimits: Sendable, Hashable {
    /// Largest layer-1 ciphertext, and largest layer-2 packet (header + body), in bytes.
    public var maxFrameSize: Int = 16 * 1024 * 1024
    /// Largest packet accepted before the channel is encrypted (the handshake is small).
    public var maxHandshakePacketSize: Int = 16 * 1024
    /// Deepest nesting of dicts and lists; the body dict itself is depth 1.
    public var maxDepth: Int = 16
    /// Most entries in one dict or elements in one list.
    public var maxContainerCount: Int = 65_536
    /// Most values (of any type, at any depth) in one body.
    public var maxValueCount: Int = 262_144
    /// Longest key, in bytes of UTF-8.
    public var maxKeyLength: Int = 64
    /// Longest string value, in bytes of UTF-8.
    public var maxStringLength: Int = 1024 * 1024
    /// Longest bytes value.
    public var maxBytesLength: Int = 8 * 1024 * 1024

    public init() {}

    public static let `default` = WireLimits()
}
