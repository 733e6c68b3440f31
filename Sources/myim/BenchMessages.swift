import ArgumentParser
import Crypto
import Dispatch
import Foundation
import Logging
import MyIMAuth
import MyIMCenter
import MyIMEndpoint
import MyIMLink
import MyIMPresence
import MyIMSecureChannel
import MyIMTransport
import MyIMWire
import NIOCore
import NIOPosix
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// `myim bench messages`: 1:1 messages end to end (client → endpoint 1 → center → endpoint 2 →
/// client) through an in-process center (SQLite, plain links, in-memory presence) and two
/// endpoints, and the memory an idle authenticated connection costs.
///
/// Everything runs in this process on 127.0.0.1: clients, endpoints and center share its cores,
/// its CPU time and its RSS. Each phase is bounded by `--seconds` plus a bounded drain.
struct BenchMessages: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "messages",
        abstract: "1:1 messages/s and latency through an in-process center and two endpoints; memory per idle connection (build with -c release)."
    )

    @Option(help: "Seconds to spend on each messaging phase.")
    var seconds: Double = 5

    @Option(help: "Sender/receiver pairs (senders on endpoint 1, receivers on endpoint 2).")
    var pairs: Int = 32

    @Option(help: "Phase 1 (closed loop): messages in flight per sender.")
    var window: Int = 8

    @Option(help: "Phase 2 (open loop): offered messages/s in total, paced across the senders.")
    var rate: Double = 2000

    @Option(help: "Idle authenticated connections to hold on endpoint 1 for the memory figure (0 skips, at most 5000).")
    var idle: Int = 1000

    static let domain = "bench.example"
    static let issuer = "myim:bench"
    static let bodyBytes = 64
    static let ackBatch = 32
    static let ackMaxDelayNanos: UInt64 = 5_000_000
    static let drainLimit: Duration = .seconds(10)

    func run() async throws {
        guard seconds > 0, seconds <= 120 else { throw ValidationError("--seconds must be in (0, 120]") }
        guard (1...1000).contains(pairs) else { throw ValidationError("--pairs must be 1...1000") }
        guard (1...256).contains(window) else { throw ValidationError("--window must be 1...256") }
        guard rate > 0, rate <= 1_000_000 else { throw ValidationError("--rate must be in (0, 1000000]") }
        guard (0...5000).contains(idle) else { throw ValidationError("--idle must be 0...5000") }
        #if DEBUG
        print("note: this is a debug build; run `swift build -c release --product myim` and `.build/release/myim bench messages` for real figures\n")
        #endif

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("myim-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }

        let cluster = try await BenchCluster.start(directory: directory, maxConnectionsPerSource: idle + 2 * pairs + 64)
        do {
            try await measure(cluster)
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    private func measure(_ cluster: BenchCluster) async throws {
        print("MyIM 1:1 messaging, in one process: center (SQLite, plain links, in-memory presence) + 2 endpoints (Ed25519) + clients")
        print("\(System.coreCount) cores, \(pairs) pairs (senders on ep1, receivers on ep2), \(Self.bodyBytes)-byte text, QoS 1, "
            + "receivers ack in batches of up to \(Self.ackBatch) (or after \(Self.ackMaxDelayNanos / 1_000_000) ms)")
        print("")

        // Phase 3 runs first, on a fresh process, so that heap freed by the messaging phases does not hide its growth.
        if idle > 0 { try await idlePhase(cluster) }

        // The pairs: receivers first, so that the center knows their user ids when the first message comes.
        var receivers: [BenchClient] = []
        var senders: [BenchClient] = []
        for index in 0..<pairs {
            receivers.append(try await cluster.authenticated("r\(index)@\(Self.domain)", userID: Int64(100_000 + index), endpoint: 1))
        }
        for index in 0..<pairs {
            senders.append(try await cluster.authenticated("s\(index)@\(Self.domain)", userID: Int64(200_000 + index), endpoint: 0))
        }
        let current = CurrentPhase()
        for (index, receiver) in receivers.enumerated() {
            receiver.setHandler(Self.receiverHandler(client: receiver, pair: index, current: current))
        }
        let senderErrors = ErrorLog()
        for sender in senders {
            sender.setHandler { packet in
                if packet.type == MessageType.error.rawValue { senderErrors.add(packet) }
            }
        }
        do {
            try await closedLoop(senders: senders, receivers: receivers, current: current)
            try await openLoop(senders: senders, receivers: receivers, current: current)
        } catch {
            for client in senders + receivers { client.close() }
            throw error
        }
        // Close the clients and let the center see every session close before it is stopped.
        for client in senders + receivers { client.close() }
        let quiet = ContinuousClock.now + .seconds(10)
        while await !cluster.center.onlineUsers.isEmpty, ContinuousClock.now < quiet {
            try await Task.sleep(for: .milliseconds(20))
        }
        if senderErrors.count > 0 { print("errors (20) received by senders: \(senderErrors.count), first: \(senderErrors.first ?? "")") }
        let strays = current.strays
        if strays > 0 { print("messages 18 that did not belong to the phase running: \(strays)") }
    }

    // MARK: - Phase 1: closed loop

    private func closedLoop(senders: [BenchClient], receivers: [BenchClient], current: CurrentPhase) async throws {
        var continuations: [AsyncStream<Void>.Continuation] = []
        var streams: [AsyncStream<Void>] = []
        for _ in senders {
            let (stream, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .unbounded)
            streams.append(stream)
            continuations.append(continuation)
        }
        let start = Self.now()
        let deadline = start + UInt64(seconds * 1e9)
        let run = PhaseRun(phase: 1, start: start, deadline: deadline, tokens: continuations)
        current.set(run)
        let cpuBefore = Self.cpuSeconds()
        let clock = ContinuousClock.now
        let tokens = continuations
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, sender) in senders.enumerated() {
                let stream = streams[index]
                let window = window
                group.addTask {
                    var sequence = 0
                    func send() async throws {
                        let stamp = Self.now()
                        try await sender.send(Self.chat(phase: 1, pair: index, sequence: sequence, stamp: stamp))
                        sequence += 1
                        run.sent()
                    }
                    for _ in 0..<window { try await send() }
                    for await _ in stream {
                        if Self.now() >= deadline { break }
                        try await send()
                    }
                }
            }
            group.addTask {
                try await Task.sleep(for: .nanoseconds(Int64(deadline - start)))
                await run.drain(limit: Self.drainLimit)
                for continuation in tokens { continuation.finish() }
            }
            try await group.waitForAll()
        }
        await run.drain(limit: .seconds(1))
        for receiver in receivers { await Self.flushAcks(receiver) }
        let elapsed = ContinuousClock.now - clock
        let cpuAfter = Self.cpuSeconds()
        let result = run.result()

        print("Phase 1: closed loop, \(pairs) senders x window \(window) (a message is done when its receiver gets 18), \(seconds) s")
        row("delivered in the window (18 at receiver)", String(format: "%.0f msg/s", Double(result.deliveredInWindow) / seconds))
        row("sent / delivered (drained after window)", "\(result.sent) / \(result.delivered)")
        if !result.latencies.isEmpty {
            row("latency p50 / p99 (at saturation)", "\(Self.ms(result.percentile(0.50))) / \(Self.ms(result.percentile(0.99)))")
        }
        if let before = cpuBefore, let after = cpuAfter, result.delivered > 0 {
            let cpu = after - before
            let wall = Self.seconds(elapsed)
            row("process CPU (utime+stime) per delivered msg", String(format: "%.1f us", cpu / Double(result.delivered) * 1e6))
            row("process CPU / wall time", String(format: "%.2f cores of %d", cpu / wall, System.coreCount))
            print("  (CPU of the whole process: clients, both endpoints and the center with SQLite, window + drain)")
        } else {
            print("  process CPU: /proc/self/stat not readable here")
        }
        if result.delivered < result.sent { print("  undelivered after a \(Self.drainLimit) drain: \(result.sent - result.delivered)") }
        print("")
    }

    // MARK: - Phase 2: open loop

    private func openLoop(senders: [BenchClient], receivers: [BenchClient], current: CurrentPhase) async throws {
        let count = senders.count
        let intervalNanos = Double(count) / rate * 1e9
        let start = Self.now() + 50_000_000
        let deadline = start + UInt64(seconds * 1e9)
        let run = PhaseRun(phase: 2, start: start, deadline: deadline, tokens: [])
        current.set(run)
        let lag = Locked<UInt64>(0)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, sender) in senders.enumerated() {
                group.addTask {
                    var sequence = 0
                    var maxLag: UInt64 = 0
                    while true {
                        // Sender i sends at start + (i + k·n)/rate: the senders interleave evenly.
                        let scheduled = start + UInt64((Double(index) + Double(sequence) * Double(count)) / Double(count) * intervalNanos)
                        if scheduled >= deadline { break }
                        let now = Self.now()
                        if now < scheduled { try await Task.sleep(for: .nanoseconds(Int64(scheduled - now))) }
                        maxLag = max(maxLag, Self.now() &- scheduled)
                        // Stamped with the scheduled time: a late send counts against latency (no coordinated omission).
                        try await sender.send(Self.chat(phase: 2, pair: index, sequence: sequence, stamp: scheduled))
                        sequence += 1
                        run.sent()
                    }
                    let senderLag = maxLag
                    lag.withLock { $0 = max($0, senderLag) }
                }
            }
            try await group.waitForAll()
        }
        await run.drain(limit: Self.drainLimit)
        for receiver in receivers { await Self.flushAcks(receiver) }
        let result = run.result()

        print(String(format: "Phase 2: open loop, offered %.0f msg/s in total (%.1f msg/s per sender, paced), %g s", rate, rate / Double(count), seconds))
        row("offered (sent / window)", String(format: "%.0f msg/s", Double(result.sent) / seconds))
        row("delivered in the window (18 at receiver)", String(format: "%.0f msg/s", Double(result.deliveredInWindow) / seconds))
        row("sent / delivered (drained after window)", "\(result.sent) / \(result.delivered)")
        if !result.latencies.isEmpty {
            row("latency p50", Self.ms(result.percentile(0.50)))
            row("latency p99", Self.ms(result.percentile(0.99)))
            row("latency p99.9", Self.ms(result.percentile(0.999)))
            row("latency max", Self.ms(result.latencies.last ?? 0))
        }
        row("worst sender lag behind its schedule", Self.ms(lag.withLock { $0 }))
        print("  (latency: from the scheduled send time to the receiver reading 18; \(result.latencies.count) samples, sorted)")
        if result.delivered < result.sent { print("  undelivered after a \(Self.drainLimit) drain: \(result.sent - result.delivered)") }
        print("")
    }

    // MARK: - Phase 3: idle connections

    private func idlePhase(_ cluster: BenchCluster) async throws {
        let issuer = await TokenIssuer(signingKey: cluster.tokenKey, issuer: Self.issuer)
        var tokens: [String] = []
        for index in 0..<idle {
            let user = "idle\(index)@\(Self.domain)"
            tokens.append(try await issuer.issue(
                address: user, userID: Int64(300_000 + index), sessionID: "idle-\(index)", device: "sha256:bench", now: Date()).token)
        }
        let tokenList = tokens
        try await Task.sleep(for: .milliseconds(200))
        let rss0 = Self.rssBytes()
        // Step 1: TCP connect + secure-channel handshake, no token yet (both sides of each connection live in this process).
        let clients = try await Self.concurrently(count: idle, width: 64) { index in
            try await BenchClient.connect(port: cluster.ports[0], fingerprint: cluster.fingerprints[0], user: "idle\(index)@\(Self.domain)")
        }
        try await Task.sleep(for: .milliseconds(300))
        let rss1 = Self.rssBytes()
        // Step 2: token auth; the endpoint opens a session, the center binds it, presence records it; the client gets 42 and 10.
        _ = try await Self.concurrently(count: idle, width: 64) { index in
            try await clients[index].authenticate(token: tokenList[index])
        }
        let sessions = await cluster.endpoints[0].sessionCount
        try await Task.sleep(for: .milliseconds(300))
        let rss2 = Self.rssBytes()

        print("Phase 3: \(idle) idle authenticated connections on endpoint 1 (client sockets in this same process)")
        if let rss0, let rss1, let rss2 {
            let k = Double(idle)
            row("VmRSS before / handshaken / authenticated", "\(rss0 / 1024) / \(rss1 / 1024) / \(rss2 / 1024) KiB")
            row("A: connect+handshake, both sides", String(format: "%.0f B/conn", Double(Int(rss1) - Int(rss0)) / k))
            row("B: token auth (endpoint session + center)", String(format: "%.0f B/conn", Double(Int(rss2) - Int(rss1)) / k))
            row("endpoint-side estimate A/2 + B", String(format: "%.0f B/conn", (Double(Int(rss1) - Int(rss0)) / 2 + Double(Int(rss2) - Int(rss1))) / k))
            row("total growth A + B (server + client)", String(format: "%.0f B/conn", Double(Int(rss2) - Int(rss0)) / k))
            print("  (A holds a client and a server channel per connection and is halved as an estimate of the server's half;")
            print("   B is server-side state (endpoint session, center session, presence) plus the client reading 42 and 10;")
            print("   the center's share is in B: in a deployment it sits in another process)")
        } else {
            print("  VmRSS: /proc/self/status not readable here")
        }
        row("sessions held by endpoint 1", "\(sessions)")
        print("")
        for client in clients { client.close() }
        let deadline = ContinuousClock.now + .seconds(10)
        while await cluster.endpoints[0].sessionCount > 0, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    // MARK: - Clients' behaviour

    /// A receiver: records each 18's latency against the phase it belongs to, releases its sender's
    /// window in phase 1, and acks in batches.
    private static func receiverHandler(client: BenchClient, pair: Int, current: CurrentPhase) -> @Sendable (Packet) async -> Void {
        { packet in
            guard packet.type == MessageType.chatDelivery.rawValue else { return }
            let now = Self.now()
            guard let delivery = try? ChatDelivery(packet: packet), case .text(let text) = delivery.content else { return }
            let fields = text.split(separator: ";", maxSplits: 2)
            if fields.count >= 2, let phase = Int(fields[0]), let stamp = UInt64(fields[1]) {
                current.record(phase: phase, pair: pair, latency: now &- stamp, at: now)
            } else {
                current.stray()
            }
            if let batch = client.takeAcks(adding: delivery.serverMessageID, now: now) {
                try? await client.send(DeliveryAck(ids: batch).packet)
            }
        }
    }

    private static func flushAcks(_ client: BenchClient) async {
        if let batch = client.takeAcks(adding: nil, now: Self.now(), force: true) {
            try? await client.send(DeliveryAck(ids: batch).packet)
        }
    }

    /// 6 to the pair's receiver: the text is `<phase>;<stamp ns>;` padded to 64 bytes.
    private static func chat(phase: Int, pair: Int, sequence: Int, stamp: UInt64) -> Packet {
        var text = "\(phase);\(stamp);"
        text += String(repeating: "x", count: max(0, bodyBytes - text.utf8.count))
        return Chat(target: .user("r\(pair)@\(domain)"), content: .text(text), clientMessageID: "p\(phase)-\(pair)-\(sequence)").packet
    }

    // MARK: - Helpers

    private func row(_ name: String, _ value: String) {
        print("  " + name.padding(toLength: 46, withPad: " ", startingAt: 0) + String(repeating: " ", count: max(0, 20 - value.count)) + value)
    }

    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    static func ms(_ nanos: UInt64) -> String { String(format: "%.2f ms", Double(nanos) / 1e6) }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    /// `body(0..<count)` with at most `width` running at once; the results in order.
    static func concurrently<T: Sendable>(count: Int, width: Int, _ body: @escaping @Sendable (Int) async throws -> T) async throws -> [T] {
        var results = [T?](repeating: nil, count: count)
        try await withThrowingTaskGroup(of: (Int, T).self) { group in
            var next = 0
            while next < min(width, count) {
                let index = next
                group.addTask { (index, try await body(index)) }
                next += 1
            }
            while let (index, value) = try await group.next() {
                results[index] = value
                if next < count {
                    let index = next
                    group.addTask { (index, try await body(index)) }
                    next += 1
                }
            }
        }
        return results.map { $0! }
    }

    /// VmRSS from /proc/self/status, in bytes.
    static func rssBytes() -> UInt64? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2, let kib = UInt64(parts[1]) { return kib * 1024 }
        }
        return nil
    }

    /// utime + stime from /proc/self/stat, in seconds.
    static func cpuSeconds() -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        // After "pid (comm)", fields start at 3 (state); utime and stime are fields 14 and 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count > 12, let utime = Double(fields[11]), let stime = Double(fields[12]) else { return nil }
        #if canImport(Glibc)
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        #else
        let ticks = 100.0
        #endif
        return (utime + stime) / (ticks > 0 ? ticks : 100)
    }
}

