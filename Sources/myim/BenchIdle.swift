import ArgumentParser
import Foundation
import MyIMBench
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// `myim bench idle`: what an idle authenticated connection costs the servers.
///
/// MyIM's servers run as processes (``BenchServers``); the bench opens connections to endpoint 1
/// in steps (`--connections 1000 --connections 5000`: 1,000 first, then 4,000 more), each one a
/// full token reconnect (handshake, token, 42 and 10), waits `--settle` seconds, and reads every
/// server's resident memory and the kernel's socket memory. Per connection is the growth since
/// before the first connection, divided by the connections held. The reference (`--reference
/// mosquitto`) gets MQTT clients, each connected and subscribed to its own topic.
///
/// With `--reconnect`, a last step closes every connection, waits `--settle` seconds for the
/// servers to close the sessions, and opens them all again, each with the token (or MQTT client
/// id) it had: a crowd of clients coming back after a network outage, whose tokens the endpoint
/// has seen before.
struct BenchIdle: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "idle",
        abstract: "Memory per idle authenticated connection (server RSS and kernel socket memory), for MyIM or a reference broker."
    )

    @Option(help: "Connections held after each step, ascending (repeat for more steps).")
    var connections: [Int] = [1000, 5000]

    @Option(help: "Seconds to wait after each step before reading memory.")
    var settle: Double = 2

    @Option(help: "Measure a reference broker instead of MyIM: mosquitto.")
    var reference: String?

    @Option(help: "MyIM only: server-to-server links, tls or plain.")
    var links: String = "tls"

    @Option(name: .customLong("server-cpus"), help: "Pin the servers to these CPUs with taskset (a taskset list, e.g. 0).")
    var serverCPUs: String?

    @Flag(name: .customLong("handshake-only"), help: "MyIM only: stop each connection after the secure-channel handshake (no token): what a connection costs before its session.")
    var handshakeOnly = false

    @Flag(help: "After the last step, close every connection and open it again with the same token (MQTT: client id): a reconnect storm.")
    var reconnect = false

    @Option(help: "With --reconnect: how many storms, one after the other (memory that grows with each is kept by closed sessions).")
    var rounds = 1

    @Option(name: .customLong("in-flight"), help: "Connections opening at a time, a new one starting as each ends: a crowd coming back at once.")
    var inFlight = 128

    @Flag(help: "Also print one JSON object per step (lines starting with {\"bench\":\"idle\").")
    var json = false

    func validate() throws {
        guard !connections.isEmpty, connections.count <= 8, connections.allSatisfy({ $0 > 0 }),
              zip(connections, connections.dropFirst()).allSatisfy({ $0 < $1 })
        else { throw ValidationError("--connections: 1 to 8 steps, each above 0, ascending") }
        guard (1...1024).contains(inFlight) else { throw ValidationError("--in-flight: 1 to 1024") }
        let limit = Self.openFileLimit()
        guard let last = connections.last, last + 256 <= limit else {
            throw ValidationError("--connections up to \(connections.last ?? 0) needs that many open files and some; this process may open \(limit) (ulimit -n)")
        }
        guard settle >= 0, settle <= 60 else { throw ValidationError("--settle must be in [0, 60]") }
        if let reference, reference != "mosquitto" { throw ValidationError("--reference: the only reference is mosquitto") }
        guard (1...20).contains(rounds), rounds == 1 || reconnect else { throw ValidationError("--rounds: 1 to 20, with --reconnect") }
        if handshakeOnly, reference != nil { throw ValidationError("--handshake-only applies to MyIM's secure channel") }
        guard links == "tls" || links == "plain" else { throw ValidationError("--links must be tls or plain") }
    }

    func run() async throws {
        #if DEBUG
        print("note: this is a debug build; run `swift build -c release --product myim` and `.build/release/myim bench idle` for real figures\n")
        #endif
        if reference == "mosquitto" {
            guard let executable = MosquittoServer.locate() else {
                throw ValidationError("mosquitto is not installed: `apt-get install -y mosquitto` (bench/compare.sh does it when run as root)")
            }
            let server = try await MosquittoServer.start(executable: executable, cpus: serverCPUs)
            print("Reference: \(MosquittoServer.version(executable: executable) ?? executable) on 127.0.0.1:\(server.port) (pid \(server.pid)); "
                + "each connection an MQTT 3.1.1 client subscribed to its own topic")
            let clients = Locked<[MQTTBenchClient]>([])
            do {
                try await measure(system: "mosquitto", servers: [("mosquitto", server.pid)], closeAll: { Self.closeAll(clients) }) { index in
                    let client = try await MQTTBenchClient.connect(host: "127.0.0.1", port: server.port, clientID: "idle\(index)")
                    clients.withLock { $0.append(client) }
                    try await client.subscribe("i\(index)")
                }
            } catch {
                for client in clients.withLock({ $0 }) { client.close() }
                await server.stop()
                throw error
            }
            for client in clients.withLock({ $0 }) { client.close() }
            await server.stop()
            return
        }
        let servers = try await BenchServers.start(links: links, cpus: serverCPUs, maxConnectionsPerSource: (connections.last ?? 0) + 64)
        print("MyIM: \(servers.servers.map { "\($0.name) (pid \($0.pid))" }.joined(separator: ", ")), \(links) links; "
            + "each connection a token reconnect to bench-ep1 (handshake, token, 42 and 10), then idle")
        fflush(nil)  // The servers' pids show at once, also when the output is a file.
        let clients = Locked<[PairsClient]>([])
        let tokens = Locked<[Int: String]>([:])
        try await servers.stopping {
            defer { for client in clients.withLock({ $0 }) { client.close() } }
            try await measure(system: "myim", servers: servers.servers.map { ($0.name, $0.pid) }, closeAll: { Self.closeAll(clients) }) { index in
                let user = "idle\(index)@\(BenchMessages.domain)"
                var token: String?
                if !handshakeOnly {
                    if let known = tokens.withLock({ $0[index] }) {
                        token = known
                    } else {
                        let issued = try await servers.token(for: user, userID: Int64(300_000 + index))
                        tokens.withLock { $0[index] = issued }
                        token = issued
                    }
                }
                let client = try await PairsClient.connect(
                    port: servers.endpointPorts[0], fingerprint: servers.fingerprints[0], user: user, token: token)
                clients.withLock { $0.append(client) }
            }
            guard servers.allRunning else { throw ValidationError("a MyIM server exited during the run; see its lines above") }
        }
    }

    private static func closeAll<Client: BenchClosable>(_ clients: Locked<[Client]>) {
        for client in clients.withLock({ list in defer { list.removeAll() }; return list }) { client.close() }
    }

    /// Opens the connections step by step with `open` (called with 0, 1, 2, …, 32 at a time) and
    /// prints the memory figures after each step; with `--reconnect`, then closes them all with
    /// `closeAll` and opens them again.
    private func measure(
        system: String, servers: [(name: String, pid: Int32)], closeAll: @Sendable () -> Void, open: @escaping @Sendable (Int) async throws -> Void
    ) async throws {
        print("\(System.coreCount) cores, load \(BenchPairs.loadAverage()), settle \(settle) s after each step, \(inFlight) connections opening at a time; servers pinned to CPUs: \(serverCPUs ?? "no")")
        print("memory per connection = growth since before the first connection / connections held; kernel figures count both ends of each loopback connection")
        print("")
        try await Task.sleep(for: .milliseconds(Int64(settle * 1000)))
        let baseline = servers.map { ProcStat.read(pid: $0.pid)?.rssBytes ?? 0 }
        let kernelBaseline = KernelMemory.read()
        var opened = 0
        var steps = connections.map { (target: $0, reconnecting: false) }
        if reconnect, let last = connections.last { steps += repeatElement((target: last, reconnecting: true), count: rounds) }
        for (target, reconnecting) in steps {
            if reconnecting {
                closeAll()
                opened = 0
                try await Task.sleep(for: .milliseconds(Int64(settle * 1000)))
                print("all \(target) connections closed; each opened again with its token (MQTT: client id)")
            }
            let cpuBefore = servers.map { ProcStat.read(pid: $0.pid)?.cpuSeconds ?? 0 }
            let started = BenchClock.now()
            // `inFlight` handshakes at a time, as a crowd of clients reconnecting would be: a new
            // one starts as each ends (not in lockstep batches, which left the servers idle while
            // a batch's slowest finished).
            let first = opened
            try await withThrowingTaskGroup(of: Void.self) { group in
                var next = first
                while next < min(first + inFlight, target) {
                    group.addTask { [next] in try await open(next) }
                    next += 1
                }
                while try await group.next() != nil {
                    guard next < target else { continue }
                    group.addTask { [next] in try await open(next) }
                    next += 1
                }
            }
            opened = target
            let elapsed = Double(BenchClock.now() &- started) / 1e9
            let serverCPU = zip(servers, cpuBefore).map { server, before in (ProcStat.read(pid: server.pid)?.cpuSeconds ?? before) - before }
            try await Task.sleep(for: .milliseconds(Int64(settle * 1000)))
            let rss = servers.map { ProcStat.read(pid: $0.pid)?.rssBytes ?? 0 }
            let kernel = KernelMemory.read()
            let step = IdleStep(
                system: system, connections: target, reconnected: reconnecting,
                opened: reconnecting ? target : target - (connections.last(where: { $0 < target }) ?? 0), seconds: elapsed,
                servers: zip(zip(servers, serverCPU), zip(baseline, rss)).map { server, memory in
                    (server.0.name, server.1, memory.1, (Double(memory.1) - Double(memory.0)) / Double(target))
                },
                kernel: kernel.flatMap { now in kernelBaseline.map { (now, $0) } }, load: BenchPairs.loadAverage())
            step.print()
            if json { step.printJSON() }
            print("")
            fflush(nil)
        }
    }

    /// The soft limit on open files (RLIMIT_NOFILE).
    static func openFileLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        return Int(clamping: limit.rlim_cur)
    }
}

