import ArgumentParser
import Crypto
import Foundation
import MyIMBench
import MyIMLoginCenter
import MyIMSecureChannel
import MyIMTransport
import MyIMWire
import NIOCore
import Synchronization

/// `myim bench logins`: full logins/s against the login center, next to the bound that scrypt
/// sets on the same CPUs, and token reconnects/s against the endpoints.
///
/// The servers run as processes (``BenchServers``, the login center with an RSA-2048 identity as
/// in a default cluster); with `--server-cpus` they are pinned there, and the clients stay on the
/// CPUs this process was given. A full login is what a client does from nothing: TCP connect,
/// the secure-channel handshake, message 1, the scrypt check, the SQLite writes (device, audit),
/// the token and the signed server list in message 9.
///
/// The bound is scrypt hashes/s run as the login center runs them (one per CPU it may use), in a
/// child process pinned like the servers. The VM this runs on changes speed within minutes, so
/// the bound and the logins are measured in alternating slices (`--rounds` of each) and the
/// ratio is of their sums. The CPU the login center spends per login, against the CPU of a hash,
/// is printed too: while both keep their CPUs busy it is the same ratio from CPU time (a check
/// that the login center's CPUs were the bound; it moves with the VM's speed as much).
struct BenchLogins: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logins",
        abstract: "Full logins/s against the login center next to the scrypt bound, and token reconnects/s (build with -c release)."
    )

    @Option(help: "Seconds of each slice: each round measures the bound for this long, then the logins.")
    var seconds: Double = 1

    @Option(help: "Rounds of alternating slices (bound, logins): short slices, often alternated, see the same machine.")
    var rounds: Int = 8

    @Option(name: .customLong("reconnect-seconds"), help: "Seconds of token reconnects.")
    var reconnectSeconds: Double = 5

    @Option(help: "Concurrent clients.")
    var clients: Int = 16

    @Option(name: .customLong("server-cpus"), help: "Pin the servers and the bound's hashing to these CPUs with taskset (a taskset list, e.g. 0).")
    var serverCPUs: String?

    @Flag(name: .customLong("bound-only"), help: "Only measure the bound in this process: scrypt hashes/s, one hash per CPU it may use.")
    var boundOnly = false

    @Flag(help: "Also print the figures as one JSON object (a line starting with {\"bench\":\"logins\" or {\"bench\":\"scrypt\").")
    var json = false

    func validate() throws {
        guard seconds > 0, seconds <= 120 else { throw ValidationError("--seconds must be in (0, 120]") }
        guard reconnectSeconds > 0, reconnectSeconds <= 120 else { throw ValidationError("--reconnect-seconds must be in (0, 120]") }
        guard (1...50).contains(rounds) else { throw ValidationError("--rounds must be 1...50") }
        guard (1...1000).contains(clients) else { throw ValidationError("--clients must be 1...1000") }
    }

    func run() async throws {
        if boundOnly {
            let bound = try await Self.scryptBound(seconds: seconds)
            if json {
                print(#"{"bench":"scrypt","hashes":\#(bound.hashes),"seconds":\#(bound.seconds),"cpu_seconds":\#(bound.cpuSeconds)}"#)
            } else {
                row("scrypt hashes (the bound)", String(format: "%.1f /s", Double(bound.hashes) / bound.seconds))
            }
            return
        }
        #if DEBUG
        print("note: this is a debug build; run `swift build -c release --product myim` and `.build/release/myim bench logins` for real figures\n")
        #endif
        let servers = try await BenchServers.start(
            links: "tls", cpus: serverCPUs, maxConnectionsPerSource: clients * 4 + 64, loginIdentity: .rsa)
        try await servers.stopping { try await measure(servers) }
    }

    private func measure(_ servers: BenchServers) async throws {
        guard let login = servers.servers.first(where: { $0.name == "login" }) else { throw ValidationError("no login center was started") }
        print("MyIM login center (pid \(login.pid), RSA-2048 identity) on CPUs \(serverCPUs ?? "any"), \(clients) clients, "
            + "\(rounds) rounds of \(seconds) s for the bound and for the logins, scrypt N=2^14 r=8 p=1")
        fflush(nil)
        let password = "bench-password-1"
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<clients {
                group.addTask {
                    try await Self.withConnection(port: servers.loginPort, fingerprint: servers.loginFingerprint) { request in
                        let reply = try await request(Register(username: "user\(index)", password: password).packet)
                        guard reply.type == MessageType.registerOK.rawValue else {
                            throw ValidationError("registering user\(index) failed: \(reply.type) \(reply.body)")
                        }
                    }
                }
            }
            try await group.waitForAll()
        }

        var bound = BoundSlice(hashes: 0, seconds: 0, cpuSeconds: 0)
        var logins = 0
        var loginSeconds = 0.0
        var loginCPU = 0.0
        var ratios: [Double] = []
        var failed = 0
        for _ in 0..<rounds {
            let slice = try await boundSlice()
            bound.hashes += slice.hashes
            bound.seconds += slice.seconds
            bound.cpuSeconds += slice.cpuSeconds
            let meter = CPUMeter(pid: login.pid)
            let counts = try await loginSlice(servers, password: password)
            guard let span = meter.span() else { throw ValidationError("the login center's CPU time could not be read") }
            guard servers.allRunning else { throw ValidationError("a MyIM server exited during the run; see its lines above") }
            logins += counts.ok
            failed += counts.failed
            loginSeconds += span.wallSeconds
            loginCPU += span.cpuSeconds
            ratios.append((Double(counts.ok) / span.wallSeconds) / (Double(slice.hashes) / slice.seconds))
        }
        let boundRate = Double(bound.hashes) / bound.seconds
        let loginRate = Double(logins) / loginSeconds
        let hashCPU = bound.cpuSeconds / Double(max(1, bound.hashes))
        let cpuPerLogin = loginCPU / Double(max(1, logins))
        row("scrypt hashes (the bound)", String(format: "%.1f /s", boundRate))
        row("full logins (connect + handshake + login)", String(format: "%.1f /s", loginRate))
        let sorted = ratios.sorted()
        let median = (sorted[(sorted.count - 1) / 2] + sorted[sorted.count / 2]) / 2
        row("full logins / scrypt bound", String(format: "%.1f %%", 100 * loginRate / boundRate)
            + String(format: "  (median of the rounds %.1f %%: ", 100 * median)
            + ratios.map { String(format: "%.1f", 100 * $0) }.joined(separator: ", ") + ")")
        row("CPU per hash (bound)", String(format: "%.2f ms", 1000 * hashCPU))
        row("login center CPU per login", String(format: "%.2f ms", 1000 * cpuPerLogin)
            + String(format: "  (%.2f cores busy; a hash is %.1f %% of it)", loginCPU / loginSeconds, 100 * hashCPU / cpuPerLogin))
        if failed > 0 { print("failed logins: \(failed)") }
        let reconnects = try await tokenReconnects(servers)
        if json {
            print(#"{"bench":"logins","bound_per_s":\#(boundRate),"logins_per_s":\#(loginRate),"median_round_ratio":\#(median),"#
                + #""logins":\#(logins),"failed":\#(failed),"#
                + #""cpu_per_hash_ms":\#(1000 * hashCPU),"cpu_per_login_ms":\#(1000 * cpuPerLogin),"#
                + #""reconnects_per_s":\#(reconnects.rate),"reconnects":\#(reconnects.ok),"reconnects_failed":\#(reconnects.failed)}"#)
        }
    }

    /// One slice of the bound: the hashing runs in a child process pinned as the servers are.
    private func boundSlice() async throws -> BoundSlice {
        var command = [ClusterCommand.Up.ownExecutable(), "bench", "logins", "--bound-only", "--json", "--seconds", String(seconds)]
        if let serverCPUs {
            guard let taskset = MosquittoServer.locateTaskset() else { throw ValidationError("--server-cpus needs taskset (util-linux)") }
            command = [taskset, "-c", serverCPUs] + command
        }
        let output = try await Self.output(of: command, limit: .seconds(Int64(seconds.rounded(.up)) + 60))
        for line in output.split(separator: "\n") where line.hasPrefix(#"{"bench":"scrypt""#) {
            if let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
               let hashes = object["hashes"] as? Int, let elapsed = object["seconds"] as? Double, let cpu = object["cpu_seconds"] as? Double,
               elapsed > 0 {
                guard hashes > 0 else { throw ValidationError("no hash finished in a slice of \(seconds) s: give --seconds more") }
                return BoundSlice(hashes: hashes, seconds: elapsed, cpuSeconds: cpu)
            }
        }
        throw ValidationError("the bound's process printed no figure:\n\(output)")
    }

    /// One slice of full logins: every client logs in again and again until the slice ends.
    private func loginSlice(_ servers: BenchServers, password: String) async throws -> (ok: Int, failed: Int) {
        let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        let counts = Counters()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<clients {
                group.addTask {
                    let device = "sha256:" + SHA256.hash(data: Data("bench-\(index)".utf8)).hexString
                    while ContinuousClock.now < deadline {
                        do {
                            try await Self.withConnection(port: servers.loginPort, fingerprint: servers.loginFingerprint) { request in
                                let reply = try await request(Login(username: "user\(index)", password: password, device: device).packet)
                                counts.add(ok: reply.type == MessageType.loginOK.rawValue)
                            }
                        } catch {
                            counts.add(ok: false)  // Refused, or the connection failed: counted, and the run goes on.
                            try await Task.sleep(for: .milliseconds(10))
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        return (counts.ok, counts.failed)
    }

    /// Token reconnects/s: a client that already holds a token (after a network change, or an
    /// endpoint's 48) connects to an endpoint, completes the Ed25519 handshake with 41 sent along
    /// with ClientFinished (as the client library does), and waits for 42 and 10 (the center has
    /// bound the session), then drops the connection. Clients alternate between the two endpoints.
    private func tokenReconnects(_ servers: BenchServers) async throws -> (rate: Double, ok: Int, failed: Int) {
        var tokens: [String] = []
        for index in 0..<clients {
            tokens.append(try await servers.token(for: "rc\(index)@\(BenchMessages.domain)", userID: Int64(500_000 + index)))
        }
        let tokenList = tokens
        let counts = Counters()
        let meters = servers.meters().filter { $0.name != "login" }
        let deadline = ContinuousClock.now + .milliseconds(Int64(reconnectSeconds * 1000))
        let start = ContinuousClock.now
        await withTaskGroup(of: Void.self) { group in
            for index in 0..<clients {
                group.addTask {
                    while ContinuousClock.now < deadline {
                        let endpoint = index % 2
                        guard let client = try? await BenchClient.connect(
                            port: servers.endpointPorts[endpoint], fingerprint: servers.fingerprints[endpoint],
                            user: "rc\(index)", token: tokenList[index])
                        else {
                            counts.add(ok: false)
                            continue
                        }
                        do {
                            try await client.sessionOpened()
                            counts.add(ok: true)
                        } catch {
                            counts.add(ok: false)
                        }
                        client.close()
                    }
                }
            }
        }
        let elapsed = ContinuousClock.now - start
        let perSecond = Double(counts.ok) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        let serverCPU = meters.compactMap { $0.meter.span()?.cpuSeconds }.reduce(0, +)
        row("token reconnects (handshake + 41 → 42, 10)", String(format: "%.0f /s", perSecond)
            + String(format: "  (servers' CPU %.0f µs each)", 1e6 * serverCPU / Double(max(1, counts.ok))))
        if counts.failed > 0 { print("failed reconnects: \(counts.failed)") }
        return (perSecond, counts.ok, counts.failed)
    }

    private func row(_ name: String, _ value: String) {
        print(name.padding(toLength: 44, withPad: " ", startingAt: 0) + String(repeating: " ", count: max(0, 12 - value.count)) + value)
    }

    /// Hashes, wall seconds and this process's CPU seconds of one slice of the bound.
    struct BoundSlice {
        var hashes: Int
        var seconds: Double
        var cpuSeconds: Double
    }

    /// scrypt hashes for `seconds`, one at a time on each CPU this process may use, as the login
    /// center runs them (``LoginCenterConfiguration/hashingThreads``).
    private static func scryptBound(seconds: Double) async throws -> BoundSlice {
        let threads = NIOSingletons.groupLoopCountSuggestion
        let hasher = PasswordHasher(parameters: .standard, threads: threads)
        defer { Task { try? await hasher.shutdown() } }
        // A hash first on each thread, untimed: the login center's threads have long had their
        // 16 MiB in place, a fresh process's first hash pays for touching it.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<threads { group.addTask { _ = try await hasher.makeCredential(password: "bench-password-1") } }
            try await group.waitForAll()
        }
        let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        let count = Counters()
        let meter = CPUMeter()
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<threads {
                group.addTask {
                    while ContinuousClock.now < deadline {
                        _ = try await hasher.makeCredential(password: "bench-password-1")
                        count.add(ok: true)
                    }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = ContinuousClock.now - start
        return BoundSlice(
            hashes: count.ok, seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18,
            cpuSeconds: meter.span()?.cpuSeconds ?? 0)
    }

    /// Runs `command` to its end, at most `limit`, and returns what it printed (stdout and
    /// stderr, to a file read once the child has exited: one reader, and a child that prints a
    /// lot never blocks on a full pipe).
    private static func output(of command: [String], limit: Duration) async throws -> String {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("myim-bench-bound-\(UUID().uuidString).log")
        guard FileManager.default.createFile(atPath: log.path, contents: nil), let file = try? FileHandle(forWritingTo: log) else {
            throw ValidationError("cannot write \(log.path)")
        }
        defer { try? FileManager.default.removeItem(at: log) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        process.standardOutput = file
        process.standardError = file
        try await withCheckedThrowingContinuation { (exited: CheckedContinuation<Void, any Error>) in
            process.terminationHandler = { _ in exited.resume() }
            do {
                try process.run()
                BenchChildren.adopt(process.processIdentifier)  // Killed if the bench is interrupted.
            } catch {
                process.terminationHandler = nil
                exited.resume(throwing: error)
            }
            let pid = process.processIdentifier
            Task {
                try? await Task.sleep(for: limit)
                if process.isRunning { kill(pid, SIGKILL) }  // Its termination handler then resumes.
            }
        }
        BenchChildren.release(process.processIdentifier)
        try? file.close()
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        guard process.terminationStatus == 0, process.terminationReason == .exit else {
            throw ValidationError("\(command.joined(separator: " ")) failed or ran past \(limit):\n\(text)")
        }
        return text
    }

    /// One connection: `body` gets a request function that sends a packet and returns the reply.
    private static func withConnection(
        port: Int, fingerprint: KeyFingerprint, _ body: (_ request: (Packet) async throws -> Packet) async throws -> Void
    ) async throws {
        let (connection, _) = try await SecureClient.connect(host: "127.0.0.1", port: port, policy: .pinned(fingerprint))
        try await connection.channel.executeThenClose { inbound, outbound in
            var replies = inbound.makeAsyncIterator()
            try await body { packet in
                try await outbound.write(packet)
                guard let reply = try await replies.next() else { throw ValidationError("the login center closed the connection") }
                return reply
            }
        }
    }
}

/// Success and failure counts shared by the benchmark's tasks.
private final class Counters: Sendable {
    private let state = Mutex((ok: 0, failed: 0))
    var ok: Int { state.withLock { $0.ok } }
    var failed: Int { state.withLock { $0.failed } }

    func add(ok: Bool) {
        state.withLock { ok ? ($0.ok += 1) : ($0.failed += 1) }
    }
}
