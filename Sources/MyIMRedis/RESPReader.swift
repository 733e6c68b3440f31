import CHiredis

/// A pure RESP2 reply parser: hiredis's `redisReader`, with limits, producing ``RedisValue``s.
///
/// Feed it bytes as they arrive, in pieces of any size, then call ``next()`` until it returns `nil`.
/// It knows no sockets; ``RedisReplyDecoder`` is the thin NIO shell around it.
///
/// What is bounded (``Limits``):
/// - **Bytes of one reply** (`maximumReplyBytes`): the bytes buffered since the last complete reply.
///   hiredis 0.14 has no such limit of its own — its `maxbuf` only decides when an idle read buffer
///   is freed — and it waits for a bulk string of any announced length, so this is what stops a
///   `$9999999999` from growing the buffer without end.
/// - **Elements of one array** (`maximumArrayElements`): checked before hiredis allocates the element
///   vector, so a short `*2000000000` cannot make it allocate gigabytes.
/// - **Nesting depth**: fixed by hiredis 0.14 at 7 levels of arrays (a protocol error beyond that).
///
/// Not thread-safe; use it from one event loop. The hiredis reader is freed by ``close()`` or `deinit`.
public final class RESPReader {
    /// Limits on a single reply; see the type's documentation.
    public struct Limits: Sendable, Hashable {
        /// Wire bytes of one reply, bulk strings included. Redis's own `proto-max-bulk-len` is 512 MiB.
        public var maximumReplyBytes: Int
        /// Elements of any one array in a reply.
        public var maximumArrayElements: Int

        public init(maximumReplyBytes: Int = 64 * 1024 * 1024, maximumArrayElements: Int = 1 << 20) {
            self.maximumReplyBytes = maximumReplyBytes
            self.maximumArrayElements = maximumArrayElements
        }
    }

    /// Reachable from hiredis's C callbacks through `redisReader.privdata` (copied into each read task).
    private struct CallbackContext {
        var maximumArrayElements: Int
        var arrayLimitExceeded: Bool
        var defaultCreateArray: (@convention(c) (UnsafePointer<redisReadTask>?, Int32) -> UnsafeMutableRawPointer?)?
        var defaultCreateNil: (@convention(c) (UnsafePointer<redisReadTask>?) -> UnsafeMutableRawPointer?)?
    }

    public let limits: Limits
    private var reader: UnsafeMutablePointer<redisReader>?
    private let functions: UnsafeMutablePointer<redisReplyObjectFunctions>
    private let context: UnsafeMutablePointer<CallbackContext>
    private var bytesInCurrentReply = 0
    private var failure: RedisError?

    public init(limits: Limits = Limits()) {
        self.limits = limits
        self.reader = redisReaderCreate()
        self.functions = .allocate(capacity: 1)
        self.context = .allocate(capacity: 1)
        guard let reader = self.reader, let defaults = reader.pointee.fn else {
            self.context.initialize(to: CallbackContext(maximumArrayElements: 0, arrayLimitExceeded: false))
            self.functions.initialize(to: redisReplyObjectFunctions())
            self.failure = RedisError(.protocolViolation, "hiredis could not create a reader (out of memory)")
            return
        }
        self.context.initialize(to: CallbackContext(
            maximumArrayElements: limits.maximumArrayElements,
            arrayLimitExceeded: false,
            defaultCreateArray: defaults.pointee.createArray,
            defaultCreateNil: defaults.pointee.createNil
        ))
        // Keep hiredis's own reply objects (so that freeReplyObject frees them), with two wrappers:
        // one refuses oversized arrays before they are allocated, one marks a null array (`*-1`)
        // so that it can be told from a null bulk string (both are REDIS_REPLY_NIL in hiredis).
        self.functions.initialize(to: defaults.pointee)
        self.functions.pointee.createArray = { task, elements in
            guard let task, let context = task.pointee.privdata?.assumingMemoryBound(to: CallbackContext.self) else {
                return nil
            }
            guard elements >= 0, Int(elements) <= context.pointee.maximumArrayElements else {
                context.pointee.arrayLimitExceeded = true
                return nil
            }
            return context.pointee.defaultCreateArray?(task, elements)
        }
        self.functions.pointee.createNil = { task in
            guard let task, let context = task.pointee.privdata?.assumingMemoryBound(to: CallbackContext.self) else {
                return nil
            }
            let object = context.pointee.defaultCreateNil?(task)
            if let object, task.pointee.type == REDIS_REPLY_ARRAY {
                object.assumingMemoryBound(to: redisReply.self).pointee.integer = RESPReader.nullArrayMarker
            }
            return object
        }
        reader.pointee.fn = self.functions
        reader.pointee.privdata = UnsafeMutableRawPointer(self.context)
    }