// MARK: - The in-process cluster

/// A center and two endpoints on 127.0.0.1, as `ClusterTests` starts them, with in-memory presence.
struct BenchCluster {
    let tokenKey: Curve25519.Signing.PrivateKey
    let center: Center
    let centerTask: Task<Void, any Error>
    let endpoints: [Endpoint]
    let endpointTasks: [Task<Void, any Error>]
    let ports: [Int]
    let fingerprints: [KeyFingerprint]

    static func start(directory: URL, maxConnectionsPerSource: Int) async throws -> BenchCluster {
        var logger = Logger(label: "myim.bench")
        logger.logLevel = .warning
        let domain = BenchMessages.domain
        let tokenKey = Curve25519.Signing.PrivateKey()
        let presence = InMemoryPresenceStore(domain: domain)
        let centerConfiguration = CenterConfiguration(
            node: "bench-center", domain: domain, host: "127.0.0.1", port: 0, protection: .plain,
            databasePath: directory.appendingPathComponent("center.sqlite").path, endpoints: ["bench-ep1", "bench-ep2"],
            presence: presence, directory: StaticDirectory([:]))  // Every bench user signs in before it is sent to.
        let center = try Center(configuration: centerConfiguration, logger: logger)
        let centerListener = try await center.bind()
        let centerPort = centerListener.channel.localAddress?.port ?? 0
        let centerTask = Task { try await center.serve(centerListener) }

        var endpoints: [Endpoint] = []
        var tasks: [Task<Void, any Error>] = []
        var ports: [Int] = []
        var fingerprints: [KeyFingerprint] = []
        for node in ["bench-ep1", "bench-ep2"] {
            let identity = ServerIdentityKey.generateEd25519()
            var configuration = EndpointConfiguration(
                node: node, domain: domain, host: "127.0.0.1", port: 0, identity: identity, tokenPublicKey: tokenKey.publicKey,
                issuer: BenchMessages.issuer, centerHost: "127.0.0.1", centerPort: centerPort, centerName: "bench-center",
                linkProtection: .plain, presence: presence)
            // Every client comes from 127.0.0.1: lift the per-source limit above what the bench opens.
            configuration.maxConnectionsPerSource = maxConnectionsPerSource
            let endpoint = await Endpoint(configuration: configuration, logger: logger)
            let listener = try await endpoint.bind()
            ports.append(listener.channel.localAddress?.port ?? 0)
            fingerprints.append(identity.publicKey.fingerprint)
            endpoints.append(endpoint)
            tasks.append(Task { try await endpoint.serve(listener) })
        }
        let cluster = BenchCluster(
            tokenKey: tokenKey, center: center, centerTask: centerTask, endpoints: endpoints, endpointTasks: tasks, ports: ports,
            fingerprints: fingerprints)
        let deadline = ContinuousClock.now + .seconds(10)
        for endpoint in endpoints {
            while await !endpoint.isLinkUp {
                guard ContinuousClock.now < deadline else {
                    await cluster.stop()
                    throw ValidationError("the endpoints' links to the center did not come up within 10 s")
                }
                try await Task.sleep(for: .milliseconds(10))
            }
        }
        return cluster
    }

