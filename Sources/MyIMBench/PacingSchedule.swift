/// When each sender of an open-loop run sends: `n` senders share an offered `rate` (messages per
/// second in all), sender `i` sending its `k`-th message at `start + (i + k·n) / rate`. The senders
/// interleave evenly, so the merged stream is one message every `1 / rate`.
///
/// A sender that falls behind sends at once, and the message keeps its scheduled time as its
/// timestamp: a late send counts against latency (no coordinated omission).
public struct PacingSchedule: Sendable, Equatable {
    /// Monotonic nanoseconds of the first send (sender 0, k = 0).
    public let start: UInt64
    /// Monotonic nanoseconds at and after which nothing is sent.
    public let deadline: UInt64
    public let senders: Int
    /// Messages per second, all senders together.
    public let rate: Double

    public init(start: UInt64, seconds: Double, senders: Int, rate: Double) {
        precondition(senders > 0 && rate > 0 && seconds > 0, "a schedule needs senders, a rate and a duration")
        self.start = start
        self.deadline = start + UInt64((seconds * 1e9).rounded())
        self.senders = senders
        self.rate = rate
    }

    /// When sender `sender` sends its `k`-th message (counting from 0).
    public func time(sender: Int, k: Int) -> UInt64 {
        start + UInt64(((Double(sender) + Double(k) * Double(senders)) / rate * 1e9).rounded())
    }

    /// Whether that message falls inside the run (before ``deadline``).
    public func isInside(sender: Int, k: Int) -> Bool { time(sender: sender, k: k) < deadline }

    /// How many messages sender `sender` sends in the run.
    public func count(sender: Int) -> Int {
        // k·n + i < (deadline − start)·rate, then corrected by one step either way for rounding.
        let span = Double(deadline - start) / 1e9 * rate
        var k = Swift.max(0, Int(((span - Double(sender)) / Double(senders)).rounded(.up)))
        while k > 0, !isInside(sender: sender, k: k - 1) { k -= 1 }
        while isInside(sender: sender, k: k) { k += 1 }
        return k
    }
}
