#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The server processes a bench run started, killed if the run is interrupted (SIGINT, SIGTERM:
/// Ctrl-C, or `timeout` in bench/compare.sh) instead of being left running.
///
/// The signal handler may only do async-signal-safe work, so the pids live in a fixed table
/// of plain integers that it reads without a lock; it sends each SIGKILL and exits.
public enum BenchChildren {
    static let capacity = 64
    nonisolated(unsafe) static let slots: UnsafeMutablePointer<Int32> = {
        let slots = UnsafeMutablePointer<Int32>.allocate(capacity: capacity)
        slots.initialize(repeating: 0, count: capacity)
        return slots
    }()
    nonisolated(unsafe) private static var installed = false
    private static let lock = BenchChildrenLock()

    /// Remembers `pid` (and installs the handlers the first time).
    public static func adopt(_ pid: Int32) {
        lock.withLock {
            if !installed {
                installed = true
                for signalNumber in [SIGINT, SIGTERM] {
                    signal(signalNumber) { caught in
                        for index in 0..<BenchChildren.capacity where BenchChildren.slots[index] > 0 {
                            kill(BenchChildren.slots[index], SIGKILL)
                        }
                        _exit(128 + caught)
                    }
                }
            }
            for index in 0..<capacity where slots[index] == 0 {
                slots[index] = pid
                return
            }
        }
    }

    /// Forgets `pid` (it was stopped).
    public static func release(_ pid: Int32) {
        lock.withLock {
            for index in 0..<capacity where slots[index] == pid { slots[index] = 0 }
        }
    }

    /// The pids remembered now.
    public static var adopted: [Int32] {
        lock.withLock { (0..<capacity).map { slots[$0] }.filter { $0 > 0 } }
    }
}

/// A pthread mutex (the table is also read by the signal handler, without it).
private final class BenchChildrenLock: @unchecked Sendable {
    private var mutex = pthread_mutex_t()

    init() { pthread_mutex_init(&mutex, nil) }

    func withLock<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return body()
    }
}