    /// A client of endpoint `index`, authenticated as `user` (42 and 10 read).
    func authenticated(_ user: String, userID: Int64, endpoint index: Int) async throws -> BenchClient {
        let issuer = await TokenIssuer(signingKey: tokenKey, issuer: BenchMessages.issuer)
        let token = try await issuer.issue(address: user, userID: userID, sessionID: UUID().uuidString, device: "sha256:bench", now: Date()).token
        let client = try await BenchClient.connect(port: ports[index], fingerprint: fingerprints[index], user: user, token: token)
        do {
            try await client.sessionOpened()
        } catch {
            client.close()
            throw error
        }
        return client
    }

    /// Stops the endpoints and the center, waiting at most a few seconds for each.
    func stop() async {
        for (endpoint, task) in zip(endpoints, endpointTasks) {
            try? await endpoint.shutdown()
            task.cancel()
            await waitAtMost(.seconds(5)) { _ = await task.result }
        }
        centerTask.cancel()
        await waitAtMost(.seconds(5)) { _ = await centerTask.result }
    }
}

/// Runs `body` but returns after `limit` even if it has not finished (it is then left behind).
func waitAtMost(_ limit: Duration, _ body: @escaping @Sendable () async -> Void) async {
    let done = Locked<CheckedContinuation<Void, Never>?>(nil)
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        done.withLock { $0 = continuation }
        Task {
            await body()
            done.withLock { $0.take() }?.resume()
        }
        Task {
            try? await Task.sleep(for: limit)
            done.withLock { $0.take() }?.resume()
        }
    }
}

