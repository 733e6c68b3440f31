import ArgumentParser
import Foundation
import MyIMAuth
import MyIMBench
import MyIMSecureChannel
import MyIMTransport
import MyIMWire
import NIOCore
import NIOPosix
import Synchronization

/// `myim bench pairs`: N sender/receiver pairs, 64-byte texts, a closed loop (window W per sender)
/// then an open loop (a fixed offered rate R), delivered/s and latency percentiles (HdrHistogram)
/// from a timestamp in each message, and CPU time per delivered message.
///
/// - MyIM (default): the servers as separate processes (``BenchServers``: redis-server, a center
///   and two endpoints of a topology with TLS links, and a login center), each one's CPU time read
///   from /proc/<pid>/stat apart from the generator's; senders connect to endpoint 1, receivers to
///   endpoint 2. `--in-process` runs the center (plain links, in-memory presence) and the endpoints
///   in this process instead, where their CPU cannot be told apart from the generator's.
/// - `--reference mosquitto`: the same generator against a mosquitto started on a free port of
///   127.0.0.1 (MQTT 3.1.1, QoS 0, receiver i subscribed to `r<i>`, sender i publishing to it);
///   mosquitto's CPU time is read from /proc/<pid>/stat, apart from the generator's.
///
/// Every phase is bounded by `--seconds` plus a drain of at most 10 s; the command stops by itself.
struct BenchPairs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pairs",
        abstract: "1:1 pairs: delivered/s, latency p50/p99/p99.9 and CPU per message, for MyIM or a reference broker (build with -c release)."
    )

    @Option(help: "Seconds each phase sends for.")
    var seconds: Double = 5

    @Option(help: "Sender/receiver pairs.")
    var pairs: Int = 32

    @Option(help: "Closed loop: messages in flight per sender.")
    var window: Int = 8

    @Option(help: "Open loop: offered messages/s in total, paced across the senders (repeat for one open phase per rate).")
    var rate: [Double] = [10_000]

    @Option(help: "Seconds to wait after each phase for messages still in flight.")
    var drain: Double = 10

    @Option(help: "Phases to run: closed, open, or closed,open.")
    var phases: String = "closed,open"

    @Option(help: "MyIM only: the chat QoS, 0 (best effort, not stored, no ack: like MQTT QoS 0) or 1 (stored until acked).")
    var qos: Int = 1

    @Option(help: "Idle connections to hold through the phases (MyIM: authenticated, alternating endpoints; reference: MQTT clients, each subscribed to its own topic).")
    var idle: Int = 0

    @Flag(help: "MyIM only: pair i's sender on endpoint 1 + i % 2 and its receiver on the other (both links to the center carry senders).")
    var cross = false

    @Option(help: "Run the same load against a reference broker instead of MyIM: mosquitto.")
    var reference: String?

    @Flag(name: .customLong("in-process"), help: "MyIM only: run the center and endpoints in this process (plain links, in-memory presence), not as processes.")
    var inProcess = false

    @Flag(name: .customLong("all-in-one"), help: "MyIM only: the login center, center and one endpoint in one process (`myim serve --all-in-one`, presence in memory), senders and receivers on that endpoint: what the separate processes cost.")
    var allInOne = false

    @Flag(name: .customLong("sender-copies"), help: "MyIM only: senders ask for a copy (18) of each message they send, as seed 000's clients do (41 sender_copies true); by default they do not, as the reference client.")
    var senderCopies = false

    @Option(help: "MyIM processes only: server-to-server links, tls or plain.")
    var links: String = "tls"

    @Option(name: .customLong("server-cpus"), help: "Pin the servers (the broker, or MyIM's processes and Redis) to these CPUs with taskset (a taskset list, e.g. 0).")
    var serverCPUs: String?

    @Flag(help: "Also print one JSON object per phase (lines starting with {\"bench\":\"pairs\").")
    var json = false

    static let bodyBytes = 64

    private var drainLimit: Duration { .milliseconds(Int64(drain * 1000)) }

    func validate() throws {
        guard seconds > 0, seconds <= 120 else { throw ValidationError("--seconds must be in (0, 120]") }
        guard (1...1000).contains(pairs) else { throw ValidationError("--pairs must be 1...1000") }
        guard (1...256).contains(window) else { throw ValidationError("--window must be 1...256") }
        guard !rate.isEmpty, rate.count <= 8, rate.allSatisfy({ $0 > 0 && $0 <= 1_000_000 }) else {
            throw ValidationError("--rate must be in (0, 1000000], given at most 8 times")
        }
        guard idle >= 0, idle + 2 * pairs + 256 <= BenchIdle.openFileLimit() else {
            throw ValidationError("--idle \(idle) with \(pairs) pairs needs more open files than this process may open (\(BenchIdle.openFileLimit()), ulimit -n)")
        }
        guard drain >= 0, drain <= 60 else { throw ValidationError("--drain must be in [0, 60]") }
        guard qos == 0 || qos == 1 else { throw ValidationError("--qos must be 0 or 1") }
        guard !phaseList.isEmpty else { throw ValidationError("--phases must name closed, open or both, comma-separated") }
        if let reference, reference != "mosquitto" { throw ValidationError("--reference: the only reference is mosquitto") }
        if cross, reference != nil { throw ValidationError("--cross places MyIM's clients; a reference broker has one port") }
        if inProcess, reference != nil { throw ValidationError("--in-process places MyIM's servers; a reference broker runs alone") }
        if allInOne, inProcess || reference != nil || cross {
            throw ValidationError("--all-in-one runs MyIM's servers as one process: not with --in-process, --cross or --reference")
        }
        if serverCPUs != nil, inProcess {
            throw ValidationError("--server-cpus pins server processes; with --in-process the servers share this process (pin it with taskset instead)")
        }
        guard links == "tls" || links == "plain" else { throw ValidationError("--links must be tls or plain") }
    }

    private var phaseList: [String] {
        let names = phases.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        guard names.allSatisfy({ $0 == "closed" || $0 == "open" }) else { return [] }
        return names
    }

    func run() async throws {
        #if DEBUG
        print("note: this is a debug build; run `swift build -c release --product myim` and `.build/release/myim bench pairs` for real figures\n")
        #endif
        if reference == "mosquitto" {
            try await runMosquitto()
        } else {
            try await runMyIM()
        }
    }

    // MARK: - MyIM

    private func runMyIM() async throws {
        if inProcess {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("myim-bench-pairs-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let cluster = try await BenchCluster.start(directory: directory, maxConnectionsPerSource: idle + 2 * pairs + 64)
            let issuer = await TokenIssuer(signingKey: cluster.tokenKey, issuer: BenchMessages.issuer)
            let target = MyIMTarget(
                description: "in one process: center (SQLite, plain links, in-memory presence) + 2 endpoints (Ed25519) + the generator",
                cpuNote: "CPU is this whole process (servers and generator together: they share it and its cores, and cannot be pinned apart)",
                servers: [],
                connect: { user, userID, endpoint in
                    let token = try await issuer.issue(address: user, userID: userID, sessionID: UUID().uuidString, device: "sha256:bench", now: Date()).token
                    return try await PairsClient.connect(
                        port: cluster.ports[endpoint], fingerprint: cluster.fingerprints[endpoint], user: user, token: token, senderCopies: senderCopies)
                },
                quiet: {
                    let deadline = ContinuousClock.now + .seconds(10)
                    while await !cluster.center.onlineUsers.isEmpty, ContinuousClock.now < deadline {
                        try? await Task.sleep(for: .milliseconds(20))
                    }
                })
            do {
                try await measureMyIM(target)
            } catch {
                await cluster.stop()
                throw error
            }
            await cluster.stop()
            return
        }
        let servers = try await BenchServers.start(
            links: links, cpus: serverCPUs, maxConnectionsPerSource: idle + 2 * pairs + 64, allInOne: allInOne)
        let target = MyIMTarget(
            description: allInOne
                ? "all in one process (myim serve --all-in-one): login center + center (SQLite) + 1 endpoint (Ed25519), presence in memory; "
                    + "senders and receivers on that endpoint"
                : "as processes: center (SQLite, \(links) links) + 2 endpoints (Ed25519) + redis-server (presence) + login center, "
                    + "each its own process",
            cpuNote: "servers pinned to CPUs: \(serverCPUs ?? "no (they share the cores with the generator)"); generator CPUs: \(Self.affinity() ?? "?"); "
                + "server CPU is the sum over \(servers.servers.map { "\($0.name) (pid \($0.pid))" }.joined(separator: ", "))",
            servers: servers.servers.map { ($0.name, $0.pid) },
            connect: { user, userID, endpoint in
                let token = try await servers.token(for: user, userID: userID)
                return try await PairsClient.connect(
                    port: servers.endpointPorts[endpoint], fingerprint: servers.fingerprints[endpoint], user: user, token: token,
                    senderCopies: senderCopies)
            },
            quiet: {})
        try await servers.stopping {
            try await measureMyIM(target)
            guard servers.allRunning else { throw ValidationError("a MyIM server exited during the run; see its lines above") }
        }
    }

    /// Where MyIM's servers run and how a client reaches them.
    private struct MyIMTarget {
        var description: String
        var cpuNote: String
        /// Server processes apart from this one, by name (none: they run in this process).
        var servers: [(name: String, pid: Int32)]
        var connect: @Sendable (_ user: String, _ userID: Int64, _ endpoint: Int) async throws -> PairsClient
        /// Waits until the servers have seen every client go.
        var quiet: @Sendable () async -> Void
    }

    private func measureMyIM(_ target: MyIMTarget) async throws {
        let domain = BenchMessages.domain
        let chatQoS: QoS = qos == 0 ? .bestEffort : .atLeastOnce
        print("MyIM 1:1 pairs, \(target.description)")
        print("\(System.coreCount) cores, load \(Self.loadAverage()), \(pairs) pairs (\(cross ? "even senders on ep1, odd on ep2, each receiver on the other" : allInOne ? "senders and receivers on the one endpoint" : "senders on ep1, receivers on ep2")), \(Self.bodyBytes)-byte text, "
            + (qos == 0 ? "QoS 0 (best effort, no acks)" : "QoS 1 (stored; receivers ack in batches of up to \(PairsClient.ackBatch))")
            + (senderCopies ? "; senders get a copy of each message (seed 000)" : "; no copies to senders (as the reference client)"))
        print(target.cpuNote)
        print("")
        fflush(nil)

        let connect = target.connect
        let idlers = try await holdIdle { index in
            try await connect("idle\(index)@\(domain)", Int64(300_000 + index), index % 2)
        }
        defer { for client in idlers { client.close() } }
        // Receivers first, so that the center knows their user ids when the first message comes.
        let receivers = try await BenchMessages.concurrently(count: pairs, width: 16) { index in
            try await connect("r\(index)@\(domain)", Int64(100_000 + index), cross ? 1 - index % 2 : 1)
        }
        let senders: [PairsClient]
        do {
            senders = try await BenchMessages.concurrently(count: pairs, width: 16) { index in
                try await connect("s\(index)@\(domain)", Int64(200_000 + index), cross ? index % 2 : 0)
            }
        } catch {
            for client in receivers { client.close() }
            throw error
        }
        let recorder = PairsRecorder()
        let errors = PairsErrors()
        for (index, receiver) in receivers.enumerated() {
            receiver.setHandler { packet in
                guard packet.type == MessageType.chatDelivery.rawValue else {
                    if packet.type == MessageType.error.rawValue { errors.add("receiver: \(Self.describeError(packet))") }
                    return
                }
                let now = BenchClock.now()
                guard let delivery = try? ChatDelivery(packet: packet), case .text(let text) = delivery.content else {
                    return errors.add("receiver: an 18 that does not parse")
                }
                recorder.receive(pair: index, payload: text.utf8, now: now)
                if delivery.qos == .atLeastOnce, let batch = receiver.takeAcks(adding: delivery.serverMessageID, now: now) {
                    receiver.send(DeliveryAck(ids: batch).packet)
                }
            }
        }
        for sender in senders {
            sender.setHandler { packet in
                if packet.type == MessageType.error.rawValue { errors.add("sender: \(Self.describeError(packet))") }
            }
        }
        let generator = PairsGenerator(
            pairs: pairs, bodyBytes: Self.bodyBytes, drainLimit: drainLimit, loops: senders.map(\.eventLoop), recorder: recorder
        ) { pair, phase, sequence, text in
            senders[pair].send(
                Chat(target: .user("r\(pair)@\(domain)"), content: .text(text), clientMessageID: "p\(phase)-\(sequence)", qos: chatQoS).packet)
        }
        let flush = { @Sendable in
            for receiver in receivers {
                if let batch = receiver.takeAcks(adding: nil, now: BenchClock.now(), force: true) { receiver.send(DeliveryAck(ids: batch).packet) }
            }
        }
        do {
            try await runPhases(generator, system: "myim", servers: target.servers, errors: errors, afterPhase: flush)
        } catch {
            for client in senders + receivers { client.close() }
            throw error
        }
        for client in senders + receivers {
            if let failure = client.failure { errors.add("\(client.user): \(failure)") }
            client.close()
        }
        await target.quiet()
        report(recorder: recorder, errors: errors)
    }

    /// Opens the `--idle` connections (32 at a time) and says how fast that went.
    private func holdIdle<Client: Sendable>(_ open: @escaping @Sendable (Int) async throws -> Client) async throws -> [Client] {
        guard idle > 0 else { return [] }
        let started = BenchClock.now()
        let clients = try await BenchMessages.concurrently(count: idle, width: 32, open)
        print(String(format: "holding %d idle connections (opened at %.0f/s)\n", idle, Double(idle) / (Double(BenchClock.now() &- started) / 1e9)))
        return clients
    }

    private static func describeError(_ packet: Packet) -> String {
        (try? ErrorMessage(packet: packet)).map { "\($0.code): \($0.data)" } ?? "\(packet.body)"
    }

    // MARK: - mosquitto

    private func runMosquitto() async throws {
        guard let executable = MosquittoServer.locate() else {
            throw ValidationError("mosquitto is not installed: `apt-get install -y mosquitto` (bench/compare.sh does it when run as root)")
        }
        let server = try await MosquittoServer.start(executable: executable, cpus: serverCPUs)
        do {
            try await measureMosquitto(server, version: MosquittoServer.version(executable: executable) ?? executable)
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    private func measureMosquitto(_ server: MosquittoServer, version: String) async throws {
        print("Reference: \(version) on 127.0.0.1:\(server.port) (pid \(server.pid)), MQTT 3.1.1, QoS 0, no persistence; the generator in this process")
        print("\(System.coreCount) cores, load \(Self.loadAverage()), \(pairs) pairs (receiver i subscribed to r<i>, sender i publishing to it), "
            + "\(Self.bodyBytes)-byte payload")
        print("broker pinned to CPUs: \(server.cpus ?? "no (shares the cores with the generator)"); generator CPUs: \(Self.affinity() ?? "?")")
        print("")
        let idlers = try await holdIdle { index in
            let client = try await MQTTBenchClient.connect(host: "127.0.0.1", port: server.port, clientID: "idle\(index)")
            do {
                try await client.subscribe("i\(index)")
            } catch {
                client.close()
                throw error
            }
            return client
        }
        defer { for client in idlers { client.close() } }
        let receivers = try await BenchMessages.concurrently(count: pairs, width: 16) { index in
            try await MQTTBenchClient.connect(host: "127.0.0.1", port: server.port, clientID: "r\(index)")
        }
        var senders: [MQTTBenchClient] = []
        let recorder = PairsRecorder()
        let errors = PairsErrors()
        do {
            for (index, receiver) in receivers.enumerated() {
                receiver.setHandler { publish in
                    recorder.receive(pair: index, payload: publish.payload.readableBytesView, now: BenchClock.now())
                }
                try await receiver.subscribe("r\(index)")
            }
            senders = try await BenchMessages.concurrently(count: pairs, width: 16) { index in
                try await MQTTBenchClient.connect(host: "127.0.0.1", port: server.port, clientID: "s\(index)")
            }
            let publishers = senders
            let generator = PairsGenerator(
                pairs: pairs, bodyBytes: Self.bodyBytes, drainLimit: drainLimit, loops: publishers.map(\.eventLoop), recorder: recorder
            ) { pair, _, _, text in
                publishers[pair].publish(topic: "r\(pair)", payload: ByteBuffer(string: text))
            }
            try await runPhases(generator, system: "mosquitto", servers: [("mosquitto", server.pid)], errors: errors, afterPhase: {})
        } catch {
            for client in senders + receivers { client.close() }
            throw error
        }
        for client in senders + receivers {
            if let failure = client.failure { errors.add("\(client.clientID): \(failure)") }
            await client.disconnect()
        }
        guard server.isRunning else { throw ValidationError("mosquitto exited during the run: \(server.log)") }
        let log = server.log.trimmingCharacters(in: .whitespacesAndNewlines)
        if !log.isEmpty { print("mosquitto's log (errors and warnings):\n\(log)") }
        report(recorder: recorder, errors: errors)
    }

    // MARK: - Phases

    private func runPhases(
        _ generator: PairsGenerator, system: String, servers: [(name: String, pid: Int32)], errors: PairsErrors,
        afterPhase: @Sendable () async -> Void
    ) async throws {
        // Each open phase has its own number, so that a late message of the one before is a stray.
        var steps: [(name: String, rate: Double?, id: Int)] = []
        for name in phaseList {
            if name == "closed" {
                steps.append((name, nil, PairsGenerator.closedPhase))
            } else {
                for (index, rate) in rate.enumerated() { steps.append((name, rate, PairsGenerator.openPhase + index)) }
            }
        }
        for step in steps {
            let process = CPUMeter()
            let meters = servers.map { (name: $0.name, meter: CPUMeter(pid: $0.pid)) }
            let result: PairsPhaseResult
            if let rate = step.rate {
                result = try await generator.openLoop(rate: rate, seconds: seconds, phase: step.id)
            } else {
                result = try await generator.closedLoop(window: window, seconds: seconds)
            }
            await afterPhase()
            let processSpan = process.span()
            let serverSpans = meters.compactMap { meter in meter.meter.span().map { (name: meter.name, span: $0) } }
            if let rate = step.rate {
                print(String(format: "Open loop: offered %.0f msg/s in total (%.1f msg/s per sender, paced), %g s", rate, rate / Double(pairs), seconds))
            } else {
                print("Closed loop: \(pairs) senders x window \(window) (the next message goes when the receiver has one), \(seconds) s")
            }
            let summary = PairsSummary(
                system: system, qos: system == "mosquitto" ? 0 : qos, phase: step.name, pairs: pairs, window: window, rate: step.rate ?? 0,
                seconds: seconds, result: result, process: processSpan, servers: serverSpans.count == meters.count ? serverSpans : nil,
                inProcess: servers.isEmpty, errors: errors.count, load: Self.loadAverage())
            summary.print()
            if json { summary.printJSON() }
            print("")
            fflush(nil)  // Each phase shows as it ends, also when the output is a file.
        }
    }

    private func report(recorder: PairsRecorder, errors: PairsErrors) {
        if recorder.strays > 0 { print("deliveries that did not belong to the phase running (late or unparsable): \(recorder.strays)") }
        if errors.count > 0 { print("errors: \(errors.count), first: \(errors.first ?? "")") }
    }

    // MARK: - Helpers

    /// The 1-minute load average, from /proc/loadavg.
    static func loadAverage() -> String {
        guard let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8) else { return "?" }
        return text.split(separator: " ").first.map(String.init) ?? "?"
    }

    /// This process's allowed CPUs (Cpus_allowed_list from /proc/self/status).
    static func affinity() -> String? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("Cpus_allowed_list:") {
            return line.dropFirst("Cpus_allowed_list:".count).trimmingCharacters(in: .whitespaces)
        }
        return nil
    }
}

