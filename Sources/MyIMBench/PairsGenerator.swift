import NIOCore
import Synchronization

/// The bench's clock: monotonic nanoseconds (`NIODeadline.now()`, CLOCK_MONOTONIC), the same in
/// every thread of the process and the one event loops schedule by, so a timestamp written by a
/// sender can be read by its receiver and a send can be scheduled at an exact time.
public enum BenchClock {
    public static func now() -> UInt64 { NIODeadline.now().uptimeNanoseconds }
}

/// The text of a pair message: `<phase>;<stamp ns>;` padded with `x` to a fixed size.
public enum PairsPayload {
    public static func text(phase: Int, stamp: UInt64, bytes: Int) -> String {
        var text = "\(phase);\(stamp);"
        let pad = bytes - text.utf8.count
        if pad > 0 { text += String(repeating: "x", count: pad) }
        return text
    }

    /// The phase and stamp at the front of a payload; nil when it is not one.
    public static func parse<Bytes: Sequence>(_ bytes: Bytes) -> (phase: Int, stamp: UInt64)? where Bytes.Element == UInt8 {
        var numbers: [UInt64] = []
        var current: UInt64 = 0
        var digits = 0
        for byte in bytes {
            if byte == UInt8(ascii: ";") {
                guard digits > 0 else { return nil }
                numbers.append(current)
                if numbers.count == 2 { break }
                current = 0
                digits = 0
            } else if byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9"), digits < 19 {
                current = current * 10 + UInt64(byte - UInt8(ascii: "0"))
                digits += 1
            } else {
                return nil
            }
        }
        guard numbers.count == 2, numbers[0] <= UInt64(Int.max) else { return nil }
        return (Int(numbers[0]), numbers[1])
    }
}

/// What one phase of a pairs run counted.
public struct PairsPhaseResult: Sendable {
    public var sent = 0
    public var delivered = 0
    /// Delivered before the phase's deadline (the throughput figure counts these).
    public var deliveredInWindow = 0
    /// Latency of every delivery, from the stamp in the message to the receiver reading it.
    public var latencies = LatencyHistogram()
    /// Length of the sending window, in seconds.
    public var windowSeconds: Double = 0
    /// Open loop: the worst lag of a send behind its schedule, in nanoseconds.
    public var maxLagNanos: UInt64 = 0

    public init() {}

    /// Deliveries per second within the window.
    public var deliveredPerSecond: Double { windowSeconds > 0 ? Double(deliveredInWindow) / windowSeconds : 0 }
}

/// One phase in flight: counts sends and deliveries; in a closed loop, a delivery to receiver i
/// makes sender i send its next message (until the deadline).
public final class PairsPhase: Sendable {
    public let phase: Int
    public let start: UInt64
    public let deadline: UInt64
    private let closedLoop: Bool
    private let bodyBytes: Int
    private let send: PairsGenerator.Send
    private let state: Mutex<(result: PairsPhaseResult, sequences: [Int])>

    init(phase: Int, start: UInt64, deadline: UInt64, pairs: Int, closedLoop: Bool, bodyBytes: Int, send: @escaping PairsGenerator.Send) {
        self.phase = phase
        self.start = start
        self.deadline = deadline
        self.closedLoop = closedLoop
        self.bodyBytes = bodyBytes
        self.send = send
        state = Mutex((PairsPhaseResult(), [Int](repeating: 0, count: pairs)))
    }

    /// Sends sender `pair`'s next message, stamped `stamp` (counted as sent first, so that a
    /// delivery never outruns its send).
    func sendNext(pair: Int, stamp: UInt64, lag: UInt64 = 0) {
        let sequence = state.withLock { state in
            state.result.sent += 1
            if lag > state.result.maxLagNanos { state.result.maxLagNanos = lag }
            defer { state.sequences[pair] += 1 }
            return state.sequences[pair]
        }
        send(pair, phase, sequence, PairsPayload.text(phase: phase, stamp: stamp, bytes: bodyBytes))
    }

    func record(pair: Int, latency: UInt64, at now: UInt64) {
        state.withLock { state in
            state.result.delivered += 1
            if now <= deadline { state.result.deliveredInWindow += 1 }
            state.result.latencies.record(latency)
        }
        if closedLoop, now < deadline { sendNext(pair: pair, stamp: BenchClock.now()) }
    }

    var sent: Int { state.withLock { $0.result.sent } }