/// A value behind a lock, shareable between tasks.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R: Sendable>(_ body: (inout sending Value) -> sending R) -> R { mutex.withLock(body) }
}

// MARK: - A client

/// One client on the secure channel: a reader task hands every packet to the current handler,
/// or queues it while there is none (the auth replies).
final class BenchClient: Sendable {
    let user: String
    private let channel: any Channel
    private let writer = Mutex<NIOAsyncChannelOutboundWriter<Packet>?>(nil)
    private let state = Mutex<(queue: [Packet], closed: Bool)>(([], false))
    /// Boxed: a bare closure read out of a `Mutex` (`inout`, generic storage) is re-abstracted and
    /// written back wrapped in two more thunks on every read, so each packet would cost more than the last.
    private let handler = Mutex<PacketHandlerBox?>(nil)
    private let acks = Mutex<(ids: [Int64], since: UInt64)>(([], 0))

    private init(user: String, channel: any Channel) {
        self.user = user
        self.channel = channel
    }

    /// Connects and completes the handshake. With `token`, 41 goes with ClientFinished, as the
    /// client library sends it (then ``sessionOpened()`` reads 42 and 10); without, no token is
    /// sent yet (``authenticate(token:)`` sends one).
    static func connect(port: Int, fingerprint: KeyFingerprint, user: String, token: String? = nil) async throws -> BenchClient {
        let early = token.map { [TokenAuth(token: $0, senderCopies: false).packet] } ?? []  // As the reference client.
        let (connection, _) = try await SecureClient.connect(host: "127.0.0.1", port: port, policy: .pinned(fingerprint), earlyPackets: early)
        let client = BenchClient(user: user, channel: connection.channel.channel)
        await withCheckedContinuation { (ready: CheckedContinuation<Void, Never>) in
            Task { await client.pump(connection.channel, ready: ready) }
        }
        return client
    }

