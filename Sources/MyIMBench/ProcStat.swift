#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The CPU time and resident memory of one process, from Linux's `/proc/<pid>/stat`.
///
/// The line is `pid (comm) state ppid …`; `comm` may hold spaces and parentheses, so the fields
/// are counted from the last `)`. utime and stime are fields 14 and 15 (clock ticks), rss is
/// field 24 (pages).
public struct ProcStat: Sendable, Equatable {
    /// User CPU time, in clock ticks.
    public var utimeTicks: UInt64
    /// System CPU time, in clock ticks.
    public var stimeTicks: UInt64
    /// Resident set size, in pages.
    public var rssPages: UInt64

    public init(utimeTicks: UInt64, stimeTicks: UInt64, rssPages: UInt64) {
        self.utimeTicks = utimeTicks
        self.stimeTicks = stimeTicks
        self.rssPages = rssPages
    }

    /// Parses one `/proc/<pid>/stat` line; nil when it is not one.
    public static func parse(_ line: String) -> ProcStat? {
        guard let close = line.lastIndex(of: ")") else { return nil }
        // After "pid (comm)", the first field is field 3 (state): field n is at index n − 3.
        let fields = line[line.index(after: close)...].split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard fields.count > 21, fields[0].count == 1,
              let utime = UInt64(fields[11]), let stime = UInt64(fields[12]), let rss = Int64(fields[21])
        else { return nil }
        return ProcStat(utimeTicks: utime, stimeTicks: stime, rssPages: UInt64(Swift.max(0, rss)))
    }

    /// The stat of process `pid` (this process when nil); nil when it cannot be read (no /proc,
    /// or the process is gone).
    public static func read(pid: Int32? = nil) -> ProcStat? {
        let path = pid.map { "/proc/\($0)/stat" } ?? "/proc/self/stat"
        guard let line = readSmallFile(path) else { return nil }
        return parse(line)
    }

    /// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 when unknown).
    public static let ticksPerSecond: Double = {
        #if canImport(Glibc)
        let ticks = sysconf(Int32(_SC_CLK_TCK))
        return ticks > 0 ? Double(ticks) : 100
        #else
        return 100
        #endif
    }()

    /// The page size in bytes.
    public static let pageSize: UInt64 = {
        let size = sysconf(Int32(_SC_PAGESIZE))
        return size > 0 ? UInt64(size) : 4096
    }()

    /// utime + stime, in seconds.
    public var cpuSeconds: Double { Double(utimeTicks + stimeTicks) / Self.ticksPerSecond }

    /// The resident set size in bytes.
    public var rssBytes: UInt64 { rssPages * Self.pageSize }
}

/// A file of /proc read whole (at most 64 KiB) with plain syscalls.
func readSmallFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while bytes.count < 65536 {
        let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count < 0, errno == EINTR { continue }
        guard count > 0 else { break }
        bytes.append(contentsOf: chunk[0..<count])
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// CPU and wall time between two moments, for one process.
public struct CPUSpan: Sendable {
    public var cpuSeconds: Double
    public var wallSeconds: Double

    public init(cpuSeconds: Double, wallSeconds: Double) {
        self.cpuSeconds = cpuSeconds
        self.wallSeconds = wallSeconds
    }

    /// CPU seconds per wall second: 1.0 is one core busy all the time.
    public var cores: Double { wallSeconds > 0 ? cpuSeconds / wallSeconds : 0 }

    /// CPU microseconds per item (`count` of them).
    public func microseconds(per count: Int) -> Double { count > 0 ? cpuSeconds / Double(count) * 1e6 : 0 }
}

/// Watches one process's CPU time from a starting moment.
public struct CPUMeter: Sendable {
    public let pid: Int32?
    private let startCPU: Double?
    private let startWall: UInt64

    /// Starts measuring process `pid` (this process when nil).
    public init(pid: Int32? = nil) {
        self.pid = pid
        startCPU = ProcStat.read(pid: pid)?.cpuSeconds
        startWall = BenchClock.now()
    }

    /// CPU and wall time since ``init(pid:)``; nil when /proc could not be read.
    public func span() -> CPUSpan? {
        guard let startCPU, let now = ProcStat.read(pid: pid)?.cpuSeconds else { return nil }
        return CPUSpan(cpuSeconds: now - startCPU, wallSeconds: Double(BenchClock.now() &- startWall) / 1e9)
    }
}

/// The kernel's memory that sockets cost, machine-wide: TCP sockets in use and the pages their
/// buffers hold (`TCP: inuse N … mem P` in `/proc/net/sockstat`), and the slab (`Slab: K kB` in
/// `/proc/meminfo`), where each socket's own kernel structures live. Only differences between two
/// readings mean anything, and they count both ends of a loopback connection.
public struct KernelMemory: Sendable, Equatable {
    public var tcpSocketsInUse: UInt64
    public var tcpBufferBytes: UInt64
    public var slabBytes: UInt64

    public init(tcpSocketsInUse: UInt64, tcpBufferBytes: UInt64, slabBytes: UInt64) {
        self.tcpSocketsInUse = tcpSocketsInUse
        self.tcpBufferBytes = tcpBufferBytes
        self.slabBytes = slabBytes
    }

    /// Parses the two files' texts; nil when either lacks its line.
    public static func parse(sockstat: String, meminfo: String, pageSize: UInt64 = ProcStat.pageSize) -> KernelMemory? {
        var inUse: UInt64?
        var pages: UInt64?
        for line in sockstat.split(separator: "\n") where line.hasPrefix("TCP:") {
            let words = line.split(separator: " ")
            for index in words.indices.dropLast() {
                if words[index] == "inuse" { inUse = UInt64(words[index + 1]) }
                if words[index] == "mem" { pages = UInt64(words[index + 1]) }
            }
        }
        var slab: UInt64?
        for line in meminfo.split(separator: "\n") where line.hasPrefix("Slab:") {
            let words = line.split(separator: " ")
            if words.count >= 3, words[2] == "kB", let kilobytes = UInt64(words[1]) { slab = kilobytes * 1024 }
        }
        guard let inUse, let pages, let slab else { return nil }
        return KernelMemory(tcpSocketsInUse: inUse, tcpBufferBytes: pages * pageSize, slabBytes: slab)
    }

    /// The current reading; nil where /proc cannot be read.
    public static func read() -> KernelMemory? {
        guard let sockstat = readSmallFile("/proc/net/sockstat"), let meminfo = readSmallFile("/proc/meminfo") else { return nil }
        return parse(sockstat: sockstat, meminfo: meminfo)
    }
}
