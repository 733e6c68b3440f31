/// Capped exponential backoff with jitter for links' reconnects (endpoint → center,
/// center → login center).
///
/// The n-th delay (from 0) is drawn uniformly from `[d/2, d]` where `d = min(maximum, initial · 2ⁿ)`:
/// half of it fixed so that a flapping center is not hammered, half random so that the
/// endpoints of a domain do not reconnect in lockstep after a center restart.
public struct ReconnectBackoff: Sendable {
    public var initial: Duration
    public var maximum: Duration
    public private(set) var attempt = 0

    public init(initial: Duration = .milliseconds(100), maximum: Duration = .seconds(5)) {
        self.initial = initial
        self.maximum = maximum
    }

    /// The cap for the current attempt, before jitter.
    public var ceiling: Duration {
        var delay = initial
        for _ in 0..<min(attempt, 32) where delay < maximum { delay *= 2 }
        return min(delay, maximum)
    }

    /// The next delay; `unit` is a random number in `0...1` (injectable for tests).
    public mutating func next(unit: Double = Double.random(in: 0...1)) -> Duration {
        let ceiling = ceiling
        attempt += 1
        return ceiling / 2 + (ceiling / 2) * min(max(unit, 0), 1)
    }

    /// After a successful connection the next failure starts from `initial` again.
    public mutating func reset() { attempt = 0 }
}
