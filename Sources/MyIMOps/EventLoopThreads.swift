import Foundation
import NIOCore

/// How many event loops the process runs.
public enum EventLoopThreads {
    /// NIO sizes its event loop group from the machine's cores, its cgroup quota and cpuset, but
    /// not from the process's CPU affinity: a role started with `taskset -c 0` would run two
    /// loops on one CPU and hand every cross-loop packet from one to the other. With fewer CPUs
    /// allowed than NIO counts, this runs one loop per allowed CPU. `NIO_SINGLETON_GROUP_LOOP_COUNT`,
    /// when set, still decides.
    public static func matchCPUAffinity() {
        guard getenv("NIO_SINGLETON_GROUP_LOOP_COUNT") == nil, let allowed = allowedCPUs(), allowed < System.coreCount else { return }
        NIOSingletons.groupLoopCountSuggestion = allowed
    }

    /// The number of CPUs this process may run on (the `Cpus_allowed` mask of
    /// `/proc/self/status`), or nil where unknown.
    public static func allowedCPUs() -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        return allowedCPUs(status: status)
    }

    /// The number of bits set in a status file's `Cpus_allowed:` mask (hex words, comma-separated).
    public static func allowedCPUs(status: String) -> Int? {
        for line in status.split(separator: "\n") where line.hasPrefix("Cpus_allowed:") {
            var count = 0
            for character in line.dropFirst("Cpus_allowed:".count) where character != "," && character != " " && character != "\t" {
                guard let nibble = character.hexDigitValue else { return nil }
                count += nibble.nonzeroBitCount
            }
            return count > 0 ? count : nil
        }
        return nil
    }
}