/// The figures after one step of `myim bench idle`.
private struct IdleStep: Encodable {
    var bench = "idle"
    var system: String
    var connections: Int
    /// Whether the step's connections were reopened with the tokens they had (`--reconnect`).
    var reconnected: Bool
    var connectsPerS: Double
    /// Server CPU per connection opened in the step, all server processes summed: what a
    /// connection (for MyIM a token reconnect) costs the servers, whatever bounds the rate.
    var serverCPUMicrosecondsPerConnect: Double
    /// Server cores busy while the step's connections were opened.
    var serverCoresBusy: Double
    /// The same, per server process.
    var serverCPUMicrosecondsPerConnectByProcess: [String: Double]
    var rssBytes: [String: UInt64]
    var rssBytesPerConnection: [String: Double]
    var kernelTCPBufferBytesPerConnection: Double?
    var kernelSlabBytesPerConnection: Double?
    var load: String

    init(
        system: String, connections: Int, reconnected: Bool, opened: Int, seconds: Double,
        servers: [(name: String, cpuSeconds: Double, rss: UInt64, perConnection: Double)],
        kernel: (now: KernelMemory, before: KernelMemory)?, load: String
    ) {
        self.system = system
        self.connections = connections
        self.reconnected = reconnected
        connectsPerS = seconds > 0 ? Double(opened) / seconds : 0
        let serverCPUSeconds = servers.reduce(0) { $0 + $1.cpuSeconds }
        serverCPUMicrosecondsPerConnectByProcess = Dictionary(
            servers.map { ($0.name, opened > 0 ? $0.cpuSeconds * 1e6 / Double(opened) : 0) }, uniquingKeysWith: max)
        serverCPUMicrosecondsPerConnect = opened > 0 ? serverCPUSeconds * 1e6 / Double(opened) : 0
        serverCoresBusy = seconds > 0 ? serverCPUSeconds / seconds : 0
        rssBytes = Dictionary(servers.map { ($0.name, $0.rss) }, uniquingKeysWith: max)
        rssBytesPerConnection = Dictionary(servers.map { ($0.name, $0.perConnection) }, uniquingKeysWith: max)
        if let kernel {
            kernelTCPBufferBytesPerConnection = (Double(kernel.now.tcpBufferBytes) - Double(kernel.before.tcpBufferBytes)) / Double(connections)
            kernelSlabBytesPerConnection = (Double(kernel.now.slabBytes) - Double(kernel.before.slabBytes)) / Double(connections)
        }
        self.load = load
    }

