import Foundation
import MyIMClient
import MyIMRedis
import MyIMSecureChannel
import MyIMTestSupport
import NIOCore
import NIOPosix
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// A whole cluster as separate `myim` processes (login center, center, two endpoints) on free
// ports of 127.0.0.1, with a real redis-server, for the tests that kill processes for real.

/// A failure of the process harness itself, saying what to do about it.
struct ProcessTestError: Error, CustomStringConvertible {
    let description: String

    init(_ description: String) {
        self.description = description
    }
}

/// The `myim` executable built beside this test bundle.
enum MyIMExecutable {
    /// The first executable `myim` in the test bundle's build directory (found from the running
    /// executable, the bundle, or this file's place in the repository).
    ///
    /// - Throws: ``ProcessTestError`` naming the directories looked in and saying to run
    ///   `swift build` first: a missing binary is a failure, not a skip.
    static func locate(filePath: String = #filePath) throws -> URL {
        var directories: [URL] = []
        if let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            directories.append(URL(fileURLWithPath: executable).deletingLastPathComponent())
        }
        directories.append(URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent())
        directories.append(Bundle.main.bundleURL)
        directories.append(Bundle.main.bundleURL.deletingLastPathComponent())
        for bundle in Bundle.allBundles where bundle.bundleURL.pathExtension == "xctest" {
            directories.append(bundle.bundleURL.deletingLastPathComponent())
        }
        // Tests/MyIMMessagingTests/<this file> → the repository root.
        let root = URL(fileURLWithPath: filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        directories.append(root.appendingPathComponent(".build/debug"))
        for directory in directories {
            let candidate = directory.appendingPathComponent("myim").standardizedFileURL
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate.path, isDirectory: &isDirectory), !isDirectory.boolValue,
               FileManager.default.isExecutableFile(atPath: candidate.path)
            {
                return candidate
            }
        }
        let looked = Set(directories.map(\.standardizedFileURL.path)).sorted().joined(separator: ", ")
        throw ProcessTestError("""
            the process tests run the real `myim` binary, and there is none next to the test bundle (looked in \(looked)); \
            run `swift build` first (`make test` does), then run the tests again
            """)
    }
}

/// `count` distinct TCP ports of 127.0.0.1 that were free a moment ago (all bound at once, then closed).
func processTestFreePorts(_ count: Int) async throws -> [Int] {
    var channels: [any Channel] = []
    for _ in 0..<count {
        channels.append(try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get())
    }
    let ports = channels.compactMap { $0.localAddress?.port }
    for channel in channels { try await channel.close() }
    guard ports.count == count else { throw ProcessTestError("could not read the local port of a bound socket") }
    return ports
}