    /// Sends 41 and waits (at most 10 s) for 42 then 10.
    func authenticate(token: String) async throws {
        try await send(TokenAuth(token: token, senderCopies: false).packet)  // As the reference client.
        try await sessionOpened()
    }

    /// Waits (at most 10 s) for 42 then 10.
    func sessionOpened() async throws {
        let authOK = try await next(timeout: .seconds(10))
        guard authOK.type == MessageType.authOK.rawValue else {
            throw ValidationError("\(user): expected 42 after token auth, got \(authOK.type): \(authOK.body)")
        }
        let initial = try await next(timeout: .seconds(10))
        guard initial.type == MessageType.initialState.rawValue else {
            throw ValidationError("\(user): expected 10 after 42, got \(initial.type)")
        }
    }

    func setHandler(_ body: @escaping @Sendable (Packet) async -> Void) {
        handler.withLock { $0 = PacketHandlerBox(body) }
    }

    func send(_ packet: Packet) async throws {
        guard let writer = writer.withLock({ $0 }) else { throw ValidationError("\(user): the connection is closed") }
        try await writer.write(packet)
    }

    func close() { channel.close(promise: nil) }

    /// Adds `id` to the pending acks; returns a batch to send when it is full or old enough (or `force`).
    func takeAcks(adding id: Int64?, now: UInt64, force: Bool = false) -> [Int64]? {
        acks.withLock { acks in
            if let id {
                if acks.ids.isEmpty { acks.since = now }
                acks.ids.append(id)
            }
            guard !acks.ids.isEmpty,
                  force || acks.ids.count >= BenchMessages.ackBatch || now &- acks.since >= BenchMessages.ackMaxDelayNanos
            else { return nil }
            defer { acks.ids.removeAll(keepingCapacity: true) }
            return acks.ids
        }
    }