    enum CodingKeys: String, CodingKey {
        case bench, system, connections, reconnected, load
        case connectsPerS = "connects_per_s"
        case serverCPUMicrosecondsPerConnect = "server_cpu_us_per_connect"
        case serverCoresBusy = "server_cores_busy"
        case serverCPUMicrosecondsPerConnectByProcess = "server_cpu_us_per_connect_by_process"
        case rssBytes = "rss_bytes"
        case rssBytesPerConnection = "rss_bytes_per_connection"
        case kernelTCPBufferBytesPerConnection = "kernel_tcp_buffer_bytes_per_connection"
        case kernelSlabBytesPerConnection = "kernel_slab_bytes_per_connection"
    }

    func print() {
        let how = reconnected ? "reopened with their tokens" : "opened"
        Swift.print("\(connections) idle connections held (\(how) at \(String(format: "%.0f", connectsPerS))/s)")
        BenchReport.printRow(
            "servers' CPU per connection opened (summed)",
            String(format: "%.0f us  (%.2f cores)", serverCPUMicrosecondsPerConnect, serverCoresBusy), nameWidth: 56, valueWidth: 22)
        if serverCPUMicrosecondsPerConnectByProcess.count > 1 {
            for (name, micros) in serverCPUMicrosecondsPerConnectByProcess.sorted(by: { $0.value > $1.value }) {
                BenchReport.printRow("  of which \(name)", String(format: "%.0f us", micros), nameWidth: 56, valueWidth: 14)
            }
        }
        let total = rssBytesPerConnection.values.reduce(0, +)
        for (name, perConnection) in rssBytesPerConnection.sorted(by: { $0.value > $1.value }) {
            row("\(name): RSS \(String(format: "%.1f", Double(rssBytes[name] ?? 0) / 1_048_576)) MiB, per connection", perConnection)
        }
        if rssBytesPerConnection.count > 1 { row("all servers, per connection", total) }
        if let kernelTCPBufferBytesPerConnection { row("kernel TCP buffers (both ends), per connection", kernelTCPBufferBytesPerConnection) }
        if let kernelSlabBytesPerConnection { row("kernel slab (both ends, machine-wide), per connection", kernelSlabBytesPerConnection) }
    }

    func printJSON() { BenchReport.printJSON(self, bench: "idle") }

    private func row(_ name: String, _ bytes: Double) {
        BenchReport.printRow(name, String(format: "%.0f B", bytes), nameWidth: 56, valueWidth: 14)
    }
}

/// A bench client `myim bench idle` can close.
protocol BenchClosable: Sendable {
    func close()
}

extension PairsClient: BenchClosable {}
extension MQTTBenchClient: BenchClosable {}
