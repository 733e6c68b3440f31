import Foundation
import MyIMBench
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// The load generator's own logic (`myim bench pairs`): latency histogram, pacing schedule,
/// /proc stat parsing, the MQTT codec, the generator on an in-memory loopback; and smoke runs of
/// the real command at tiny scale. Nothing here asserts a speed.
@Suite("Bench logic", .timeLimit(.minutes(2)))
struct BenchLogicTests {
    // MARK: - Latency histogram

    @Test func percentilesOfOneToAThousand() {
        var histogram = LatencyHistogram()
        for value in (1...1000).reversed() { histogram.record(UInt64(value)) }
        #expect(histogram.count == 1000)
        #expect(histogram.min == 1)
        #expect(histogram.max == 1000)
        // Below 2048 the histogram is exact: the value at p is the ⌈p·n⌉-th smallest.
        #expect(histogram.value(atPercentile: 50) == 500)
        #expect(histogram.value(atPercentile: 99) == 990)
        #expect(histogram.value(atPercentile: 99.9) == 999)
        #expect(histogram.value(atPercentile: 100) == 1000)
        #expect(histogram.value(atPercentile: 0.1) == 1)
        #expect(abs(histogram.mean - 500.5) < 0.01)
    }

    @Test func emptyHistogramReportsZeros() {
        let histogram = LatencyHistogram()
        #expect(histogram.count == 0)
        #expect(histogram.value(atPercentile: 99) == 0)
        #expect(histogram.max == 0)
        #expect(histogram.min == 0)
    }

    @Test func largeValuesKeepThreeSignificantDigits() {
        var histogram = LatencyHistogram()
        let values: [UInt64] = [123_456, 7_654_321, 987_654_321, 12_345_678_901]
        for value in values { histogram.record(value) }
        for (index, value) in values.enumerated() {
            let percentile = Double(index + 1) / Double(values.count) * 100
            let reported = histogram.value(atPercentile: percentile)
            #expect(abs(Double(reported) - Double(value)) <= Double(value) * 0.001, "p\(percentile): \(reported) for \(value)")
        }
    }

    @Test func valuesAboveTheRangeAreClampedAndCounted() {
        var histogram = LatencyHistogram()
        histogram.record(5)
        histogram.record(LatencyHistogram.highest * 3)
        #expect(histogram.clamped == 1)
        #expect(histogram.count == 2)
        #expect(Double(histogram.max) >= Double(LatencyHistogram.highest) * 0.999)
    }

    @Test func histogramsAdd() {
        var a = LatencyHistogram()
        var b = LatencyHistogram()
        for value in 1...500 { a.record(UInt64(value)) }
        for value in 501...1000 { b.record(UInt64(value)) }
        a.add(b)
        #expect(a.count == 1000)
        #expect(a.value(atPercentile: 50) == 500)
        #expect(a.value(atPercentile: 99) == 990)
    }

    // MARK: - Pacing

    @Test func senderIAtStartPlusIPlusKNOverRate() {
        let schedule = PacingSchedule(start: 1_000_000, seconds: 1, senders: 4, rate: 1000)
        #expect(schedule.time(sender: 0, k: 0) == 1_000_000)
        #expect(schedule.time(sender: 1, k: 0) == 2_000_000)
        // (1 + 2·4) / 1000 s = 9 ms after the start.
        #expect(schedule.time(sender: 1, k: 2) == 10_000_000)
        #expect(schedule.time(sender: 3, k: 249) == 1_000_000 + 999_000_000)
        #expect(!schedule.isInside(sender: 0, k: 250))
        #expect(schedule.deadline == 1_001_000_000)
    }

    @Test func mergedScheduleIsEvenAndCountsTheRate() {
        let schedule = PacingSchedule(start: 0, seconds: 1, senders: 3, rate: 10)
        #expect((0..<3).map { schedule.count(sender: $0) } == [4, 3, 3])
        var times: [UInt64] = []
        for sender in 0..<3 {
            for k in 0..<schedule.count(sender: sender) { times.append(schedule.time(sender: sender, k: k)) }
        }
        times.sort()
        #expect(times.count == 10)
        #expect(zip(times, times.dropFirst()).allSatisfy { $1 - $0 == 100_000_000 })

        let big = PacingSchedule(start: 5, seconds: 2.5, senders: 32, rate: 10_000)
        #expect((0..<32).reduce(0) { $0 + big.count(sender: $1) } == 25_000)
        for sender in [0, 7, 31] {
            let count = big.count(sender: sender)
            #expect(big.isInside(sender: sender, k: count - 1))
            #expect(!big.isInside(sender: sender, k: count))
        }
    }