    deinit {
        self.close()
        self.context.deinitialize(count: 1)
        self.context.deallocate()
        self.functions.deinitialize(count: 1)
        self.functions.deallocate()
    }

    /// Frees the hiredis reader (and any half-parsed reply). Later calls fail. Idempotent.
    public func close() {
        if let reader = self.reader {
            redisReaderFree(reader)
            self.reader = nil
        }
        if self.failure == nil {
            self.failure = RedisError(.connectionClosed, "the RESP reader was closed")
        }
    }

    /// Appends bytes received from the server.
    public func feed(_ bytes: UnsafeRawBufferPointer) throws(RedisError) {
        if let failure { throw failure }
        guard let reader, bytes.count > 0 else { return }
        let status = redisReaderFeed(reader, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count)
        guard status == REDIS_OK else {
            throw self.fail(reader)
        }
        self.bytesInCurrentReply += bytes.count
    }

    /// Appends bytes received from the server.
    public func feed(_ bytes: [UInt8]) throws(RedisError) {
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(RedisError) in try self.feed(raw) }
        }
        try result.get()
    }

    /// The next complete reply, or `nil` when more bytes are needed.
    public func next() throws(RedisError) -> RedisValue? {
        if let failure { throw failure }
        guard let reader else { return nil }
        var object: UnsafeMutableRawPointer?
        guard redisReaderGetReply(reader, &object) == REDIS_OK, reader.pointee.err == 0 else {
            if let object { freeReplyObject(object) }
            throw self.fail(reader)
        }
        guard let object else {
            if self.bytesInCurrentReply > self.limits.maximumReplyBytes {
                throw self.fail(RedisError(.replyTooLarge,
                    "a reply exceeded \(self.limits.maximumReplyBytes) bytes (RESPReader.Limits.maximumReplyBytes)"))
            }
            return nil
        }
        defer { freeReplyObject(object) }
        // Right after a complete reply hiredis stands at the start of the next one.
        self.bytesInCurrentReply = reader.pointee.len - reader.pointee.pos
        do {
            return try Self.value(of: object.assumingMemoryBound(to: redisReply.self))
        } catch {
            throw self.fail(error)
        }
    }

    private static let nullArrayMarker: Int64 = 1

    private static func value(of reply: UnsafePointer<redisReply>) throws(RedisError) -> RedisValue {
        let reply = reply.pointee
        switch reply.type {
        case REDIS_REPLY_STATUS:
            return .simple(Self.text(reply))
        case REDIS_REPLY_ERROR:
            return .error(Self.text(reply))
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(reply.integer))
        case REDIS_REPLY_NIL:
            return reply.integer == Self.nullArrayMarker ? .array(nil) : .bulk(nil)
        case REDIS_REPLY_STRING:
            return .bulk(Array(UnsafeRawBufferPointer(start: reply.str, count: reply.len)))
        case REDIS_REPLY_ARRAY:
            var elements: [RedisValue] = []
            elements.reserveCapacity(reply.elements)
            for index in 0..<reply.elements {
                guard let element = reply.element?[index] else {
                    throw RedisError(.protocolViolation, "hiredis returned an array with a missing element")
                }
                elements.append(try Self.value(of: element))
            }
            return .array(elements)
        default:
            throw RedisError(.protocolViolation, "hiredis returned an unknown reply type \(reply.type)")
        }
    }

    private static func text(_ reply: redisReply) -> String {
        String(decoding: UnsafeRawBufferPointer(start: reply.str, count: reply.len), as: UTF8.self)
    }

    private func fail(_ reader: UnsafeMutablePointer<redisReader>) -> RedisError {
        let error: RedisError
        if self.context.pointee.arrayLimitExceeded {
            error = RedisError(.replyTooLarge,
                "a reply held an array of more than \(self.limits.maximumArrayElements) elements (RESPReader.Limits.maximumArrayElements)")
        } else {
            let message = withUnsafeBytes(of: reader.pointee.errstr) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            error = RedisError(.protocolViolation, "hiredis: \(message.isEmpty ? "error \(reader.pointee.err)" : message)")
        }
        return self.fail(error)
    }

    private func fail(_ error: RedisError) -> RedisError {
        self.failure = error
        if let reader = self.reader {
            redisReaderFree(reader)
            self.reader = nil
        }
        return error
    }
}

@available(*, unavailable)
extension RESPReader: Sendable {}