/// The figures of one phase, printed as rows and as one JSON line.
private struct PairsSummary: Encodable {
    var bench = "pairs"
    var system: String
    var qos: Int
    var phase: String
    var pairs: Int
    var window: Int?
    var rate: Double?
    var seconds: Double
    var sent: Int
    var delivered: Int
    var deliveredInWindow: Int
    var deliveredPerS: Double
    var p50Us: Double
    var p99Us: Double
    var p999Us: Double
    var maxUs: Double
    var maxLagUs: Double?
    /// CPU of the servers per delivered message: mosquitto's process, or MyIM's processes summed
    /// (Redis included); with `--in-process`, the whole process, flagged by `serverCPUIsWholeProcess`.
    var serverCPUUsPerMsg: Double?
    var serverCores: Double?
    var serverCPUIsWholeProcess: Bool
    /// Each server process's CPU per delivered message, by name.
    var serverProcessesUsPerMsg: [String: Double]?
    /// CPU of this process (the generator, and with `--in-process` the servers too) per delivered message.
    var processCPUUsPerMsg: Double?
    var processCores: Double?
    /// All processes of the run together.
    var totalCPUUsPerMsg: Double?
    var errors: Int
    var load: String

    init(
        system: String, qos: Int, phase: String, pairs: Int, window: Int, rate: Double, seconds: Double, result: PairsPhaseResult,
        process: CPUSpan?, servers: [(name: String, span: CPUSpan)]?, inProcess: Bool, errors: Int, load: String
    ) {
        self.system = system
        self.qos = qos
        self.phase = phase
        self.pairs = pairs
        self.window = phase == "closed" ? window : nil
        self.rate = phase == "open" ? rate : nil
        self.seconds = seconds
        sent = result.sent
        delivered = result.delivered
        deliveredInWindow = result.deliveredInWindow
        deliveredPerS = result.deliveredPerSecond
        let h = result.latencies
        p50Us = Double(h.value(atPercentile: 50)) / 1000
        p99Us = Double(h.value(atPercentile: 99)) / 1000
        p999Us = Double(h.value(atPercentile: 99.9)) / 1000
        maxUs = Double(h.max) / 1000
        maxLagUs = phase == "open" ? Double(result.maxLagNanos) / 1000 : nil
        processCPUUsPerMsg = process.map { $0.microseconds(per: result.delivered) }
        processCores = process?.cores
        serverCPUIsWholeProcess = inProcess
        if inProcess {
            serverCPUUsPerMsg = processCPUUsPerMsg
            serverCores = processCores
            totalCPUUsPerMsg = processCPUUsPerMsg
        } else if let servers, let first = servers.first {
            let cpu = servers.reduce(0) { $0 + $1.span.cpuSeconds }
            let server = CPUSpan(cpuSeconds: cpu, wallSeconds: first.span.wallSeconds)
            serverCPUUsPerMsg = server.microseconds(per: result.delivered)
            serverCores = server.cores
            serverProcessesUsPerMsg = Dictionary(servers.map { ($0.name, $0.span.microseconds(per: result.delivered)) }, uniquingKeysWith: +)
            totalCPUUsPerMsg = process.map { ($0.cpuSeconds + cpu) / Double(max(1, result.delivered)) * 1e6 }
        }
        self.errors = errors
        self.load = load
    }