    // MARK: - /proc

    @Test func procStatParsesAfterTheLastParenthesis() throws {
        // A comm with spaces and parentheses; utime 250, stime 75, rss 2048 pages.
        let line = "4242 (my (odd) bench) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 3 4 20 0 9 0 12345 123456789 2048 "
            + "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
        let stat = try #require(ProcStat.parse(line))
        #expect(stat == ProcStat(utimeTicks: 250, stimeTicks: 75, rssPages: 2048))
        #expect(abs(stat.cpuSeconds - 325 / ProcStat.ticksPerSecond) < 1e-9)
        #expect(stat.rssBytes == 2048 * ProcStat.pageSize)

        #expect(ProcStat.parse("") == nil)
        #expect(ProcStat.parse("4242 (x) S 1 2 3") == nil)
        #expect(ProcStat.parse("4242 (x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 ten 75 3 4 20 0 9 0 12345 123456789 2048 1") == nil)
    }

    @Test func kernelMemoryParsesSockstatAndMeminfo() throws {
        let sockstat = "sockets: used 20\nTCP: inuse 12 orphan 0 tw 3 alloc 14 mem 450\nUDP: inuse 0 mem 7\n"
        let meminfo = "MemTotal:       24590000 kB\nSlab:             125412 kB\nSReclaimable:     100892 kB\n"
        let memory = try #require(KernelMemory.parse(sockstat: sockstat, meminfo: meminfo, pageSize: 4096))
        #expect(memory == KernelMemory(tcpSocketsInUse: 12, tcpBufferBytes: 450 * 4096, slabBytes: 125_412 * 1024))
        // UDP's mem is not TCP's; a file without its line is no reading.
        #expect(KernelMemory.parse(sockstat: "UDP: inuse 0 mem 7\n", meminfo: meminfo) == nil)
        #expect(KernelMemory.parse(sockstat: sockstat, meminfo: "MemTotal: 1 kB\n") == nil)
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/proc/self/stat")))
    func procStatReadsThisProcess() throws {
        let stat = try #require(ProcStat.read())
        #expect(stat.rssPages > 0)
        let meter = CPUMeter()
        var spin: UInt64 = 0
        for value in 0..<2_000_000 { spin &+= UInt64(value) &* 31 }
        #expect(spin != 1)
        let span = try #require(meter.span())
        #expect(span.cpuSeconds >= 0)
        #expect(span.wallSeconds > 0)
    }

    // MARK: - MQTT codec

    private static func encoded(_ packet: MQTTPacket) throws -> ByteBuffer {
        var buffer = ByteBuffer()
        try packet.encode(into: &buffer)
        return buffer
    }

    @Test func mqttPacketsRoundTrip() throws {
        let packets: [MQTTPacket] = [
            .connect(clientID: "s17", keepAlive: 30, cleanSession: true),
            .connect(clientID: "", keepAlive: 0, cleanSession: false),
            .connack(sessionPresent: false, returnCode: 0),
            .connack(sessionPresent: true, returnCode: 5),
            .publish(MQTTPublish(topic: "r3", payload: ByteBuffer(string: String(repeating: "x", count: 64)))),
            .publish(MQTTPublish(topic: "r/é", payload: ByteBuffer(), retain: true)),
            .publish(MQTTPublish(topic: "big", payload: ByteBuffer(repeating: 7, count: 20_000), qos: 1, packetID: 9, dup: true)),
            .subscribe(packetID: 1, subscriptions: [MQTTSubscription(topic: "r0"), MQTTSubscription(topic: "a/+/b", qos: 2)]),
            .suback(packetID: 1, returnCodes: [0, 0x80]),
            .pingreq, .pingresp, .disconnect,
        ]
        var stream = ByteBuffer()
        for packet in packets {
            var one = try Self.encoded(packet)
            stream.writeImmutableBuffer(one)
            #expect(try MQTTPacket.decode(from: &one, maxPacketSize: 64 * 1024) == packet)
            #expect(one.readableBytes == 0)
        }
        // All in one stream, in order.
        var decoded: [MQTTPacket] = []
        while let packet = try MQTTPacket.decode(from: &stream, maxPacketSize: 64 * 1024) { decoded.append(packet) }
        #expect(decoded == packets)
        #expect(stream.readableBytes == 0)
    }

    @Test func mqttEncodingMatchesTheSpecificationBytes() throws {
        #expect(Array(try Self.encoded(.pingreq).readableBytesView) == [0xC0, 0x00])
        #expect(Array(try Self.encoded(.disconnect).readableBytesView) == [0xE0, 0x00])
        // CONNECT, client id "a", keep alive 30, clean session (MQTT 3.1.1 §3.1).
        #expect(Array(try Self.encoded(.connect(clientID: "a", keepAlive: 30, cleanSession: true)).readableBytesView)
            == [0x10, 0x0D, 0x00, 0x04, 0x4D, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x1E, 0x00, 0x01, 0x61])
        #expect(Array(try Self.encoded(.subscribe(packetID: 1, subscriptions: [MQTTSubscription(topic: "r0")])).readableBytesView)
            == [0x82, 0x07, 0x00, 0x01, 0x00, 0x02, 0x72, 0x30, 0x00])
        // Remaining length 321 = 0xC1 0x02 (§2.2.3).
        let publish = try Self.encoded(.publish(MQTTPublish(topic: "t", payload: ByteBuffer(repeating: 0, count: 318))))
        #expect(Array(publish.readableBytesView.prefix(3)) == [0x30, 0xC1, 0x02])
        #expect(throws: MQTTError.unencodable("a packet identifier goes with QoS 1 or 2, and only with them")) {
            _ = try Self.encoded(.publish(MQTTPublish(topic: "t", payload: ByteBuffer(), qos: 1)))
        }
    }

    @Test func mqttDecoderWaitsForWholePacketsWithoutConsuming() throws {
        let whole = try Self.encoded(.publish(MQTTPublish(topic: "r1", payload: ByteBuffer(repeating: 0x61, count: 300))))
        var partial = ByteBuffer()
        for (index, byte) in whole.readableBytesView.enumerated() {
            let complete = index == whole.readableBytes - 1
            partial.writeInteger(byte)
            let before = partial.readableBytes
            let packet = try MQTTPacket.decode(from: &partial, maxPacketSize: 1024)
            if complete {
                #expect(packet != nil)
                #expect(partial.readableBytes == 0)
            } else {
                #expect(packet == nil)
                #expect(partial.readableBytes == before)
            }
        }
    }

    @Test func mqttDecoderRefusesOversizedAndMalformedLengthsAtOnce() throws {
        // PUBLISH announcing 1,000,000 bytes (0xC0 0x84 0x3D), none of them sent: refused from the header alone.
        var oversized = ByteBuffer(bytes: [0x30, 0xC0, 0x84, 0x3D])
        #expect(throws: MQTTError.packetTooLarge(length: 1_000_000, limit: 65536)) {
            _ = try MQTTPacket.decode(from: &oversized, maxPacketSize: 65536)
        }
        // The largest length MQTT can say, against a small limit.
        var largest = ByteBuffer(bytes: [0x30, 0xFF, 0xFF, 0xFF, 0x7F])
        #expect(throws: MQTTError.packetTooLarge(length: MQTTPacket.maxRemainingLength, limit: 1024)) {
            _ = try MQTTPacket.decode(from: &largest, maxPacketSize: 1024)
        }
        // A fifth length byte.
        var fiveBytes = ByteBuffer(bytes: [0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])
        #expect(throws: MQTTError.malformedRemainingLength) {
            _ = try MQTTPacket.decode(from: &fiveBytes, maxPacketSize: 1024)
        }
        var reserved = ByteBuffer(bytes: [0x00, 0x00])
        #expect(throws: MQTTError.unsupportedType(0)) {
            _ = try MQTTPacket.decode(from: &reserved, maxPacketSize: 1024)
        }
        // SUBSCRIBE with flags 0 instead of 2; a string running past the packet.
        var badFlags = ByteBuffer(bytes: [0x80, 0x07, 0x00, 0x01, 0x00, 0x02, 0x72, 0x30, 0x00])
        #expect(throws: MQTTError.self) { _ = try MQTTPacket.decode(from: &badFlags, maxPacketSize: 1024) }
        var shortString = ByteBuffer(bytes: [0x30, 0x03, 0x00, 0x09, 0x72])
        #expect(throws: MQTTError.self) { _ = try MQTTPacket.decode(from: &shortString, maxPacketSize: 1024) }
    }

    // MARK: - Payload and generator

    @Test func payloadCarriesPhaseAndStamp() throws {
        let text = PairsPayload.text(phase: 2, stamp: 123_456_789_012, bytes: 64)
        #expect(text.utf8.count == 64)
        let parsed = try #require(PairsPayload.parse(text.utf8))
        #expect(parsed.phase == 2)
        #expect(parsed.stamp == 123_456_789_012)
        #expect(PairsPayload.parse("hello".utf8) == nil)
        #expect(PairsPayload.parse("1;".utf8) == nil)
        #expect(PairsPayload.parse(";5;".utf8) == nil)
    }

    /// The generator over an in-memory loopback: each send reaches the receiver through a hop to
    /// another event loop, as a message to another connection would.
    @Test func generatorRunsBothLoopsOnALoopback() async throws {
        let recorder = PairsRecorder()
        let loops = Array(MultiThreadedEventLoopGroup.singleton.makeIterator())
        let generator = PairsGenerator(pairs: 3, drainLimit: .seconds(2), loops: loops, recorder: recorder) { pair, _, _, text in
            let bytes = Array(text.utf8)
            loops[(pair + 1) % loops.count].execute { recorder.receive(pair: pair, payload: bytes, now: BenchClock.now()) }
        }
        let closed = try await generator.closedLoop(window: 2, seconds: 0.3)
        #expect(closed.sent > 6)
        #expect(closed.delivered == closed.sent)
        #expect(closed.latencies.count == UInt64(closed.delivered))
        #expect(closed.deliveredInWindow > 0)
        #expect(abs(closed.windowSeconds - 0.3) < 1e-6)

        let open = try await generator.openLoop(rate: 200, seconds: 0.3)
        #expect(open.sent == 60)
        #expect(open.delivered == 60)
        #expect(open.latencies.count == 60)
        #expect(recorder.strays == 0)
        // A message of a phase that is over counts as a stray, not a delivery.
        recorder.receive(pair: 0, payload: PairsPayload.text(phase: PairsGenerator.closedPhase, stamp: 1, bytes: 64).utf8, now: 2)
        #expect(recorder.strays == 1)
    }

    // MARK: - Smoke runs

    /// What `myim bench <arguments>` printed (the debug binary beside the tests), once it has
    /// exited with status 0 within `limit`.
    private static func runBench(_ arguments: [String], limit: Duration = .seconds(60)) async throws -> String {
        let binary = try MyIMExecutable.locate()
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("bench-\(arguments[0])-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        let child = try ChildProcess(name: "myim bench \(arguments[0])", executable: binary, arguments: ["bench"] + arguments, logPath: log)
        guard await child.waitForExit(timeout: limit) else {
            await child.stop()
            throw ProcessTestError("myim bench \(arguments[0]) did not end within \(limit):\n\(child.output)")
        }
        let output = child.output
        #expect(child.terminationStatus == 0, "\(output)")
        return output
    }

    /// The JSON objects of the lines starting with `{"bench":"<name>"`.
    private static func jsonLines(_ output: String, bench name: String) -> [[String: Any]] {
        output.split(separator: "\n").filter { $0.hasPrefix("{\"bench\":\"\(name)\"") }.compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }
    }

    // MARK: - Smoke runs of `myim bench pairs`

    /// The JSON lines of a tiny `myim bench pairs` run.
    private static func runPairs(_ arguments: [String]) async throws -> [[String: Any]] {
        let output = try await runBench(["pairs", "--seconds", "1", "--pairs", "2", "--window", "2", "--rate", "200", "--json"] + arguments)
        #expect(!output.contains("errors:"), "\(output)")
        return jsonLines(output, bench: "pairs")
    }

    private static func checkPhases(_ phases: [[String: Any]], system: String, expected: [String]) {
        #expect(phases.compactMap { $0["phase"] as? String } == expected)
        for phase in phases {
            #expect(phase["system"] as? String == system)
            #expect((phase["delivered"] as? Int ?? 0) > 0, "\(phase)")
            #expect(phase["delivered"] as? Int == phase["sent"] as? Int, "\(phase)")
            #expect(phase["errors"] as? Int == 0, "\(phase)")
            #expect((phase["p99_us"] as? Double ?? 0) > 0, "\(phase)")
        }
    }

    /// MyIM's servers as processes (redis-server, login center, center, two endpoints), with
    /// idle connections held through the phases: every server's CPU is read apart.
    @Test func pairsSmokeMyIM() async throws {
        let phases = try await Self.runPairs(["--idle", "4"])
        Self.checkPhases(phases, system: "myim", expected: ["closed", "open"])
        for phase in phases {
            #expect(phase["server_cpu_is_whole_process"] as? Bool == false)
            let processes = try #require(phase["server_processes_us_per_msg"] as? [String: Double], "\(phase)")
            #expect(Set(processes.keys) == ["redis", "login", "bench-center", "bench-ep1", "bench-ep2"])
            // The endpoints and the center did work for every message.
            for name in ["bench-center", "bench-ep1", "bench-ep2"] { #expect((processes[name] ?? 0) > 0, "\(name): \(phase)") }
        }
    }

    /// `--all-in-one`: one server process (`myim serve --all-in-one`), every message delivered,
    /// its CPU read from that process.
    @Test func pairsSmokeMyIMAllInOne() async throws {
        let phases = try await Self.runPairs(["--all-in-one", "--qos", "0"])
        Self.checkPhases(phases, system: "myim", expected: ["closed", "open"])
        for phase in phases {
            let processes = try #require(phase["server_processes_us_per_msg"] as? [String: Double], "\(phase)")
            #expect(Array(processes.keys) == ["all-in-one"] && (processes["all-in-one"] ?? 0) > 0, "\(phase)")
        }
    }

    @Test func pairsSmokeMyIMInProcess() async throws {
        let phases = try await Self.runPairs(["--in-process"])
        Self.checkPhases(phases, system: "myim", expected: ["closed", "open"])
        #expect(phases.allSatisfy { $0["server_cpu_is_whole_process"] as? Bool == true })
    }

    @Test func pairsSmokeMyIMBestEffort() async throws {
        let phases = try await Self.runPairs(["--qos", "0", "--phases", "open"])
        Self.checkPhases(phases, system: "myim", expected: ["open"])
    }

    @Test(.enabled(if: MosquittoServer.locate() != nil, "mosquitto is not installed (apt-get install -y mosquitto)"))
    func pairsSmokeMosquitto() async throws {
        let phases = try await Self.runPairs(["--reference", "mosquitto"])
        Self.checkPhases(phases, system: "mosquitto", expected: ["closed", "open"])
        #expect(phases.allSatisfy { $0["server_cpu_is_whole_process"] as? Bool == false })
    }

    // MARK: - Smoke run of `myim bench core`

    /// Every row of `myim bench core` is printed with a rate above zero: handshakes, frames and
    /// the wire codec's rows, each run at least once (the debug binary beside the tests).
    @Test func coreSmoke() async throws {
        let output = try await Self.runBench(["core", "--seconds", "0.05"])
        let rows = [
            "handshake, both sides (RSA-2048 PSS)", "handshake, server side only (RSA-2048 PSS)",
            "handshake, both sides (Ed25519)", "handshake, server side only (Ed25519)",
            "seal 64 B message", "open 64 B message", "seal 1024 B message", "open 1024 B message",
            "decode a 64 B chat (6) packet", "decode the link packet carrying it", "encode its delivery (18) in a link packet",
        ]
        for row in rows {
            // The last three columns: ops/s, µs/op, MB/s.
            let line = output.split(separator: "\n").first { $0.hasPrefix(row) }
            let columns = line?.split(separator: " ").suffix(3) ?? []
            #expect(columns.count == 3 && (Double(columns.first!) ?? 0) > 0, "\(row): \(line.map(String.init) ?? "missing")\n\(output)")
        }
    }

    // MARK: - Smoke run of `myim bench logins`

    /// Two clients log in against the login center's process in two rounds of slices, between
    /// slices of the bound in a child process, then reconnect with tokens: every figure is there,
    /// above zero, and nothing failed.
    @Test func loginsSmoke() async throws {
        // Pinned where taskset is there, so that the pinned bound process is exercised too.
        let pin = MosquittoServer.locateTaskset() != nil ? ["--server-cpus", "0"] : []
        let output = try await Self.runBench(
            ["logins", "--seconds", "0.3", "--rounds", "2", "--reconnect-seconds", "0.3", "--clients", "2", "--json"] + pin,
            limit: .seconds(100))
        let figures = try #require(Self.jsonLines(output, bench: "logins").first, "\(output)")
        let line = "\(figures)"
        for key in ["bound_per_s", "logins_per_s", "median_round_ratio", "cpu_per_hash_ms", "cpu_per_login_ms", "reconnects_per_s"] {
            #expect((figures[key] as? Double ?? 0) > 0, "\(key): \(line)")
        }
        // Each of the 2 clients logs in at least once per round.
        #expect((figures["logins"] as? Int ?? 0) >= 4, "\(line)")
        #expect((figures["reconnects"] as? Int ?? 0) >= 2, "\(line)")
        #expect(figures["failed"] as? Int == 0 && figures["reconnects_failed"] as? Int == 0, "\(line)")
        // Sane, not fast: a login costs the login center its hash and more, so a hash is a share
        // of it below one (with slack for a debug build's noise), and the rounds' ratio is near it.
        let hash = figures["cpu_per_hash_ms"] as? Double ?? 0, login = figures["cpu_per_login_ms"] as? Double ?? 0
        #expect(hash < login * 1.5, "\(line)")
        #expect((0.2..<2).contains(figures["median_round_ratio"] as? Double ?? 0), "\(line)")
        #expect(output.contains("full logins / scrypt bound"), "\(output)")
    }

    // MARK: - Smoke runs of `myim bench group` and `myim bench messages`

    /// The value of the row starting with `name`: the number after the label, before its unit.
    private static func rowNumber(_ output: String, _ name: String) -> Double? {
        guard let line = output.split(separator: "\n").first(where: { $0.trimmingCharacters(in: .whitespaces).hasPrefix(name) }),
              let label = line.range(of: name)
        else { return nil }
        return line[label.upperBound...].split(separator: " ").first.flatMap { Double($0) }
    }

    /// A group of 4 gets 2 messages one at a time and a burst of 3: every member has each, and
    /// every stored message is swept once all have acknowledged it.
    @Test func groupSmoke() async throws {
        let output = try await Self.runBench(["group", "--members", "4", "--single", "2", "--burst", "3"])
        #expect((Self.rowNumber(output, "one at a time: time until the last member has it, max") ?? 0) > 0, "\(output)")
        #expect((Self.rowNumber(output, "burst of 3: member deliveries/s") ?? 0) > 0, "\(output)")
        let swept = output.split(separator: "\n").first { $0.contains("removed by the sweep after acks") }
        #expect(swept?.hasSuffix(" 5 / 5") == true, "\(output)")
    }

    /// Both phases of `myim bench messages` deliver everything they sent, above zero per second.
    @Test func messagesSmoke() async throws {
        let output = try await Self.runBench(["messages", "--seconds", "0.3", "--pairs", "2", "--window", "2", "--rate", "100", "--idle", "3"])
        #expect((Self.rowNumber(output, "delivered in the window (18 at receiver)") ?? 0) > 0, "\(output)")
        let counts = output.split(separator: "\n").filter { $0.contains("sent / delivered (drained after window)") }.map {
            $0.split(separator: " ").suffix(3).compactMap { Int($0) }
        }
        #expect(counts.count == 2 && counts.allSatisfy { $0.count == 2 && $0[0] > 0 && $0[0] == $0[1] }, "\(output)")
        #expect(Self.rowNumber(output, "sessions held by endpoint 1") == 3, "\(output)")
        #expect(!output.contains("errors (20)"), "\(output)")
    }

    // MARK: - Smoke runs of `myim bench idle`

    private static func runIdle(_ arguments: [String]) async throws -> [[String: Any]] {
        let output = try await runBench(["idle", "--connections", "3", "--connections", "8", "--settle", "0.2", "--json"] + arguments)
        return jsonLines(output, bench: "idle")
    }

    /// Each step reports the connections held, how fast they opened, and every server's memory;
    /// `--reconnect --rounds 2` adds two steps that each reopen all 8 with their tokens.
    @Test func idleSmokeMyIM() async throws {
        let steps = try await Self.runIdle(["--reconnect", "--rounds", "2"])
        #expect(steps.compactMap { $0["connections"] as? Int } == [3, 8, 8, 8])
        #expect(steps.compactMap { $0["reconnected"] as? Bool } == [false, false, true, true])
        for step in steps {
            #expect(step["system"] as? String == "myim")
            #expect((step["connects_per_s"] as? Double ?? 0) > 0, "\(step)")
            // Present; a few connections can cost less than one clock tick of CPU, so not > 0.
            #expect((step["server_cpu_us_per_connect"] as? Double).map { $0 >= 0 } == true, "\(step)")
            let cpu = try #require(step["server_cpu_us_per_connect_by_process"] as? [String: Double], "\(step)")
            #expect(Set(cpu.keys) == ["redis", "login", "bench-center", "bench-ep1", "bench-ep2"])
            let rss = try #require(step["rss_bytes"] as? [String: Int], "\(step)")
            #expect(Set(rss.keys) == ["redis", "login", "bench-center", "bench-ep1", "bench-ep2"])
            #expect(rss.values.allSatisfy { $0 > 0 }, "\(step)")
            #expect(step["rss_bytes_per_connection"] is [String: Double], "\(step)")
        }
    }

    /// A bench stopped by SIGTERM (Ctrl-C, or `timeout` in bench/compare.sh) takes the servers it
    /// started with it: none is left running.
    @Test func anInterruptedBenchLeavesNoServerRunning() async throws {
        let binary = try MyIMExecutable.locate()
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("bench-interrupted-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        let child = try ChildProcess(
            name: "myim bench idle", executable: binary, arguments: ["bench", "idle", "--connections", "2", "--settle", "60"], logPath: log)
        // The bench names its servers' pids once they are all up.
        var pids: [Int32] = []
        let deadline = ContinuousClock.now + .seconds(60)
        while pids.isEmpty, ContinuousClock.now < deadline, child.isRunning {
            if let line = child.output.split(separator: "\n").first(where: { $0.hasPrefix("MyIM: ") }) {
                pids = line.matches(of: /pid (\d+)/).compactMap { Int32($0.1) }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(pids.count == 5, "\(child.output)")
        #expect(pids.allSatisfy { kill($0, 0) == 0 }, "the servers run before the signal")
        kill(child.pid, SIGTERM)
        #expect(await child.waitForExit(timeout: .seconds(10)))
        for pid in pids {
            // Gone, or a zombie waiting for a parent that has exited.
            let state = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8))?.split(separator: ")").last?.split(separator: " ").first
            #expect(state == nil || state == "Z", "server pid \(pid) still runs: \(String(describing: state))")
        }
        // Its directory (topology, keys, data) is left by the signal, and the next bench removes it.
        let temporary = FileManager.default.temporaryDirectory
        func ownDirectories() -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: temporary.path)) ?? []).filter { name in
                name.hasPrefix("myim-bench-servers-")
                    && (try? String(contentsOf: temporary.appendingPathComponent(name).appendingPathComponent("owner.pid"), encoding: .utf8))
                        == String(child.pid)
            }
        }
        #expect(ownDirectories().count == 1)
        _ = try await Self.runIdle([])
        #expect(ownDirectories().isEmpty, "the interrupted bench's directory is still there")
    }

    @Test(.enabled(if: MosquittoServer.locate() != nil, "mosquitto is not installed (apt-get install -y mosquitto)"))
    func idleSmokeMosquitto() async throws {
        let steps = try await Self.runIdle(["--reference", "mosquitto"])
        #expect(steps.compactMap { $0["connections"] as? Int } == [3, 8])
        #expect(steps.allSatisfy { ($0["rss_bytes"] as? [String: Int])?.keys.sorted() == ["mosquitto"] })
    }
}
