import Metrics
import NIOCore
import NIOPosix
import Prometheus
import Synchronization

/// The process's metrics: swift-metrics with a Prometheus registry behind it, bootstrapped
/// once. Every role records into it; ``OpsServer`` serves it as `/metrics`.
public enum OpsMetrics {
    private static let installed = Mutex<PrometheusCollectorRegistry?>(nil)

    /// The registry, installing it as the process's metrics backend on first use.
    public static var registry: PrometheusCollectorRegistry {
        installed.withLock { current in
            if let current { return current }
            let registry = PrometheusCollectorRegistry()
            var factory = PrometheusMetricsFactory(registry: registry)
            // Latencies in seconds, from 0.1 ms to 10 s.
            factory.defaultDurationHistogramBuckets = [
                .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .microseconds(2500), .milliseconds(5),
                .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
                .seconds(1), .milliseconds(2500), .seconds(10),
            ]
            MetricsSystem.bootstrap(factory)
            current = registry
            return registry
        }
    }

    /// The registry's text exposition (Prometheus text format 0.0.4).
    public static func exposition() -> [UInt8] {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return buffer
    }

    /// Measures how late each event loop of `group` runs a task scheduled now, every
    /// `interval`, into `myim_event_loop_lag_seconds{loop}`: a loop blocked by CPU work or a
    /// blocking call shows up here first. Runs until cancelled.
    public static func watchEventLoops(_ group: MultiThreadedEventLoopGroup = .singleton, interval: Duration = .seconds(1)) async {
        let loops = Array(group.makeIterator())
        let gauges = loops.indices.map { Gauge(label: "myim_event_loop_lag_seconds", dimensions: [("loop", "\($0)")]) }
        while !Task.isCancelled {
            for (index, loop) in loops.enumerated() {
                let scheduled = ContinuousClock.now
                let lag = try? await loop.submit { ContinuousClock.now - scheduled }.get()
                if let lag { gauges[index].record(Double(lag.components.seconds) + Double(lag.components.attoseconds) / 1e18) }
            }
            try? await Task.sleep(for: interval)
        }
    }
}
