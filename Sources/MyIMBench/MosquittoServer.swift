import Foundation
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A mosquitto broker on 127.0.0.1 for the bench's reference runs: started on a free port from a
/// minimal configuration file in a temporary directory (anonymous, no persistence, TCP_NODELAY,
/// errors and warnings to its log), optionally pinned with `taskset`, stopped by its PID.
public final class MosquittoServer: Sendable {
    public let port: Int
    /// mosquitto's own PID (taskset execs it, so it is the PID that was started).
    public let pid: Int32
    /// Where the configuration and the log are.
    public let directory: URL
    /// The CPUs it is pinned to, when it is.
    public let cpus: String?
    /// Set once the child has been reaped.
    private let exited = Mutex(false)

    private init(port: Int, pid: Int32, directory: URL, cpus: String?) {
        self.port = port
        self.pid = pid
        self.directory = directory
        self.cpus = cpus
    }

    /// The mosquitto executable, if one is installed in the usual places.
    public static func locate() -> String? {
        ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto", "/usr/local/bin/mosquitto"]
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// `taskset`, if installed.
    public static func locateTaskset() -> String? {
        ["/usr/bin/taskset", "/bin/taskset"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// The version line mosquitto prints (`mosquitto version 2.0.11`), if it can be had.
    public static func version(executable: String) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["-h"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return nil }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self).split(separator: "\n").first { $0.contains("version") }.map(String.init)
    }

    /// Starts mosquitto on a free port of 127.0.0.1 and waits (at most `readyWithin`) until it
    /// accepts connections. `cpus` (a taskset list such as "0") pins it when taskset is there.
    public static func start(executable: String, cpus: String? = nil, readyWithin: Duration = .seconds(5)) async throws -> MosquittoServer {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("myim-bench-mosquitto-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let port = try await freeLocalPort()
        let configuration = """
            # myim bench pairs --reference mosquitto: a plain broker for the comparison.
            listener \(port) 127.0.0.1
            allow_anonymous true
            persistence false
            set_tcp_nodelay true
            max_connections -1
            log_dest stderr
            log_type error
            log_type warning

            """
        let configurationPath = directory.appendingPathComponent("mosquitto.conf").path
        let logPath = directory.appendingPathComponent("mosquitto.log").path
        try configuration.write(toFile: configurationPath, atomically: true, encoding: .utf8)
        var arguments = [executable, "-c", configurationPath]
        let taskset = cpus == nil ? nil : locateTaskset()
        if let taskset, let cpus { arguments = [taskset, "-c", cpus] + arguments }
        let pid = try spawn(arguments, logPath: logPath)
        BenchChildren.adopt(pid)
        let server = MosquittoServer(port: port, pid: pid, directory: directory, cpus: taskset == nil ? nil : cpus)
        let deadline = ContinuousClock.now + readyWithin
        while !(await accepts(port: port)) {
            guard server.isRunning, ContinuousClock.now < deadline else {
                let log = server.log
                await server.stop()
                throw MQTTClientError("mosquitto did not accept connections on 127.0.0.1:\(port) within \(readyWithin): \(log)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        return server
    }

    /// What mosquitto wrote to its log.
    public var log: String {
        (try? String(contentsOf: directory.appendingPathComponent("mosquitto.log"), encoding: .utf8)) ?? ""
    }

    /// Whether it still runs (reaping it, without blocking, once it has exited).
    public var isRunning: Bool {
        exited.withLock { exited in
            guard !exited else { return false }
            var status: Int32 = 0
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid || (result < 0 && errno == ECHILD) { exited = true }
            return !exited
        }
    }

    /// SIGTERM by PID, SIGKILL after 5 s if it is still there; then removes the directory.
    ///
    /// mosquitto takes signals only between two `epoll_wait`s (it blocks them during the wait),
    /// which an idle broker may not leave for a while: a connection to its port wakes it.
    public func stop() async {
        if isRunning { _ = kill(pid, SIGTERM) }
        let deadline = ContinuousClock.now + .seconds(5)
        while isRunning, ContinuousClock.now < deadline {
            _ = await accepts(port: port)
            for _ in 0..<20 where isRunning { try? await Task.sleep(for: .milliseconds(10)) }
        }
        if isRunning {
            _ = kill(pid, SIGKILL)
            let grace = ContinuousClock.now + .seconds(5)
            while isRunning, ContinuousClock.now < grace { try? await Task.sleep(for: .milliseconds(10)) }
        }
        BenchChildren.release(pid)
        try? FileManager.default.removeItem(at: directory)
    }
}

/// A TCP port of 127.0.0.1 that was free a moment ago (bound, read, closed).
public func freeLocalPort() async throws -> Int {
    let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
    let port = channel.localAddress?.port
    try await channel.close()
    guard let port else { throw MQTTClientError("could not read the port of a bound socket") }
    return port
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
func accepts(port: Int) async -> Bool {
    guard let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connectTimeout(.milliseconds(500)).connect(host: "127.0.0.1", port: port).get()
    else { return false }
    try? await channel.close()
    return true
}

/// Starts `arguments[0]` with `arguments` (`posix_spawn`, the environment inherited), standard
/// output and error appended to `logPath`, standard input from /dev/null; returns its PID.
///
/// Not Foundation's `Process`: a child inherits the signal mask of the thread that starts it,
/// and Swift's concurrency threads block the signals, so a child started from a task would
/// never see SIGTERM. Here the mask is emptied and the usual signals set back to default.
func spawn(_ arguments: [String], logPath: String) throws -> Int32 {
    var actions = posix_spawn_file_actions_t()
    var attributes = posix_spawnattr_t()
    guard posix_spawn_file_actions_init(&actions) == 0 else { throw MQTTClientError("posix_spawn_file_actions_init failed") }
    defer { posix_spawn_file_actions_destroy(&actions) }
    guard posix_spawnattr_init(&attributes) == 0 else { throw MQTTClientError("posix_spawnattr_init failed") }
    defer { posix_spawnattr_destroy(&attributes) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    var empty = sigset_t()
    sigemptyset(&empty)
    posix_spawnattr_setsigmask(&attributes, &empty)
    var defaults = sigset_t()
    sigemptyset(&defaults)
    for signal in [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGPIPE, SIGCHLD] { sigaddset(&defaults, signal) }
    posix_spawnattr_setsigdefault(&attributes, &defaults)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
    argv.append(nil)
    defer { for pointer in argv { free(pointer) } }
    var pid: pid_t = 0
    let result = posix_spawn(&pid, arguments[0], &actions, &attributes, argv, environ)
    guard result == 0 else { throw MQTTClientError("cannot start \(arguments[0]): \(String(cString: strerror(result)))") }
    return pid
}