    enum CodingKeys: String, CodingKey {
        case bench, system, qos, phase, pairs, window, rate, seconds, sent, delivered, errors, load
        case deliveredInWindow = "delivered_in_window"
        case deliveredPerS = "delivered_per_s"
        case p50Us = "p50_us"
        case p99Us = "p99_us"
        case p999Us = "p999_us"
        case maxUs = "max_us"
        case maxLagUs = "max_lag_us"
        case serverCPUUsPerMsg = "server_cpu_us_per_msg"
        case serverCores = "server_cores"
        case serverCPUIsWholeProcess = "server_cpu_is_whole_process"
        case serverProcessesUsPerMsg = "server_processes_us_per_msg"
        case processCPUUsPerMsg = "process_cpu_us_per_msg"
        case processCores = "process_cores"
        case totalCPUUsPerMsg = "total_cpu_us_per_msg"
    }

    func print() {
        row("delivered in the window", String(format: "%.0f msg/s", deliveredPerS))
        row("sent / delivered (drained after the window)", "\(sent) / \(delivered)")
        if delivered > 0 {
            row("latency p50 / p99", String(format: "%.3f / %.3f ms", p50Us / 1000, p99Us / 1000))
            row("latency p99.9 / max", String(format: "%.3f / %.3f ms", p999Us / 1000, maxUs / 1000))
        }
        if let maxLagUs { row("worst sender lag behind its schedule", String(format: "%.3f ms", maxLagUs / 1000)) }
        if serverCPUIsWholeProcess {
            if let cpu = processCPUUsPerMsg, let cores = processCores {
                row("process CPU per delivered msg (servers+generator)", String(format: "%.1f us  (%.2f cores)", cpu, cores))
            }
        } else {
            if let cpu = serverCPUUsPerMsg, let cores = serverCores {
                row(system == "mosquitto" ? "broker CPU per delivered msg" : "servers' CPU per delivered msg (summed)", String(format: "%.1f us  (%.2f cores)", cpu, cores))
            }
            if let processes = serverProcessesUsPerMsg, processes.count > 1 {
                for (name, cpu) in processes.sorted(by: { $0.value > $1.value }) { row("  of which \(name)", String(format: "%.1f us", cpu)) }
            }
            if let cpu = processCPUUsPerMsg, let cores = processCores {
                row("generator CPU per delivered msg", String(format: "%.1f us  (%.2f cores)", cpu, cores))
            }
            if let total = totalCPUUsPerMsg { row("all processes' CPU per delivered msg", String(format: "%.1f us", total)) }
        }
        if processCPUUsPerMsg == nil { Swift.print("  CPU: /proc not readable here") }
        if delivered < sent { Swift.print("  undelivered after the drain: \(sent - delivered)") }
    }

