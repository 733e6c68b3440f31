import Crypto
import CryptoExtras
import Foundation
import MyIMSecureChannel
import MyIMWire
import NIOCore
import NIOPosix
import Synchronization

/// scrypt's cost parameters, stored with every hash so that they can be raised later
/// without invalidating existing passwords.
public struct ScryptParameters: Sendable, Hashable {
    public var n: Int
    public var r: Int
    public var p: Int

    public init(n: Int, r: Int, p: Int) {
        self.n = n
        self.r = r
        self.p = p
    }

    /// N = 2^14, r = 8, p = 1: about 30 ms and 16 MiB a hash on this project's machines.
    public static let standard = ScryptParameters(n: 1 << 14, r: 8, p: 1)
    /// For tests only: fast, and never accepted for stored passwords in production.
    public static let testing = ScryptParameters(n: 1 << 8, r: 8, p: 1)
}

/// A stored password: scrypt output, its salt and its parameters. Never the password.
public struct PasswordCredential: Sendable, Hashable {
    public var hash: [UInt8]
    public var salt: [UInt8]
    public var parameters: ScryptParameters
}

/// Hashes and checks passwords on a pool of threads of its own, never on an event loop.
///
/// At most `threads` hashes run at once and at most `maxQueued` wait; past that a request is
/// refused at once with ``ErrorCode/serverBusy``, so a login storm costs the storm, not the
/// connections that are already logged in.
public final class PasswordHasher: Sendable {
    public let parameters: ScryptParameters
    private let pool: NIOThreadPool
    private let gate: Gate

    public init(parameters: ScryptParameters = .standard, threads: Int = System.coreCount, maxQueued: Int = 256) {
        self.parameters = parameters
        pool = NIOThreadPool(numberOfThreads: max(1, threads))
        pool.start()
        gate = Gate(limit: max(1, threads) + max(0, maxQueued))
    }

    /// Stops the threads; pending work fails.
    public func shutdown() async throws {
        try await pool.shutdownGracefully()
    }

    /// A new credential for `password`, with a fresh 16-byte salt.
    public func makeCredential(password: String) async throws -> PasswordCredential {
        let salt = randomBytes(16)
        let parameters = parameters
        let hash = try await run { try Self.scrypt(password, salt: salt, parameters: parameters) }
        return PasswordCredential(hash: hash, salt: salt, parameters: parameters)
    }

    /// Whether `password` matches `credential`, compared in constant time.
    public func verify(password: String, against credential: PasswordCredential) async throws -> Bool {
        let computed = try await run { try Self.scrypt(password, salt: credential.salt, parameters: credential.parameters) }
        return Self.constantTimeEqual(computed, credential.hash)
    }

    /// Spends the same work as a real check, for accounts that do not exist: the reply's
    /// timing must not tell which user names are taken.
    public func burn(password: String) async throws {
        let salt = [UInt8](repeating: 0, count: 16)
        let parameters = parameters
        _ = try await run { try Self.scrypt(password, salt: salt, parameters: parameters) }
    }

    private func run(_ work: @escaping @Sendable () throws -> [UInt8]) async throws -> [UInt8] {
        guard gate.enter() else {
            throw LoginRefusal(.serverBusy, "the login center is busy; try again in a few seconds", retryAfter: 2000)
        }
        defer { gate.leave() }
        return try await pool.runIfActive(work)
    }

    static func scrypt(_ password: String, salt: [UInt8], parameters: ScryptParameters) throws -> [UInt8] {
        let key = try KDF.Scrypt.deriveKey(
            from: Array(password.utf8), salt: salt, outputByteCount: 32, rounds: parameters.n, blockSize: parameters.r,
            parallelism: parameters.p)
        return key.withUnsafeBytes { Array($0) }
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }

    /// A counter of admitted requests; admission fails past the limit.
    private final class Gate: Sendable {
        private let state = Mutex(0)
        private let limit: Int

        init(limit: Int) {
            self.limit = limit
        }

        func enter() -> Bool {
            state.withLock { count in
                guard count < limit else { return false }
                count += 1
                return true
            }
        }

        func leave() {
            state.withLock { $0 -= 1 }
        }
    }
}
