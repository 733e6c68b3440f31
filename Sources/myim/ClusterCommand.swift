import ArgumentParser
import Foundation
import MyIMRedis
import MyIMTopology
import NIOCore
import NIOPosix
import Synchronization

/// The last termination signal caught (0: none yet), set from the signal handler.
let terminationSignal = Atomic<Int32>(0)

/// `myim cluster up`: the whole topology on this machine, one process per role.
struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Run a whole topology on this machine.",
        subcommands: [Up.self]
    )

    struct Up: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start Redis (if none answers), the login center, every center and endpoint; stop them all on Ctrl-C.")

        @Option(help: "The cluster's topology file.")
        var topology: String = "topology.yaml"

        @Option(help: "Seconds to wait for every role to accept connections.")
        var startTimeout: Int = 30

        func run() async throws {
            let topology = try Topology.load(path: topology)
            let keys = ClusterKeys(topology: topology)
            if !FileManager.default.fileExists(atPath: keys.tokenSigningKeyPath) {
                say("cluster: no keys in \(keys.directory); running keys init")
                for report in try ClusterKeys.initialize(for: topology) where report.created {
                    say("cluster: created \(report.name) \(report.kind) \(report.fingerprint)")
                }
            }
            let supervisor = Supervisor()
            var startedRedis = false
            Self.catchTerminationSignals()
            do {
                if try await !Self.redisAnswers(topology.redis) {
                    let url = try RedisURL(topology.redis)
                    guard ["127.0.0.1", "localhost", "::1"].contains(url.host) else {
                        throw ValidationError("no Redis answers at \(url) and it is not on this machine; start it first")
                    }
                    try supervisor.start(name: "redis", executable: "/usr/bin/env", arguments: [
                        "redis-server", "--port", String(url.port), "--bind", url.host, "--save", "", "--appendonly", "no",
                    ])
                    startedRedis = true
                    try await Self.waitFor("redis", timeout: startTimeout) { try await Self.redisAnswers(topology.redis) }
                }
                let binary = Self.ownExecutable()
                let file = topology.file
                try supervisor.start(name: topology.loginCenter.name, executable: binary, arguments: ["login-center", "--topology", file])
                for domain in topology.domains {
                    try supervisor.start(name: domain.center.name, executable: binary, arguments: ["center", "--topology", file, "--node", domain.center.name])
                }
                for domain in topology.domains {
                    for endpoint in domain.endpoints {
                        try supervisor.start(name: endpoint.name, executable: binary, arguments: ["endpoint", "--topology", file, "--node", endpoint.name])
                    }
                }
                var listeners = [(topology.loginCenter.name, topology.loginCenter.listen)]
                for domain in topology.domains {
                    listeners.append((domain.center.name, domain.center.listen))
                    listeners += domain.endpoints.map { ($0.name, $0.listen) }
                }
                for (name, address) in listeners {
                    try await Self.waitFor(name, timeout: startTimeout) { await Self.accepts(address) }
                }
                say("cluster ready")
                let reason = await supervisor.firstExitOrSignal()
                say("cluster: \(reason); stopping")
            } catch {
                say("cluster: \(error); stopping")
                await Self.stop(supervisor, redis: startedRedis ? topology.redis : nil)
                throw ExitCode(1)
            }
            await Self.stop(supervisor, redis: startedRedis ? topology.redis : nil)
        }

        /// Stops the roles, then the Redis this command started (with SHUTDOWN NOSAVE: it
        /// ignores SIGTERM when started from here, since the signal arrives blocked).
        static func stop(_ supervisor: Supervisor, redis: String?) async {
            supervisor.stopAll(except: redis == nil ? [] : ["redis"])
            if let redis, let url = try? RedisURL(redis), let connection = try? await RedisConnection.connect(to: url) {
                _ = try? await connection.send(["SHUTDOWN", "NOSAVE"])
            }
            supervisor.stopAll()
        }

        /// Turns SIGINT and SIGTERM into a flag that ``Supervisor/firstExitOrSignal()`` polls,
        /// instead of their default action (exit at once, leaving the children running).
        static func catchTerminationSignals() {
            for signalNumber in [SIGINT, SIGTERM] {
                signal(signalNumber) { caught in terminationSignal.store(caught, ordering: .relaxed) }
            }
        }

        static func ownExecutable() -> String {
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        }

        static func redisAnswers(_ text: String) async throws -> Bool {
            let url = try RedisURL(text)
            guard let connection = try? await RedisConnection.connect(to: url) else { return false }
            defer { Task { try? await connection.close() } }
            return (try? await connection.send(["PING"])) == .simple("PONG")
        }

        static func accepts(_ address: HostPort) async -> Bool {
            let host = address.isUnspecified ? "127.0.0.1" : address.host
            guard let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(1)).connect(host: host, port: address.port).get()
            else { return false }
            try? await channel.close()
            return true
        }

        static func waitFor(_ name: String, timeout: Int, _ ready: () async throws -> Bool) async throws {
            let deadline = ContinuousClock.now + .seconds(timeout)
            while ContinuousClock.now < deadline {
                if try await ready() { return }
                try await Task.sleep(for: .milliseconds(100))
            }
            throw ValidationError("\(name) did not accept connections within \(timeout) s; see its log lines above")
        }
    }
}