    func printJSON() { BenchReport.printJSON(self, bench: "pairs") }

    private func row(_ name: String, _ value: String) {
        BenchReport.printRow(name, value, nameWidth: 50, valueWidth: 24)
    }
}

/// Errors seen by the clients during a run.
private final class PairsErrors: Sendable {
    private let state = Locked<(count: Int, first: String?)>((0, nil))
    var count: Int { state.withLock { $0.count } }
    var first: String? { state.withLock { $0.first } }

    func add(_ text: String) {
        state.withLock { state in
            state.count += 1
            if state.first == nil { state.first = text }
        }
    }
}

// MARK: - A lean MyIM client

/// A MyIM client for the pairs: the secure channel on a plain pipeline (no async channel), each
/// packet handed to a callback on the event loop, each send a `writeAndFlush` from any thread, so
/// that the generator costs as little as it can next to the servers sharing its process.
final class PairsClient: Sendable {
    static let ackBatch = 32
    static let ackMaxDelayNanos: UInt64 = 5_000_000

    let user: String
    private let channel: any Channel
    private let inbox: PacketInbox
    private let acks = Mutex<(ids: [Int64], since: UInt64)>(([], 0))

    private init(user: String, channel: any Channel, inbox: PacketInbox) {
        self.user = user
        self.channel = channel
        self.inbox = inbox
    }

