import Histogram

/// Latencies in nanoseconds, in an HdrHistogram with three significant digits: any value up to
/// ``highest`` is kept within 0.1 %, in constant memory, whatever the number of samples.
///
/// Values above ``highest`` are recorded as ``highest`` and counted in ``clamped``, so a
/// pathological run still reports its tail instead of losing it.
public struct LatencyHistogram: Sendable {
    /// The largest value kept exactly (to three digits): one minute.
    public static let highest: UInt64 = 60_000_000_000

    private var histogram: Histogram<UInt64>
    /// How many values were above ``highest`` and recorded as it.
    public private(set) var clamped: UInt64 = 0

    public init() {
        histogram = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: Self.highest, numberOfSignificantValueDigits: .three)
    }

    /// Records one latency.
    public mutating func record(_ nanoseconds: UInt64) {
        if nanoseconds > Self.highest {
            clamped += 1
            histogram.record(Self.highest)
        } else {
            histogram.record(nanoseconds)
        }
    }

    /// Adds every value of `other`.
    public mutating func add(_ other: LatencyHistogram) {
        histogram.add(other.histogram)
        clamped += other.clamped
    }

    /// How many values were recorded.
    public var count: UInt64 { histogram.totalCount }

    /// The value at `percentile` (0–100): the smallest recorded value (to the histogram's precision)
    /// that at least `percentile` % of the values are less than or equal to; 0 when empty.
    public func value(atPercentile percentile: Double) -> UInt64 {
        guard count > 0 else { return 0 }
        return histogram.valueAtPercentile(percentile)
    }

    /// The largest value recorded; 0 when empty.
    public var max: UInt64 { count > 0 ? histogram.maxRecorded : 0 }

    /// The smallest value recorded; 0 when empty.
    public var min: UInt64 { count > 0 ? histogram.min : 0 }

    /// The mean, in nanoseconds; 0 when empty.
    public var mean: Double { count > 0 ? histogram.mean : 0 }
}