    private func next(timeout: Duration) async throws -> Packet {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let (packet, closed) = state.withLock { state in
                (state.queue.isEmpty ? nil : state.queue.removeFirst(), state.closed)
            }
            if let packet { return packet }
            if closed { throw ValidationError("\(user): the endpoint closed the connection") }
            try await Task.sleep(for: .milliseconds(2))
        }
        throw ValidationError("\(user): nothing came within \(timeout)")
    }

    private func pump(_ connection: NIOAsyncChannel<Packet, Packet>, ready: CheckedContinuation<Void, Never>) async {
        let resumed = Mutex(false)
        do {
            try await connection.executeThenClose { inbound, outbound in
                writer.withLock { $0 = outbound }
                resumed.withLock { $0 = true }
                ready.resume()
                for try await packet in inbound {
                    if let handler = handler.withLock({ $0 }) {
                        await handler.body(packet)
                    } else {
                        state.withLock { $0.queue.append(packet) }
                    }
                }
            }
        } catch {}
        writer.withLock { $0 = nil }
        state.withLock { $0.closed = true }
        if !resumed.withLock({ $0 }) { ready.resume() }
    }
}

/// A packet handler behind a class reference, so that reading it from a lock does not re-wrap it.
final class PacketHandlerBox: Sendable {
    let body: @Sendable (Packet) async -> Void

