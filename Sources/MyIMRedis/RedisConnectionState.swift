import Synchronization

/// Why a connection ended, shared by ``RedisConnection`` and its ``RedisCommandHandler``.
///
/// Commands in flight when the connection ends fail with the first recorded cause (the decoder's
/// error, a timeout, `close()`, or the lost connection); commands sent afterwards fail with
/// ``RedisError/Kind/connectionLost`` (or ``RedisError/Kind/connectionClosed`` after `close()`)
/// carrying that cause in the message.
final class RedisConnectionState: Sendable {
    private let cause = Mutex<RedisError?>(nil)
    private let description: String

    init(description: String) {
        self.description = description
    }

    /// Records `error` unless a cause is recorded already; returns the recorded cause.
    @discardableResult
    func end(because error: RedisError) -> RedisError {
        self.cause.withLock { cause in
            if let cause { return cause }
            cause = error
            return error
        }
    }

    /// The cause, if the connection has ended.
    var endCause: RedisError? {
        self.cause.withLock { $0 }
    }

    /// The error for a command sent after the connection ended.
    var errorForLaterCommand: RedisError {
        guard let cause = self.endCause else {
            return RedisError(.connectionLost, "the connection to \(self.description) is closed")
        }
        if cause.kind == .connectionLost || cause.kind == .connectionClosed {
            return cause
        }
        return RedisError(.connectionLost, "the connection to \(self.description) was closed after: \(cause.kind): \(cause.message)")
    }
}
