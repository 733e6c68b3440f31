import NIOCore

/// Receive buffers for client connections: a small one that the channel keeps, and larger ones
/// that it does not.
///
/// NIO keeps the buffer a channel reads into for the next read, grown to the largest size its
/// allocator ever asked for (``NIOPooledRecvBufferAllocator``). With `AdaptiveRecvByteBufferAllocator`
/// the token read at login leaves every idle connection holding a 512-byte buffer for its lifetime.
/// This allocator gives no size hint (`nextBufferSize()` is `nil`), so the pool keeps the first
/// buffer, `pooled` bytes (a power of two, as `ByteBuffer` rounds capacities up to one), room for
/// a ping's frame (65 bytes), which is all an idle client sends. A read that
/// fills the buffer doubles the size of the next (up to `maximum`), and such larger buffers are
/// allocated per read and freed with what was read; reads that use half their buffer or less halve the
/// size back toward `pooled`, where the kept buffer serves again.
///
/// Twelve bytes: a channel stores it inline (an existential holds up to 24), not in a box.
struct IdleFriendlyRecvAllocator: RecvByteBufferAllocator {
    /// The size of the buffer the channel keeps.
    let pooled: Int32
    /// The largest buffer a busy connection reads into.
    let maximum: Int32
    /// The size of the next buffer.
    private(set) var next: Int32

    init(pooled: Int = 128, maximum: Int = 64 * 1024) {
        precondition(pooled > 0 && maximum >= pooled && maximum <= Int(Int32.max))
        self.pooled = Int32(pooled)
        self.maximum = Int32(maximum)
        next = Int32(pooled)
    }

    func buffer(allocator: ByteBufferAllocator) -> ByteBuffer {
        allocator.buffer(capacity: Int(next))
    }

    /// Whether the next read needs a buffer other than the kept one: `true` while the size is
    /// above `pooled` (the pool then asks ``buffer(allocator:)`` for a new one and does not keep it).
    mutating func record(actualReadBytes: Int) -> Bool {
        if actualReadBytes >= Int(next) {
            next = next > maximum / 2 ? maximum : next * 2
        } else if actualReadBytes <= Int(next / 2) {
            next = max(next / 2, pooled)
        }
        return next > pooled
    }
}
