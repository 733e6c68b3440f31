import CHiredis
import NIOCore

/// Encodes commands as RESP2 multi-bulk requests with hiredis's `redisFormatCommandArgv`.
///
/// Pure: it only appends bytes to a `ByteBuffer`. Arguments are binary-safe (zero bytes and
/// `\r\n` inside an argument are fine, since every argument is length-prefixed).
public enum RESPCommandEncoder {
    /// Appends one command to `buffer`.
    public static func encode(_ arguments: [[UInt8]], into buffer: inout ByteBuffer) throws(RedisError) {
        guard !arguments.isEmpty else {
            throw RedisError(.invalidCommand, "a command needs at least one argument (its name)")
        }
        // hiredis takes `const char **argv` + lengths; lay all arguments out in one array so that
        // every pointer stays valid for the duration of the call.
        var storage: [UInt8] = []
        storage.reserveCapacity(arguments.reduce(0) { $0 + $1.count })
        var lengths: [Int] = []
        lengths.reserveCapacity(arguments.count)
        for argument in arguments {
            storage.append(contentsOf: argument)
            lengths.append(argument.count)
        }
        let formatted: Int32 = storage.withUnsafeBufferPointer { bytes in
            let base = UnsafeRawPointer(bytes.baseAddress) ?? UnsafeRawPointer(bitPattern: 1)!
            var offset = 0
            var argv: [UnsafePointer<CChar>?] = []
            argv.reserveCapacity(lengths.count)
            for length in lengths {
                argv.append((base + offset).assumingMemoryBound(to: CChar.self))
                offset += length
            }
            var target: UnsafeMutablePointer<CChar>?
            let length = argv.withUnsafeMutableBufferPointer { argvPointer in
                lengths.withUnsafeBufferPointer { lengthPointer in
                    redisFormatCommandArgv(&target, Int32(lengths.count), argvPointer.baseAddress, lengthPointer.baseAddress)
                }
            }
            if let target {
                if length > 0 {
                    buffer.writeBytes(UnsafeRawBufferPointer(start: target, count: Int(length)))
                }
                redisFreeCommand(target)
            }
            return length
        }
        guard formatted > 0 else {
            throw RedisError(.invalidCommand, "hiredis could not format a command of \(arguments.count) arguments (out of memory?)")
        }
    }

    /// Appends one command given as text arguments (sent as their UTF-8 bytes).
    public static func encode(_ arguments: [String], into buffer: inout ByteBuffer) throws(RedisError) {
        try self.encode(arguments.map { Array($0.utf8) }, into: &buffer)
    }
}
