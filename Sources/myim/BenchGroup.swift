import ArgumentParser
import Foundation
import MyIMWire
import NIOCore
import Synchronization

/// `myim bench group`: fan-out of group messages to M members spread over two endpoints,
/// through an in-process center (SQLite, plain links, in-memory presence).
///
/// For each group size: every member connects and authenticates (alternating endpoints),
/// member 0 creates the group with all the others, then
/// - **one at a time**: a message is sent and the next one only once every member has it;
///   the figure is the time until the last member has it;
/// - **a burst**: `--burst` messages are sent back to back; the figure is member deliveries
///   per second until the last member has the last message.
/// Members acknowledge with group cursors (23) in batches, as a client does.
struct BenchGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "group",
        abstract: "Group fan-out: time until the last member has a message, and deliveries/s (build with -c release)."
    )

    @Option(help: "Group sizes to measure, comma-separated (each at most 2000).")
    var members: String = "100,1000"

    @Option(help: "Messages sent one at a time, per group size.")
    var single: Int = 20

    @Option(help: "Messages sent back to back, per group size.")
    var burst: Int = 50

    static let domain = BenchMessages.domain
    static let bodyBytes = 64
    static let waitLimit: Duration = .seconds(30)

    func run() async throws {
        let sizes = members.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !sizes.isEmpty, sizes.allSatisfy({ (2...2000).contains($0) }) else {
            throw ValidationError("--members must be comma-separated sizes from 2 to 2000, e.g. 100,1000")
        }
        guard (1...1000).contains(single), (1...1000).contains(burst) else { throw ValidationError("--single and --burst must be 1...1000") }
        #if DEBUG
        print("note: this is a debug build; run `swift build -c release --product myim` and `.build/release/myim bench group` for real figures\n")
        #endif
        print("MyIM group fan-out, in one process: center (SQLite, plain links, in-memory presence) + 2 endpoints (Ed25519) + clients")
        print("\(System.coreCount) cores, \(Self.bodyBytes)-byte text, QoS 1, members alternate between the endpoints, the sender is a member too")
        print("")
        for size in sizes {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("myim-bench-group-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let cluster = try await BenchCluster.start(directory: directory, maxConnectionsPerSource: size + 64)
            do {
                try await measure(size: size, cluster: cluster)
            } catch {
                await cluster.stop()
                throw error
            }
            await cluster.stop()
        }
    }

    private func measure(size: Int, cluster: BenchCluster) async throws {
        let tally = GroupTally(members: size)
        let start = ContinuousClock.now
        let clients = try await BenchMessages.concurrently(count: size, width: 64) { index in
            try await cluster.authenticated("m\(index)@\(Self.domain)", userID: Int64(400_000 + index), endpoint: index % 2)
        }
        let connected = ContinuousClock.now - start
        let createdGroup = Locked<Int64?>(nil)
        for (index, client) in clients.enumerated() {
            client.setHandler(Self.memberHandler(client: client, member: index, tally: tally, created: createdGroup))
        }
        let sender = clients[0]
        let others = (1..<size).map { "m\($0)@\(Self.domain)" }
        try await sender.send(CreateGroup(name: "bench \(size)", members: others).packet)
        let deadline = ContinuousClock.now + Self.waitLimit
        while createdGroup.withLock({ $0 }) == nil {
            guard ContinuousClock.now < deadline else { throw ValidationError("the group was not created within \(Self.waitLimit)") }
            try await Task.sleep(for: .milliseconds(5))
        }
        let group = createdGroup.withLock { $0 } ?? 0

        print("Group of \(size) members (\(clients.count) connections made and authenticated in \(Self.format(connected)))")
        // One at a time.
        var lastMember: [UInt64] = []
        for index in 0..<single {
            let stamp = BenchMessages.now()
            try await sender.send(Self.chat(group: group, index: index, stamp: stamp))
            guard try await tally.wait(for: index, limit: Self.waitLimit) else {
                throw ValidationError("message \(index) did not reach every member within \(Self.waitLimit): \(tally.count(index)) of \(size)")
            }
            lastMember.append(tally.last(index) &- stamp)
        }
        lastMember.sort()
        row("one at a time: time until the last member has it, p50", BenchMessages.ms(Self.percentile(lastMember, 0.5)))
        row("one at a time: time until the last member has it, max", BenchMessages.ms(lastMember.last ?? 0))

        // A burst.
        let cpuBefore = BenchMessages.cpuSeconds()
        let burstStart = BenchMessages.now()
        for offset in 0..<burst {
            try await sender.send(Self.chat(group: group, index: single + offset, stamp: BenchMessages.now()))
        }
        for offset in 0..<burst {
            guard try await tally.wait(for: single + offset, limit: Self.waitLimit) else {
                throw ValidationError("burst message \(offset) did not reach every member within \(Self.waitLimit)")
            }
        }
        let burstEnd = (0..<burst).map { tally.last(single + $0) }.max() ?? burstStart
        let cpuAfter = BenchMessages.cpuSeconds()
        let deliveries = burst * size
        let seconds = Double(burstEnd &- burstStart) / 1e9
        row("burst of \(burst): member deliveries/s", String(format: "%.0f /s", Double(deliveries) / seconds))
        row("burst of \(burst): until the last member has the last", BenchMessages.ms(burstEnd &- burstStart))
        if let before = cpuBefore, let after = cpuAfter {
            row("process CPU per member delivery (burst)", String(format: "%.1f us", (after - before) / Double(deliveries) * 1e6))
        }
        for client in clients { await Self.flushAcks(client, group: group, tally: tally) }
        // The last cursors reach the center in their own time: sweep until nothing is left (at most 5 s).
        let stored = try await cluster.center.store.groupMessageCount()
        var removed = 0
        let sweepDeadline = ContinuousClock.now + .seconds(5)
        while removed < stored, ContinuousClock.now < sweepDeadline {
            try await Task.sleep(for: .milliseconds(100))
            removed += try await cluster.center.sweepGroupMessages()
        }
        row("stored group messages / removed by the sweep after acks", "\(stored) / \(removed)")
        print("")
        for client in clients { client.close() }
        let quiet = ContinuousClock.now + .seconds(10)
        while await !cluster.center.onlineUsers.isEmpty, ContinuousClock.now < quiet {
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// A member: records each group 18's arrival, acknowledges with its group cursor every
    /// 16 messages, and notes the group id from 15 (the sender) or 16.
    private static func memberHandler(client: BenchClient, member: Int, tally: GroupTally, created: Locked<Int64?>)
        -> @Sendable (Packet) async -> Void
    {
        { packet in
            switch MessageType(rawValue: packet.type) {
            case .chatDelivery:
                let now = BenchMessages.now()
                guard let delivery = try? ChatDelivery(packet: packet), case .text(let text) = delivery.content,
                      let index = text.split(separator: ";").first.flatMap({ Int($0) }), let seq = delivery.seq
                else { return }
                tally.record(index: index, at: now)
                if tally.noteSeq(member: member, seq: seq) % 16 == 0 {
                    try? await client.send(DeliveryAck(groups: [GroupCursor(groupID: delivery.targetID, seq: seq)]).packet)
                }
            case .groupCreated:
                if let id = try? GroupCreated(packet: packet).groupID { created.withLock { $0 = id } }
            default:
                break
            }
        }
    }

    private static func flushAcks(_ client: BenchClient, group: Int64, tally: GroupTally) async {
        guard let member = Int(client.user.dropFirst().prefix { $0 != "@" }), let seq = tally.lastSeq(member: member) else { return }
        try? await client.send(DeliveryAck(groups: [GroupCursor(groupID: group, seq: seq)]).packet)
    }

    private static func chat(group: Int64, index: Int, stamp: UInt64) -> Packet {
        var text = "\(index);\(stamp);"
        text += String(repeating: "x", count: max(0, bodyBytes - text.utf8.count))
        return Chat(target: .group(group), content: .text(text), clientMessageID: "g-\(index)").packet
    }

    private static func percentile(_ sorted: [UInt64], _ p: Double) -> UInt64 {
        guard !sorted.isEmpty else { return 0 }
        return sorted[min(sorted.count - 1, max(0, Int((p * Double(sorted.count)).rounded(.up)) - 1))]
    }

    private static func format(_ duration: Duration) -> String { String(format: "%.2f s", BenchMessages.seconds(duration)) }

    private func row(_ name: String, _ value: String) {
        print("  " + name.padding(toLength: 56, withPad: " ", startingAt: 0) + String(repeating: " ", count: max(0, 14 - value.count)) + value)
    }
}

/// Who has received which message, and when the last of them did.
private final class GroupTally: Sendable {
    let members: Int
    private let state = Mutex<(counts: [Int: Int], last: [Int: UInt64], seqs: [Int: (count: Int, last: Int64)])>(([:], [:], [:]))

    init(members: Int) { self.members = members }

    func record(index: Int, at now: UInt64) {
        state.withLock { state in
            state.counts[index, default: 0] += 1
            state.last[index] = max(state.last[index] ?? 0, now)
        }
    }

    /// Notes that `member` received `seq`; returns how many it has received.
    func noteSeq(member: Int, seq: Int64) -> Int {
        state.withLock { state in
            let count = (state.seqs[member]?.count ?? 0) + 1
            state.seqs[member] = (count, max(seq, state.seqs[member]?.last ?? 0))
            return count
        }
    }

    func lastSeq(member: Int) -> Int64? { state.withLock { $0.seqs[member]?.last } }

    func count(_ index: Int) -> Int { state.withLock { $0.counts[index] ?? 0 } }

    func last(_ index: Int) -> UInt64 { state.withLock { $0.last[index] ?? 0 } }

    /// Waits until every member has message `index`, or `limit` passed.
    func wait(for index: Int, limit: Duration) async throws -> Bool {
        let deadline = ContinuousClock.now + limit
        while count(index) < members {
            guard ContinuousClock.now < deadline else { return false }
            try await Task.sleep(for: .microseconds(200))
        }
        return true
    }
}
