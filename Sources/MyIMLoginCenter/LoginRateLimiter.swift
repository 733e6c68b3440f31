import Synchronization

/// Failed-login throttling per account and per source address.
///
/// The first few failures cost nothing; then each one makes the key wait a little (slow
/// down), then a lot (lock), doubling up to `maximumLock`. A failure older than `window`
/// is forgotten, and a successful login clears its account. Sources get four times the
/// allowance of accounts, since many users can share one address.
public final class LoginRateLimiter: Sendable {
    public struct Policy: Sendable, Hashable {
        /// Failures without any wait.
        public var freeFailures: Int = 3
        /// Failures with a short wait (1 s, 2 s, …) before the lock starts.
        public var slowFailures: Int = 2
        /// The first lock, in milliseconds; it doubles with each further failure.
        public var firstLock: Int64 = 60_000
        public var maximumLock: Int64 = 15 * 60_000
        /// Milliseconds after which a key's failures are forgotten.
        public var window: Int64 = 15 * 60_000
        /// Multiplies the allowances for source addresses.
        public var sourceFactor: Int = 4
        /// Most keys tracked at once; the stalest are dropped past it.
        public var capacity: Int = 100_000

        public init() {}
    }

    private struct Entry {
        var failures: Int
        var lastFailure: Int64
        var lockedUntil: Int64
    }

    public let policy: Policy
    private let entries = Mutex<[String: Entry]>([:])

    public init(policy: Policy = Policy()) {
        self.policy = policy
    }

    /// Milliseconds to wait before `account` may be tried from `source` again, or nil.
    public func retryAfter(account: String, source: String, now: Int64) -> Int64? {
        entries.withLock { entries in
            let waits = [Self.key(account: account), Self.key(source: source)].compactMap { key -> Int64? in
                guard let entry = entries[key], entry.lockedUntil > now else { return nil }
                return entry.lockedUntil - now
            }
            return waits.max()
        }
    }

    /// Counts a failure; returns how long the caller must now wait, if at all.
    @discardableResult
    public func recordFailure(account: String, source: String, now: Int64) -> Int64? {
        entries.withLock { entries in
            if entries.count >= policy.capacity { Self.evict(&entries, now: now, policy: policy) }
            let accountWait = Self.fail(&entries, key: Self.key(account: account), factor: 1, now: now, policy: policy)
            let sourceWait = Self.fail(&entries, key: Self.key(source: source), factor: policy.sourceFactor, now: now, policy: policy)
            return [accountWait, sourceWait].compactMap { $0 }.max()
        }
    }

    /// Forgets the account's failures after a successful login.
    public func recordSuccess(account: String) {
        _ = entries.withLock { $0.removeValue(forKey: Self.key(account: account)) }
    }

    private static func fail(_ entries: inout [String: Entry], key: String, factor: Int, now: Int64, policy: Policy) -> Int64? {
        var entry = entries[key] ?? Entry(failures: 0, lastFailure: now, lockedUntil: 0)
        if now - entry.lastFailure > policy.window { entry.failures = 0 }
        entry.failures += 1
        entry.lastFailure = now
        let free = policy.freeFailures * factor
        let slow = policy.slowFailures * factor
        let wait: Int64?
        if entry.failures <= free {
            wait = nil
        } else if entry.failures <= free + slow {
            wait = Int64(entry.failures - free) * 1000
        } else {
            let doublings = min(entry.failures - free - slow - 1, 20)
            wait = min(policy.firstLock << Int64(doublings), policy.maximumLock)
        }
        entry.lockedUntil = wait.map { now + $0 } ?? 0
        entries[key] = entry
        return wait
    }

    private static func evict(_ entries: inout [String: Entry], now: Int64, policy: Policy) {
        entries = entries.filter { now - $0.value.lastFailure <= policy.window || $0.value.lockedUntil > now }
        guard entries.count >= policy.capacity else { return }
        let stalest = entries.sorted { $0.value.lastFailure < $1.value.lastFailure }.prefix(entries.count - policy.capacity / 2)
        for (key, _) in stalest { entries[key] = nil }
    }

    private static func key(account: String) -> String { "a:" + account }
    private static func key(source: String) -> String { "s:" + source }
}