    /// Connects, completes the handshake with the token sent along with ClientFinished (as the
    /// client library does), and reads 42 then 10 (each within 10 s); without a token, stops
    /// after the handshake.
    static func connect(port: Int, fingerprint: KeyFingerprint, user: String, token: String?, senderCopies: Bool = false) async throws -> PairsClient {
        let inbox = PacketInbox()
        let (channel, established) = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(10))
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let early = token.map { [TokenAuth(token: $0, senderCopies: senderCopies).packet] } ?? []
                    let secure = SecureChannelHandler(
                        client: ClientChannelStateMachine(policy: .pinned(fingerprint), earlyPackets: early), handshakeTimeout: .seconds(10))
                    try channel.pipeline.syncOperations.addHandler(secure)
                    try channel.pipeline.syncOperations.addHandler(PacketInboxHandler(inbox: inbox))
                    return (channel, secure.established)
                }
            }
        let client = PairsClient(user: user, channel: channel, inbox: inbox)
        do {
            _ = try await established.get()
            guard token != nil else { return client }
            let authOK = try await inbox.next(timeout: .seconds(10), who: user, on: channel.eventLoop)
            guard authOK.type == MessageType.authOK.rawValue else {
                throw ValidationError("\(user): expected 42 after token auth, got \(authOK.type): \(authOK.body)")
            }
            let initial = try await inbox.next(timeout: .seconds(10), who: user, on: channel.eventLoop)
            guard initial.type == MessageType.initialState.rawValue else { throw ValidationError("\(user): expected 10 after 42, got \(initial.type)") }
        } catch {
            client.close()
            throw error
        }
        return client
    }

    var eventLoop: any EventLoop { channel.eventLoop }

    /// Why the connection ended, if it ended before ``close()``.
    var failure: String? { inbox.failure }

    /// What receives each packet from now on, on the channel's event loop (it must not block).
    func setHandler(_ body: @escaping @Sendable (Packet) -> Void) { inbox.setHandler(body) }

    /// Writes and flushes `packet`, from any thread.
    func send(_ packet: Packet) { channel.writeAndFlush(packet, promise: nil) }

    func close() {
        inbox.closing()
        channel.close(promise: nil)
    }

    /// Adds `id` to the pending acks; returns a batch to send when it is full or old enough (or `force`).
    func takeAcks(adding id: Int64?, now: UInt64, force: Bool = false) -> [Int64]? {
        acks.withLock { acks in
            if let id {
                if acks.ids.isEmpty { acks.since = now }
                acks.ids.append(id)
            }
            guard !acks.ids.isEmpty, force || acks.ids.count >= Self.ackBatch || now &- acks.since >= Self.ackMaxDelayNanos else { return nil }
            defer { acks.ids.removeAll(keepingCapacity: true) }
            return acks.ids
        }
    }
}

