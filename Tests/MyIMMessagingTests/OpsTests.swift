import Foundation
import Logging
import MyIMClient
import MyIMOps
import MyIMWire
import Testing

/// `/metrics` and `/health` over a real socket, with a real center and endpoints behind them.
@Suite("Metrics and health", .timeLimit(.minutes(1)))
struct OpsTests {
    /// Every line is a comment or a sample; the samples by `name{labels}`.
    private func parse(_ text: String) throws -> [String: Double] {
        var samples: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            // One sample line of the Prometheus text format: `name{labels} value`.
            let sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$/
            let match = try #require(try sample.wholeMatch(in: String(line)), "not Prometheus text: \(line)")
            samples[String(match.1) + String(match.2 ?? "")] = Double(String(match.3))
        }
        return samples
    }

    private func scrape(_ port: Int) async throws -> [String: Double] {
        let response = try await OpsProbe.get(host: "127.0.0.1", port: port, path: "/metrics")
        #expect(response.status == 200)
        return try parse(String(decoding: response.body, as: UTF8.self))
    }

    @Test func metricsParseAsPrometheusTextAndCountersMoveAfterAChat() async throws {
        _ = OpsMetrics.registry
        let listener = try await OpsServer.bind(host: "127.0.0.1", port: 0)
        let port = try #require(listener.channel.localAddress?.port)
        let started = ContinuousClock.now
        let server = Task {
            try await OpsServer.serve(listener, health: {
                HealthReport(role: "endpoint", node: "ep1", version: "test", started: started, figures: ["sessions": 2])
            }, logger: Logger(label: "myim.ops-test"))
        }
        defer { server.cancel() }

        try await ClientMessagingCluster.with(homes: 2) { cluster, homes in
            let aliceHome = homes[0]
            let bobHome = homes[1]
            let bob = try await MessagingConnection.open(
                session: try await cluster.session("bob@alpha.example", userID: 2, priorities: (2, 1)), home: bobHome.home)
            let alice = try await MessagingConnection.open(
                session: try await cluster.session("alice@alpha.example", userID: 1, priorities: (1, 2)), home: aliceHome.home)
            let before = try await scrape(port)
            try await alice.send(text: "counted", to: "bob")
            #expect(await clientMessagingDeliveries(1, on: bob).count == 1)
            try await Task.sleep(for: .milliseconds(100))
            let after = try await scrape(port)

            func moved(_ key: String, by least: Double) {
                let delta = (after[key] ?? 0) - (before[key] ?? 0)
                #expect(delta >= least, "\(key) moved by \(delta)")
            }
            moved(#"myim_messages_in_total{role="endpoint",type="6"}"#, by: 1)
            moved(#"myim_messages_in_total{role="center",type="6"}"#, by: 1)
            moved(#"myim_messages_out_total{role="endpoint",type="18"}"#, by: 1)  // bob's (alice gets 8, no copy)
            moved(#"myim_messages_out_total{role="endpoint",type="8"}"#, by: 1)
            moved(#"myim_delivery_latency_seconds_count{role="endpoint"}"#, by: 1)
            #expect(after.keys.contains { $0.hasPrefix("myim_event_loop_lag_seconds{") })
            #expect(after.keys.contains { $0.hasPrefix(#"myim_handshakes_total{role="endpoint",result="ok""#) })
            try await alice.quit()
            try await bob.quit()
        }

        let health = try await OpsProbe.get(host: "127.0.0.1", port: port, path: "/health")
        #expect(health.status == 200)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(health.body)) as? [String: Any])
        #expect(object["status"] as? String == "ok" && object["node"] as? String == "ep1" && object["sessions"] as? Int == 2)
        #expect(try await OpsProbe.get(host: "127.0.0.1", port: port, path: "/nothing").status == 404)
    }

    @Test func healthIs503WhenTheRoleIsNotReady() async throws {
        let listener = try await OpsServer.bind(host: "127.0.0.1", port: 0)
        let port = try #require(listener.channel.localAddress?.port)
        let started = ContinuousClock.now
        let server = Task {
            try await OpsServer.serve(listener, health: {
                HealthReport(role: "endpoint", node: "ep2", version: "test", started: started, figures: ["center_linked": 0], ready: false)
            }, logger: Logger(label: "myim.ops-test"))
        }
        defer { server.cancel() }
        let health = try await OpsProbe.get(host: "127.0.0.1", port: port, path: "/health")
        #expect(health.status == 503)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(health.body)) as? [String: Any])
        #expect(object["status"] as? String == "degraded")
    }
}

/// The event loop count follows the CPUs the process may run on.
@Suite struct EventLoopThreadsTests {
    @Test func theAllowedCPUsAreTheBitsOfTheStatusMask() {
        let status = "Name:\tmyim\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\n"
        #expect(EventLoopThreads.allowedCPUs(status: status) == 2)
        #expect(EventLoopThreads.allowedCPUs(status: "Cpus_allowed:\t2\n") == 1)
        #expect(EventLoopThreads.allowedCPUs(status: "Cpus_allowed:\tff,00000001\n") == 9)
        #expect(EventLoopThreads.allowedCPUs(status: "Cpus_allowed:\t0\n") == nil)
        #expect(EventLoopThreads.allowedCPUs(status: "Cpus_allowed:\tzz\n") == nil)
        #expect(EventLoopThreads.allowedCPUs(status: "Name:\tmyim\n") == nil)
    }

    @Test func thisProcessMayRunOnAtLeastOneCPU() throws {
        let allowed = try #require(EventLoopThreads.allowedCPUs())
        #expect(allowed >= 1 && allowed <= ProcessInfo.processInfo.processorCount)
    }
}