/// `kill(2)`, named apart from the harness's own `kill` methods.
func processTestSignal(_ pid: Int32, _ signal: Int32) {
    _ = kill(pid, signal)
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
func processTestAccepts(port: Int) async -> Bool {
    guard let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connectTimeout(.milliseconds(500)).connect(host: "127.0.0.1", port: port).get()
    else { return false }
    try? await channel.close()
    return true
}

/// One child process with its stdout and stderr in one log file; stopped by PID only.
final class ChildProcess: Sendable {
    let name: String
    let logPath: String
    let pid: Int32
    private let process: Process
    private let log: FileHandle

    /// Starts `executable` with `arguments`; `input`, if any, is written to its standard input,
    /// which is then closed.
    init(name: String, executable: URL, arguments: [String], logPath: String, environment: [String: String] = [:], input: String? = nil) throws {
        guard FileManager.default.createFile(atPath: logPath, contents: nil), let log = FileHandle(forWritingAtPath: logPath) else {
            throw ProcessTestError("cannot create the log file \(logPath)")
        }
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        var merged = ProcessInfo.processInfo.environment
        merged.merge(environment) { _, new in new }
        process.environment = merged
        process.standardOutput = log
        process.standardError = log
        let stdin = Pipe()
        process.standardInput = input == nil ? FileHandle.nullDevice : stdin
        do {
            try process.run()
        } catch {
            try? log.close()
            throw ProcessTestError("cannot start \(name) (\(executable.path)): \(error)")
        }
        if let input {
            stdin.fileHandleForWriting.write(Data(input.utf8))
        }
        try? stdin.fileHandleForWriting.close()
        self.name = name
        self.logPath = logPath
        self.pid = process.processIdentifier
        self.process = process
        self.log = log
    }

    var isRunning: Bool { process.isRunning }

    /// The exit status once it has exited (a signal's number when killed by one).
    var exitDescription: String {
        if process.isRunning { return "running" }
        switch process.terminationReason {
        case .exit: return "exited with status \(process.terminationStatus)"
        case .uncaughtSignal: return "killed by signal \(process.terminationStatus)"
        @unknown default: return "ended (status \(process.terminationStatus))"
        }
    }

    var terminationStatus: Int32 { process.terminationStatus }

    /// What it wrote so far.
    var output: String {
        (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
    }

    /// Sends `signal` to this process (only while it runs, so a reused PID is never hit).
    func signal(_ signal: Int32) {
        if process.isRunning { processTestSignal(pid, signal) }
    }

    /// Waits up to `timeout` for it to exit; whether it did.
    @discardableResult
    func waitForExit(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning, ContinuousClock.now < deadline {
            if Task.isCancelled {
                usleep(10_000)  // Cleanup after a time limit still waits, without spinning.
            } else {
                try? await Task.sleep(for: .milliseconds(10))
            }
        }
        return !process.isRunning
    }

    /// SIGKILL, and wait (bounded) until it is gone.
    func killNow() async throws {
        signal(SIGKILL)
        guard await waitForExit(timeout: .seconds(10)) else {
            throw ProcessTestError("\(name) (pid \(pid)) did not die within 10 s of SIGKILL")
        }
    }

    /// SIGTERM; SIGKILL after 5 s if it is still there; then closes the log.
    func stop() async {
        signal(SIGTERM)
        signal(SIGCONT)  // A process stopped by a test would not act on SIGTERM.
        if !(await waitForExit(timeout: .seconds(5))) {
            signal(SIGKILL)
            await waitForExit(timeout: .seconds(5))
        }
        try? log.close()
    }
}

/// What a CLI command printed and how it ended.
struct CLIResult: Sendable {
    var status: Int32
    var output: String
    var errors: String

    /// Standard output's lines that are JSON objects.
    var jsonLines: [[String: Any]] {
        output.split(whereSeparator: \.isNewline).compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
        }
    }
}

/// A cluster of real `myim` processes from a topology in a temporary directory:
/// `login` (login center), `alpha-center`, `alpha-ep1` and `alpha-ep2`, plain links, a real
/// redis-server for presence, every port free, every log in the directory.
final class ProcessCluster: Sendable {
    static let domain = "alpha.example"
    static let password = "correct horse battery staple"

    /// A server role of the topology, by node name.
    enum Role: String, Sendable, CaseIterable {
        case loginCenter = "login"
        case center = "alpha-center"
        case ep1 = "alpha-ep1"
        case ep2 = "alpha-ep2"
    }

    private struct State {
        var current: [Role: ChildProcess] = [:]
        /// Every process started, in order (for logs and cleanup).
        var started: [ChildProcess] = []
        var runs: [Role: Int] = [:]
        var cliRuns = 0
        /// Set by ``stop()``: nothing starts after it.
        var stopped = false
    }

    let root: URL
    let binary: URL
    let redis: RedisTestServer
    let topologyPath: String
    let ports: [Role: Int]
    let directoryPort: Int
    /// Identity key fingerprints by node name, as `myim keys init` printed them.
    let fingerprints: [String: String]
    private let state = Mutex(State())

    private init(
        root: URL, binary: URL, redis: RedisTestServer, topologyPath: String, ports: [Role: Int], directoryPort: Int,
        fingerprints: [String: String]
    ) {
        self.root = root
        self.binary = binary
        self.redis = redis
        self.topologyPath = topologyPath
        self.ports = ports
        self.directoryPort = directoryPort
        self.fingerprints = fingerprints
    }

    /// Starts a cluster, runs `body`, and stops every process it started, whatever happens; when
    /// `body` throws, the processes' logs are printed first.
    static func run(_ body: (ProcessCluster) async throws -> Void) async throws {
        let cluster = try await start()
        do {
            try await body(cluster)
        } catch {
            cluster.printLogs(reason: "the test failed: \(error)")
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    /// Redis, `keys init`, then the login center, the center and both endpoints, each waited
    /// for (ports accepting, links up).
    static func start() async throws -> ProcessCluster {
        let binary = try MyIMExecutable.locate()
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("myim-processes-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let redis: RedisTestServer
        do {
            redis = try await RedisTestServer.start()
        } catch {
            try? FileManager.default.removeItem(at: root)
            throw ProcessTestError("cannot start redis-server (install it: make deps): \(error)")
        }
        var cluster: ProcessCluster?
        do {
            let free = try await processTestFreePorts(9)
            let ports: [Role: Int] = [.loginCenter: free[0], .center: free[1], .ep1: free[2], .ep2: free[3]]
            let topologyPath = root.appendingPathComponent("topology.yaml").path
            let topology = """
                cluster: process-test
                redis: redis://127.0.0.1:\(redis.port)/0
                links: plain
                paths:
                  data: data
                  keys: keys
                logLevel: info
                presence:
                  ttlSeconds: \(ProcessesTests.presenceTTL)
                  heartbeatSeconds: \(ProcessesTests.presenceTTL / 3)
                loginCenter:
                  name: login
                  listen: 127.0.0.1:\(free[0])
                  directory: 127.0.0.1:\(free[4])
                  identity: ed25519
                  metrics: 127.0.0.1:\(free[5])
                domains:
                  - name: \(domain)
                    center:
                      name: alpha-center
                      listen: 127.0.0.1:\(free[1])
                      identity: ed25519
                      metrics: 127.0.0.1:\(free[6])
                    endpoints:
                      - name: alpha-ep1
                        listen: 127.0.0.1:\(free[2])
                        priority: 10
                        metrics: 127.0.0.1:\(free[7])
                      - name: alpha-ep2
                        listen: 127.0.0.1:\(free[3])
                        priority: 20
                        metrics: 127.0.0.1:\(free[8])

                """
            try topology.write(toFile: topologyPath, atomically: true, encoding: .utf8)
            let keys = try await Self.runOnce(binary: binary, arguments: ["keys", "init", "--topology", topologyPath], in: root, name: "keys-init")
            guard keys.status == 0 else {
                throw ProcessTestError("myim keys init failed with \(keys.status): \(keys.output)\(keys.errors)")
            }
            var fingerprints: [String: String] = [:]
            for line in keys.output.split(whereSeparator: \.isNewline) where line.contains(" identity ") {
                let words = line.split(separator: " ")
                if let name = words.first, let fingerprint = words.first(where: { $0.hasPrefix("sha256:") }) {
                    fingerprints[String(name)] = String(fingerprint)
                }
            }
            guard Set(fingerprints.keys) == Set(Role.allCases.map(\.rawValue)) else {
                throw ProcessTestError("myim keys init did not print an identity key for every node: \(keys.output)")
            }
            let started = ProcessCluster(
                root: root, binary: binary, redis: redis, topologyPath: topologyPath, ports: ports, directoryPort: free[4],
                fingerprints: fingerprints)
            cluster = started
            try await started.start(.loginCenter)
            try await started.start(.center)
            try await started.waitForLog(of: .center, containing: "directory link up", count: 1, timeout: .seconds(20))
            try await started.start(.ep1)
            try await started.start(.ep2)
            try await started.waitForLinks(count: 1, timeout: .seconds(20))
            return started
        } catch {
            if let cluster {
                cluster.printLogs(reason: "the cluster did not start: \(error)")
                await cluster.stop()
            } else {
                redis.kill()
                try? FileManager.default.removeItem(at: root)
            }
            throw error
        }
    }

    // MARK: - Processes

    func arguments(for role: Role) -> [String] {
        switch role {
        case .loginCenter: ["login-center", "--topology", topologyPath]
        case .center: ["center", "--topology", topologyPath, "--node", role.rawValue]
        case .ep1, .ep2: ["endpoint", "--topology", topologyPath, "--node", role.rawValue]
        }
    }

    /// Starts `role` (again) and waits up to 20 s until its ports accept connections.
    func start(_ role: Role) async throws {
        let child: ChildProcess = try state.withLock { state in
            guard !state.stopped else { throw ProcessTestError("the cluster is stopped; \(role.rawValue) is not started again") }
            state.runs[role, default: 0] += 1
            let name = "\(role.rawValue)#\(state.runs[role]!)"
            let child = try ChildProcess(
                name: name, executable: binary, arguments: arguments(for: role),
                logPath: root.appendingPathComponent("\(role.rawValue)-\(state.runs[role]!).log").path)
            state.current[role] = child
            state.started.append(child)
            return child
        }
        var waitFor = [ports[role]!]
        if role == .loginCenter { waitFor.append(directoryPort) }
        let deadline = ContinuousClock.now + .seconds(20)
        for port in waitFor {
            while !(await processTestAccepts(port: port)) {
                guard child.isRunning else {
                    throw ProcessTestError("\(child.name) \(child.exitDescription) before listening on port \(port):\n\(child.output)")
                }
                guard ContinuousClock.now < deadline else {
                    throw ProcessTestError("\(child.name) did not accept connections on port \(port) within 20 s")
                }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    /// The running process of `role`.
    func process(_ role: Role) throws -> ChildProcess {
        guard let child = state.withLock({ $0.current[role] }) else { throw ProcessTestError("\(role.rawValue) was never started") }
        return child
    }

    /// SIGKILLs every role in `roles` at once, then waits until all are gone.
    func kill(_ roles: Role...) async throws {
        let children = try roles.map { try process($0) }
        for child in children { child.signal(SIGKILL) }
        for child in children { try await child.killNow() }
    }

    /// Waits until the current process of `role` has written `text` at least `count` times.
    func waitForLog(of role: Role, containing text: String, count: Int, timeout: Duration) async throws {
        let child = try process(role)
        let deadline = ContinuousClock.now + timeout
        while occurrences(of: text, in: child.output) < count {
            guard child.isRunning else { throw ProcessTestError("\(child.name) \(child.exitDescription) while waiting for '\(text)'") }
            guard ContinuousClock.now < deadline else {
                throw ProcessTestError("\(child.name) did not log '\(text)' \(count) time(s) within \(timeout)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Polls `condition` every 20 ms until it holds; throws after `timeout`.
    func waitFor(_ what: String, timeout: Duration, _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while try await !condition() {
            guard ContinuousClock.now < deadline else { throw ProcessTestError("\(what): not within \(timeout)") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Waits until both endpoints have logged their link to the center up `count` times.
    func waitForLinks(count: Int, timeout: Duration) async throws {
        for endpoint in [Role.ep1, .ep2] {
            try await waitForLog(of: endpoint, containing: "] link up", count: count, timeout: timeout)
        }
    }

    private func occurrences(of text: String, in output: String) -> Int {
        output.components(separatedBy: text).count - 1
    }

    /// Runs a CLI command (`myim ARGUMENTS`) to its end (at most 30 s), with `MYIM_HOME=home`
    /// and `input` on standard input.
    func cli(_ arguments: [String], home: String, input: String? = nil) async throws -> CLIResult {
        let run = state.withLock { state in
            state.cliRuns += 1
            return state.cliRuns
        }
        let name = "cli-\(run)-\(arguments.first ?? "")"
        return try await Self.runOnce(
            binary: binary, arguments: arguments + ["--home", home], in: root, name: name, environment: ["MYIM_HOME": home], input: input)
    }

    /// Runs an operator command (`myim status`, `myim health`) against this cluster's topology.
    func tool(_ arguments: [String]) async throws -> CLIResult {
        let run = state.withLock { state in
            state.cliRuns += 1
            return state.cliRuns
        }
        return try await Self.runOnce(
            binary: binary, arguments: arguments + ["--topology", topologyPath], in: root, name: "tool-\(run)-\(arguments.first ?? "")")
    }

    private static func runOnce(
        binary: URL, arguments: [String], in root: URL, name: String, environment: [String: String] = [:], input: String? = nil
    ) async throws -> CLIResult {
        let outPath = root.appendingPathComponent("\(name).out").path
        let errPath = root.appendingPathComponent("\(name).err").path
        guard FileManager.default.createFile(atPath: outPath, contents: nil), FileManager.default.createFile(atPath: errPath, contents: nil),
              let out = FileHandle(forWritingAtPath: outPath), let err = FileHandle(forWritingAtPath: errPath)
        else { throw ProcessTestError("cannot create the output files of \(name)") }
        defer {
            try? out.close()
            try? err.close()
        }
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        var merged = ProcessInfo.processInfo.environment
        merged.merge(environment) { _, new in new }
        process.environment = merged
        process.standardOutput = out
        process.standardError = err
        let stdin = Pipe()
        process.standardInput = stdin
        try process.run()
        if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
        try? stdin.fileHandleForWriting.close()
        let deadline = ContinuousClock.now + .seconds(30)
        while process.isRunning, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        if process.isRunning {
            processTestSignal(process.processIdentifier, SIGKILL)
            let grace = ContinuousClock.now + .seconds(5)
            while process.isRunning, ContinuousClock.now < grace { try await Task.sleep(for: .milliseconds(10)) }
            throw ProcessTestError("myim \(arguments.joined(separator: " ")) did not end within 30 s")
        }
        return CLIResult(
            status: process.terminationStatus,
            output: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
            errors: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
    }

    /// Stops every process still running (newest first: SIGTERM, then SIGKILL after 5 s), kills
    /// redis-server and removes the directory.
    func stop() async {
        let started = state.withLock { state in
            state.stopped = true
            return state.started
        }
        for child in started.reversed() { await child.stop() }
        redis.kill()
        try? FileManager.default.removeItem(at: root)
    }

    /// Prints the end of every process's log, for a failure's diagnosis.
    func printLogs(reason: String) {
        let started = state.withLock { $0.started }
        var text = "=== process cluster in \(root.path): \(reason)\n"
        for child in started {
            let lines = child.output.split(separator: "\n", omittingEmptySubsequences: false)
            text += "--- \(child.name) (pid \(child.pid), \(child.exitDescription)), last \(min(lines.count, 60)) lines of \(child.logPath):\n"
            text += lines.suffix(60).joined(separator: "\n") + "\n"
        }
        FileHandle.standardError.write(Data(text.utf8))
    }

    // MARK: - Redis

    /// One Redis command on a fresh connection.
    func redisCommand(_ command: [String]) async throws -> RedisValue {
        let connection = try await redis.connect()
        do {
            let reply = try await connection.send(command)
            try? await connection.close()
            return reply
        } catch {
            try? await connection.close()
            throw error
        }
    }

    /// `myim:<domain>:presence:<name>`.
    static func presenceKey(_ name: String) -> String { "myim:\(domain):presence:\(name)" }

    /// `HGETALL myim:<domain>:presence:<name>` as a dictionary (empty: no key).
    func presence(of name: String) async throws -> [String: String] {
        let reply = try await redisCommand(["HGETALL", Self.presenceKey(name)])
        guard let items = reply.array else { throw ProcessTestError("HGETALL answered \(reply)") }
        var fields: [String: String] = [:]
        var index = 0
        while index + 1 < items.count {
            fields[items[index].string ?? "?"] = items[index + 1].string ?? "?"
            index += 2
        }
        return fields
    }

    /// Waits until `name`'s presence hash exists (at most `timeout`); returns it.
    func waitForPresence(of name: String, timeout: Duration) async throws -> [String: String] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let fields = try await presence(of: name)
            if !fields.isEmpty { return fields }
            guard ContinuousClock.now < deadline else {
                throw ProcessTestError("no presence for \(name) in Redis within \(timeout) (HGETALL \(Self.presenceKey(name)) is empty)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Waits until `name`'s presence hash is gone, until `deadline`; the moment it was seen gone,
    /// or nil if it never went.
    func waitForNoPresence(of name: String, until deadline: ContinuousClock.Instant) async throws -> ContinuousClock.Instant? {
        while true {
            let fields = try await presence(of: name)
            if fields.isEmpty { return .now }
            guard ContinuousClock.now < deadline else { return nil }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    // MARK: - Clients (the client library)

    /// A client directory (MYIM_HOME) for `name`, inside the cluster's directory.
    func home(_ name: String) -> ClientHome {
        ClientHome(path: root.appendingPathComponent("home-\(name)").path)
    }

    var loginServer: String { "127.0.0.1:\(ports[.loginCenter]!)" }

    var loginPin: KeyFingerprint {
        get throws {
            guard let text = fingerprints[Role.loginCenter.rawValue], let pin = KeyFingerprint(text) else {
                throw ProcessTestError("no login center fingerprint from keys init")
            }
            return pin
        }
    }

    /// Registers `name@alpha.example` with the library; returns its user id.
    @discardableResult
    func register(_ name: String) async throws -> Int64 {
        let connection = try await LoginConnection.open(server: loginServer, pin: try loginPin, home: home(name))
        do {
            let registered = try await connection.register(address: "\(name)@\(Self.domain)", password: Self.password)
            await connection.close()
            return registered.userID
        } catch {
            await connection.close()
            throw error
        }
    }

    /// Logs `name` in with the library; the session is saved in its home.
    func login(_ name: String) async throws -> SavedSession {
        let connection = try await LoginConnection.open(server: loginServer, pin: try loginPin, home: home(name))
        do {
            let session = try await connection.login(address: "\(name)@\(Self.domain)", password: Self.password)
            await connection.close()
            return session
        } catch {
            await connection.close()
            throw error
        }
    }

    /// Connects `session` to `endpoint` (its key pinned by the signed server list).
    func connect(_ session: SavedSession, name: String, to endpoint: Role, options: MessagingOptions = MessagingOptions()) async throws
        -> MessagingConnection
    {
        try await MessagingConnection.open(session: session, home: home(name), endpoint: "127.0.0.1:\(ports[endpoint]!)", options: options)
    }
}