    /// Waits until everything sent was delivered, or `limit` passed.
    func drain(limit: Duration) async {
        let end = ContinuousClock.now + limit
        while ContinuousClock.now < end {
            if state.withLock({ $0.result.delivered >= $0.result.sent }) { return }
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    func result() -> PairsPhaseResult {
        var result = state.withLock { $0.result }
        result.windowSeconds = Double(deadline &- start) / 1e9
        return result
    }
}

/// Where receivers report what they get: it goes to the phase running now, or counts as a stray
/// (a message of an earlier phase, or one that does not parse).
public final class PairsRecorder: Sendable {
    private let current = Mutex<PairsPhase?>(nil)
    private let strayCount = Mutex(0)

    public init() {}

    public var strays: Int { strayCount.withLock { $0 } }

    func set(_ phase: PairsPhase?) { current.withLock { $0 = phase } }

    /// A receiver of pair `pair` read `payload` at `now` (any thread; in a closed loop this
    /// sends the pair's next message from here).
    public func receive<Bytes: Sequence>(pair: Int, payload: Bytes, now: UInt64) where Bytes.Element == UInt8 {
        guard let (phase, stamp) = PairsPayload.parse(payload), let running = current.withLock({ $0 }), running.phase == phase else {
            strayCount.withLock { $0 += 1 }
            return
        }
        running.record(pair: pair, latency: now &- stamp, at: now)
    }
}

/// The load of `myim bench pairs`, whatever carries it: `pairs` senders, each sending to its own
/// receiver through `send`; receivers report to `recorder`.
///
/// It runs on event-loop callbacks, not tasks, so that the generator costs little next to what
/// it measures: `send` must not block (a `writeAndFlush` on the sender's channel), receivers call
/// ``PairsRecorder/receive(pair:payload:now:)`` from their channel's handler.
///
/// - closed loop: each sender keeps `window` messages in flight; a delivery to receiver i sends
///   sender i's next message at once (throughput at saturation, latency under that load);
/// - open loop: the senders share an offered rate on a fixed schedule (``PacingSchedule``), each
///   send a task scheduled on an event loop at its time and stamped with that time (latency at a
///   given load, without coordinated omission).
///
/// Every phase sends for `seconds`, then waits at most `drainLimit` for what is still in flight.
public struct PairsGenerator: Sendable {
    /// Sends `text` from sender `pair` (its `sequence`-th message of phase `phase`) to receiver
    /// `pair`, without blocking; called from any thread.
    public typealias Send = @Sendable (_ pair: Int, _ phase: Int, _ sequence: Int, _ text: String) -> Void

    public static let closedPhase = 1
    public static let openPhase = 2

    public let pairs: Int
    public let bodyBytes: Int
    public let drainLimit: Duration
    public let recorder: PairsRecorder
    /// Where open-loop sends are scheduled (sender i on `loops[i % count]`).
    private let loops: [any EventLoop]
    private let send: Send

    public init(
        pairs: Int, bodyBytes: Int = 64, drainLimit: Duration = .seconds(10), loops: [any EventLoop], recorder: PairsRecorder,
        send: @escaping Send
    ) {
        precondition(pairs > 0 && !loops.isEmpty, "a pairs run needs pairs and event loops")
        self.pairs = pairs
        self.bodyBytes = bodyBytes
        self.drainLimit = drainLimit
        self.loops = loops
        self.recorder = recorder
        self.send = send
    }

    /// Closed loop: `window` messages in flight per sender for `seconds`.
    public func closedLoop(window: Int, seconds: Double) async throws -> PairsPhaseResult {
        precondition(window > 0 && seconds > 0, "a closed loop needs a window and a duration")
        let start = BenchClock.now()
        let deadline = start + UInt64((seconds * 1e9).rounded())
        let run = PairsPhase(
            phase: Self.closedPhase, start: start, deadline: deadline, pairs: pairs, closedLoop: true, bodyBytes: bodyBytes, send: send)
        recorder.set(run)
        for _ in 0..<window {
            for pair in 0..<pairs { run.sendNext(pair: pair, stamp: BenchClock.now()) }
        }
        let now = BenchClock.now()
        if now < deadline { try await Task.sleep(for: .nanoseconds(Int64(deadline - now))) }
        await run.drain(limit: drainLimit)
        return run.result()
    }

    /// Open loop: `rate` messages/s offered in all for `seconds`, starting 50 ms from now; `phase`
    /// tells this phase's messages from those of others.
    public func openLoop(rate: Double, seconds: Double, phase: Int = Self.openPhase) async throws -> PairsPhaseResult {
        let schedule = PacingSchedule(start: BenchClock.now() + 50_000_000, seconds: seconds, senders: pairs, rate: rate)
        let run = PairsPhase(
            phase: phase, start: schedule.start, deadline: schedule.deadline, pairs: pairs, closedLoop: false, bodyBytes: bodyBytes,
            send: send)
        recorder.set(run)
        var expected = 0
        for pair in 0..<pairs {
            expected += schedule.count(sender: pair)
            Self.schedule(pair: pair, k: 0, schedule: schedule, run: run, on: loops[pair % loops.count])
        }
        // Every scheduled send fires (late ones too, behind an overloaded loop), then the drain.
        let now = BenchClock.now()
        if now < schedule.deadline { try await Task.sleep(for: .nanoseconds(Int64(schedule.deadline - now))) }
        let end = ContinuousClock.now + drainLimit
        while run.sent < expected, ContinuousClock.now < end { try await Task.sleep(for: .milliseconds(5)) }
        await run.drain(limit: drainLimit)
        return run.result()
    }

    /// Sender `pair`'s `k`-th send as a task at its time on `loop`; each send schedules the next.
    private static func schedule(pair: Int, k: Int, schedule: PacingSchedule, run: PairsPhase, on loop: any EventLoop) {
        guard schedule.isInside(sender: pair, k: k) else { return }
        let time = schedule.time(sender: pair, k: k)
        loop.scheduleTask(deadline: .uptimeNanoseconds(time)) {
            let lag = BenchClock.now() &- time
            // Stamped with the scheduled time: a late send counts against latency.
            run.sendNext(pair: pair, stamp: time, lag: lag > (1 << 62) ? 0 : lag)
            Self.schedule(pair: pair, k: k + 1, schedule: schedule, run: run, on: loop)
        }
    }
}
