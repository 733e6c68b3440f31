/// Hard limits on what a peer may make us hold, checked before anything is allocated.
///
/// The defaults admit every legitimate MyIM message (a 1,000-member list, an 8 MiB image)
/// while bounding the memory one frame can cost to a small multiple of its size.
///
/// Each is kept in 32 bits (``Limit32``): every frame opener holds a copy, one per connection.
public struct WireLimits: Sendable, Hashable {
    /// Largest layer-1 ciphertext, and largest layer-2 packet (header + body), in bytes.
    @Limit32 public var maxFrameSize = 16 * 1024 * 1024
    /// Largest packet accepted before the channel is encrypted (the handshake is small).
    @Limit32 public var maxHandshakePacketSize = 16 * 1024
    /// Deepest nesting of dicts and lists; the body dict itself is depth 1.
    @Limit32 public var maxDepth = 16
    /// Most entries in one dict or elements in one list.
    @Limit32 public var maxContainerCount = 65_536
    /// Most values (of any type, at any depth) in one body.
    @Limit32 public var maxValueCount = 262_144
    /// Longest key, in bytes of UTF-8.
    @Limit32 public var maxKeyLength = 64
    /// Longest string value, in bytes of UTF-8.
    @Limit32 public var maxStringLength = 1024 * 1024
    /// Longest bytes value.
    @Limit32 public var maxBytesLength = 8 * 1024 * 1024

    public init() {}

    public static let `default` = WireLimits()

    /// What a lookup in bytes already checked holds to (``WireParser/topLevelInt(_:in:)``):
    /// only the format's own bounds, whatever limits the bytes were checked under.
    static let lookup: WireLimits = {
        var limits = WireLimits()
        limits.maxKeyLength = Int(UInt8.max)
        limits.maxStringLength = Int(UInt32.max)
        return limits
    }()
}

/// A limit stored in 32 bits and used as an `Int`: a limit of 4 GiB or more is kept as 4 GiB − 1,
/// a negative one as 0.
@propertyWrapper
public struct Limit32: Sendable, Hashable {
    private var stored: UInt32

    public init(wrappedValue: Int) {
        stored = UInt32(clamping: wrappedValue)
    }

    public var wrappedValue: Int {
        get { Int(stored) }
        set { stored = UInt32(clamping: newValue) }
    }
}