/// What a pairs client's channel received: to the handler once there is one, queued before;
/// a setup step waits for the next one without polling (``next(timeout:who:on:)``).
private final class PacketInbox: Sendable {
    private struct State {
        var queue: [Packet] = []
        var closed = false
        var closing = false
        var failure: String?
        /// A setup step waiting for the next packet.
        var waiter: EventLoopPromise<Packet>?
    }

    private let state = Mutex(State())
    /// Boxed (see ``CallbackBox``): a bare closure in a `Mutex` gets re-wrapped on every read.
    private let handler = Mutex<CallbackBox<Packet>?>(nil)

    var failure: String? { state.withLock { $0.failure } }

    func setHandler(_ body: @escaping @Sendable (Packet) -> Void) { handler.withLock { $0 = CallbackBox(body) } }

    func received(_ packet: Packet) {
        if let handler = handler.withLock({ $0 }) {
            handler.body(packet)
            return
        }
        let waiter = state.withLock { state -> EventLoopPromise<Packet>? in
            guard let waiter = state.waiter else {
                state.queue.append(packet)
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.succeed(packet)
    }

    func closing() { state.withLock { $0.closing = true } }

    func closed(error: (any Error)?) {
        let (waiter, failure) = state.withLock { state in
            if !state.closed, !state.closing, state.failure == nil { state.failure = error.map { "\($0)" } ?? "the endpoint closed the connection" }
            state.closed = true
            defer { state.waiter = nil }
            return (state.waiter, state.failure)
        }
        waiter?.fail(ValidationError("the connection closed\(failure.map { " (\($0))" } ?? "")"))
    }

    /// The next packet while there is no handler, waiting at most `timeout` (setup only).
    func next(timeout: Duration, who: String, on eventLoop: any EventLoop) async throws -> Packet {
        let promise = eventLoop.makePromise(of: Packet.self)
        let (ready, failure) = state.withLock { state -> (Packet?, String?) in
            if !state.queue.isEmpty { return (state.queue.removeFirst(), nil) }
            if state.closed { return (nil, state.failure ?? "closed") }
            precondition(state.waiter == nil, "one setup step waits at a time")
            state.waiter = promise
            return (nil, nil)
        }
        if let ready {
            promise.succeed(ready)
        } else if let failure {
            promise.fail(ValidationError("\(who): the connection closed (\(failure))"))
        } else {
            let timer = eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000)) { [self] in
                let expired = state.withLock { state -> Bool in
                    guard state.waiter?.futureResult === promise.futureResult else { return false }
                    state.waiter = nil
                    return true
                }
                if expired { promise.fail(ValidationError("\(who): nothing came within \(timeout)")) }
            }
            promise.futureResult.whenComplete { _ in timer.cancel() }
        }
        do {
            return try await promise.futureResult.get()
        } catch let error as ValidationError where !error.message.hasPrefix(who) {
            throw ValidationError("\(who): \(error.message)")
        }
    }
}

private final class PacketInboxHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = Packet

    private let inbox: PacketInbox

    init(inbox: PacketInbox) {
        self.inbox = inbox
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        inbox.received(unwrapInboundIn(data))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        inbox.closed(error: error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        inbox.closed(error: nil)
        context.fireChannelInactive()
    }
}