    init(_ body: @escaping @Sendable (Packet) async -> Void) {
        self.body = body
    }
}

// MARK: - Shared measurement state

/// What one phase counted.
private struct PhaseResult {
    var sent = 0
    var delivered = 0
    var deliveredInWindow = 0
    /// Sorted, in nanoseconds.
    var latencies: [UInt64] = []

    func percentile(_ p: Double) -> UInt64 {
        guard !latencies.isEmpty else { return 0 }
        let rank = Int((p * Double(latencies.count)).rounded(.up))
        return latencies[min(latencies.count - 1, max(0, rank - 1))]
    }
}

private final class PhaseRun: Sendable {
    let phase: Int
    let start: UInt64
    let deadline: UInt64
    private let tokens: [AsyncStream<Void>.Continuation]
    private let state = Mutex(PhaseResult())

    init(phase: Int, start: UInt64, deadline: UInt64, tokens: [AsyncStream<Void>.Continuation]) {
        self.phase = phase
        self.start = start
        self.deadline = deadline
        self.tokens = tokens
    }

    func sent() { state.withLock { $0.sent += 1 } }

    func record(pair: Int, latency: UInt64, at now: UInt64) {
        state.withLock { state in
            state.delivered += 1
            if now <= deadline { state.deliveredInWindow += 1 }
            state.latencies.append(latency)
        }
        if pair < tokens.count { tokens[pair].yield() }
    }

    /// Waits until everything sent was delivered, or `limit` passed.
    func drain(limit: Duration) async {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if state.withLock({ $0.delivered >= $0.sent }) { return }
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    func result() -> PhaseResult {
        var result = state.withLock { $0 }
        result.latencies.sort()
        return result
    }
}

/// The phase running now, where receivers record what they get.
private final class CurrentPhase: Sendable {
    private let run = Mutex<PhaseRun?>(nil)
    private let strayCount = Mutex(0)

    var strays: Int { strayCount.withLock { $0 } }

    func set(_ phase: PhaseRun) { run.withLock { $0 = phase } }

    func record(phase: Int, pair: Int, latency: UInt64, at now: UInt64) {
        guard let current = run.withLock({ $0 }), current.phase == phase else { return stray() }
        current.record(pair: pair, latency: latency, at: now)
    }

    func stray() { strayCount.withLock { $0 += 1 } }
}

/// Error packets (20) the senders received.
private final class ErrorLog: Sendable {
    private let state = Mutex<(count: Int, first: String?)>((0, nil))
    var count: Int { state.withLock { $0.count } }
    var first: String? { state.withLock { $0.first } }

    func add(_ packet: Packet) {
        let text = (try? ErrorMessage(packet: packet)).map { "\($0.code): \($0.data)" } ?? "\(packet.body)"
        state.withLock { state in
            state.count += 1
            if state.first == nil { state.first = text }
        }
    }
}
